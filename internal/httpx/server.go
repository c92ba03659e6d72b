// Package httpx is the service's HTTP API: the router, the middleware that
// gives each request its correlation ID and access line, authentication,
// JSON and problem responses, and the handlers.
package httpx

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/backtestd/backtestd/api"
	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/migrations"
)

// Enqueuer creates a run and its job in one transaction.
type Enqueuer interface {
	Enqueue(ctx context.Context, nb enqueue.NewBacktest) (store.Run, error)
}

// Pinger checks that the database answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Database is what readiness asks of the database: its schema version, in
// one query that also proves it answers.
type Database interface {
	Pinger
	migrations.Querier
}

// Deps are what the API needs.
type Deps struct {
	Queries  *store.Queries
	Enqueuer Enqueuer
	DB       Database
	// Admin, if set, is served under AdminPrefix: River UI, already behind
	// the operator's credentials (see GuardAdmin).
	Admin http.Handler
	// Keys caches the owners of API keys; a KeyListener keeps it in step
	// with revocations. Defaults to a cache of its own whose entries live
	// for KeyCacheTTL, revocations or not.
	Keys *KeyCache
	// TrustedProxies are the proxies whose X-Forwarded-For header names the
	// client; from any other peer the header is ignored. None by default.
	TrustedProxies []netip.Prefix
	// AuthLimit bounds the unknown API keys a client address may try. The
	// zero value sets no limit.
	AuthLimit AuthLimit
	// RequestTimeout, if positive, is the deadline of every routed request's
	// context, and so of the queries it makes.
	RequestTimeout time.Duration
	// Metrics, if set, counts every request and is served at MetricsPath,
	// without authentication.
	Metrics *Metrics
	// IdempotencyKeyTTL is how long an Idempotency-Key is remembered with
	// its response. Zero means config.DefaultIdempotencyKeyTTL.
	IdempotencyKeyTTL time.Duration

	// Canceller cancels runs (POST /backtests/{id}/cancel). Defaults to the
	// Enqueuer when it is one, as an *enqueue.Enqueuer is.
	Canceller Canceller

	// Sweeps creates and cancels sweeps (POST /sweeps). Defaults to the
	// Enqueuer when it is one, as an *enqueue.Enqueuer is.
	Sweeps SweepEnqueuer
	// MaxSweepRuns is the most runs one sweep may make. Zero means
	// config.DefaultMaxSweepRuns.
	MaxSweepRuns int
}

// AdminPrefix is where River UI is served when it is enabled.
const AdminPrefix = "/riverui"

// NewServer returns the API's handler.
func NewServer(logger *slog.Logger, deps Deps) http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = statusHandler(http.StatusNotFound, "No such resource.")
	r.MethodNotAllowedHandler = methodNotAllowed(r)
	if deps.RequestTimeout > 0 {
		r.Use(deadline(deps.RequestTimeout))
	}
	r.Use(routeTemplate)
	addRoutes(r, logger, deps)
	return observe(logger, deps.Metrics, clientAddress(deps.TrustedProxies, r))
}

func addRoutes(r *mux.Router, logger *slog.Logger, deps Deps) {
	r.Handle("/healthz", handleHealthz()).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/readyz", handleReadyz(logger, deps.DB)).Methods(http.MethodGet, http.MethodHead)
	r.Handle(OpenAPIPath, handleOpenAPI()).Methods(http.MethodGet)
	r.Handle(ProblemTypePrefix+"{kind}", handleProblemKind()).Methods(http.MethodGet)
	if deps.Metrics != nil {
		r.Handle(MetricsPath, deps.Metrics.Handler()).Methods(http.MethodGet, http.MethodHead)
	}

	if deps.Admin != nil {
		r.PathPrefix(AdminPrefix).Handler(deps.Admin)
	}

	api := r.NewRoute().Subrouter()
	keys := deps.Keys
	if keys == nil {
		keys = NewKeyCache(KeyCacheTTL, KeyCacheEntries)
	}
	api.Use(authenticate(logger, deps.Queries, keys, newFailureLimiter(deps.AuthLimit)))
	keyTTL := cmp.Or(deps.IdempotencyKeyTTL, config.DefaultIdempotencyKeyTTL)
	api.Handle("/strategies", handleCreateStrategy(logger, deps.Queries, keyTTL)).Methods(http.MethodPost)
	api.Handle("/strategies", handleListStrategies(logger, deps.Queries)).Methods(http.MethodGet)
	api.Handle("/strategies/{id}", handleGetStrategy(logger, deps.Queries)).Methods(http.MethodGet)
	api.Handle("/strategies/{id}", handleDeleteStrategy(logger, deps.Queries)).Methods(http.MethodDelete)
	api.Handle("/backtests", handleCreateBacktest(logger, deps.Queries, deps.Enqueuer, keyTTL)).Methods(http.MethodPost)
	api.Handle("/backtests", handleListBacktests(logger, deps.Queries)).Methods(http.MethodGet)
	api.Handle("/backtests/{id}", handleGetBacktest(logger, deps.Queries)).Methods(http.MethodGet)
	canceller := deps.Canceller
	if c, ok := deps.Enqueuer.(Canceller); ok && canceller == nil {
		canceller = c
	}
	if canceller != nil {
		api.Handle("/backtests/{id}/cancel", handleCancelBacktest(logger, deps.Queries, canceller)).Methods(http.MethodPost)
	}
	sweeps := deps.Sweeps
	if s, ok := deps.Enqueuer.(SweepEnqueuer); ok && sweeps == nil {
		sweeps = s
	}
	if sweeps != nil {
		api.Handle("/sweeps", handleCreateSweep(logger, sweeps, keyTTL, cmp.Or(deps.MaxSweepRuns, config.DefaultMaxSweepRuns))).Methods(http.MethodPost)
		api.Handle("/sweeps/{id}", handleGetSweep(logger, deps.Queries)).Methods(http.MethodGet)
		api.Handle("/sweeps/{id}/cancel", handleCancelSweep(logger, deps.Queries, sweeps)).Methods(http.MethodPost)
	}

	// Last, so that River UI answers its own OPTIONS; a matcher rather
	// than Methods, which would make every other method on an unknown path
	// a 405 (a mismatch of method) instead of a 404.
	r.MatcherFunc(func(req *http.Request, _ *mux.RouteMatch) bool { return req.Method == http.MethodOptions }).
		Handler(options(r))
}

// OpenAPIPath is where the API's OpenAPI document is served, without
// authentication.
const OpenAPIPath = "/openapi.json"

// handleOpenAPI serves the document the binary embeds: the one its routes
// were tested against.
func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := queryParams(w, r); !ok {
			return
		}
		writeBody(w, "application/json", http.StatusOK, api.JSON())
	})
}

// How long, and for how many keys, a key's owner is remembered. The TTL is
// the longest a revoked key can keep working on a server whose listener
// missed the revocation without noticing.
const (
	KeyCacheTTL     = 30 * time.Second
	KeyCacheEntries = 10_000
)

// APIKeyPrefix starts every API key, so a leaked key is recognisable.
const APIKeyPrefix = "bt_"

// NewAPIKey returns a new random API key and the hash to store. The key is
// shown once; only the hash is kept.
func NewAPIKey() (key string, hash []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key)
}

// PublicPrefixLength is how much of a key is kept in the clear: "bt_" and
// 8 random characters, 48 of the key's 256 bits.
const PublicPrefixLength = len(APIKeyPrefix) + 8

// PublicPrefix is the start of key that is stored and logged to name it
// (server revoke-api-key -prefix): not a secret, since the remaining 208
// random bits are.
func PublicPrefix(key string) string {
	if len(key) < PublicPrefixLength {
		return key
	}
	return key[:PublicPrefixLength]
}

// HashAPIKey is the stored form of a key. Keys are 256 random bits, so a
// fast unsalted hash is safe, and lets a key be looked up by its hash.
func HashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

type userKey struct{}

// authenticated is what authenticate learnt of a request's key.
type authenticated struct {
	user  store.User
	hash  []byte
	cache *KeyCache
}

// userFrom returns the authenticated user; only routes behind authenticate
// call it.
func userFrom(ctx context.Context) store.User {
	a, _ := ctx.Value(userKey{}).(authenticated)
	return a.user
}

// userGone answers a request whose user was deleted after the key was
// cached: the key no longer names anyone, so it is refused, and forgotten.
func userGone(w http.ResponseWriter, r *http.Request) {
	if a, ok := r.Context().Value(userKey{}).(authenticated); ok && a.cache != nil {
		a.cache.Drop(a.hash)
	}
	unauthorized(w, r)
}

// authenticate lets through requests with a valid Bearer API key and binds
// the user's ID to the request's log lines.
//
// Unknown keys spend their client address's budget of failures; an address
// that has spent it is answered 429 without a database query. The budget is
// checked after the key cache: a cached key is known valid at no cost, so it
// works from any address. A key that is not cached is looked up only within
// the budget, and gives back what it spent when it turns out valid.
func authenticate(logger *slog.Logger, q *store.Queries, cache *KeyCache, failures *failureLimiter) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			header := r.Header.Values("Authorization")
			if len(header) > 1 {
				// Proxies and servers disagree on which of two to use: the
				// request is ambiguous, not merely unauthenticated.
				writeProblem(w, r, http.StatusBadRequest, "Send one Authorization header.")
				return
			}
			key, ok := bearerToken(r.Header.Get("Authorization"))
			if !ok {
				unauthorized(w, r)
				return
			}
			hash, now := HashAPIKey(key), time.Now()
			user, gen, ok := cache.get(hash, now)
			if !ok {
				refund, retryAfter, allowed := failures.take(clientAddrOf(r))
				if !allowed {
					tooManyFailures(w, r, retryAfter)
					return
				}
				var err error
				user, err = q.UserByKeyHash(r.Context(), hash)
				if errors.Is(err, store.ErrNotFound) {
					unauthorized(w, r)
					return
				}
				refund()
				if err != nil {
					serverError(logger, w, r, err)
					return
				}
				cache.put(hash, user, now, gen)
			}
			ctx := obs.WithAttrs(r.Context(), slog.String(obs.KeyUserID, user.ID.String()))
			infoFrom(ctx).userID = user.ID.String()
			next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userKey{}, authenticated{user: user, hash: hash, cache: cache})))
		})
	}
}

// bearerToken reads "Bearer <token>"; the scheme is case-insensitive
// (RFC 9110).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

func unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="backtests"`)
	writeProblem(w, r, http.StatusUnauthorized, "A valid API key is required: Authorization: Bearer <key>.")
}
