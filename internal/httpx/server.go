// Package httpx is the service's HTTP API: the router, the middleware that
// gives each request its correlation ID and access line, authentication,
// JSON and problem responses, and the handlers.
package httpx

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// Enqueuer creates a run and its job in one transaction.
type Enqueuer interface {
	Enqueue(ctx context.Context, nb jobs.NewBacktest) (store.Run, error)
}

// Pinger checks that the database answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Deps are what the API needs.
type Deps struct {
	Queries  *store.Queries
	Enqueuer Enqueuer
	DB       Pinger
	// Admin, if set, is served under AdminPrefix: River UI, already behind
	// the operator's credentials.
	Admin http.Handler
	// RequestTimeout, if positive, is the deadline of every routed request's
	// context, and so of the queries it makes.
	RequestTimeout time.Duration
}

// AdminPrefix is where River UI is served when it is enabled.
const AdminPrefix = "/riverui"

// NewServer returns the API's handler.
func NewServer(logger *slog.Logger, deps Deps) http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = statusHandler(http.StatusNotFound, "No such resource.")
	r.MethodNotAllowedHandler = statusHandler(http.StatusMethodNotAllowed, "This method is not allowed here.")
	if deps.RequestTimeout > 0 {
		r.Use(deadline(deps.RequestTimeout))
	}
	addRoutes(r, logger, deps)
	return Instrument(logger, r)
}

// Instrument wraps a router with the service's request middleware: the
// correlation ID, panic recovery and one request_finished line per request,
// with the matched route's template. NewServer uses it; it is exported for
// the benchmarks that compare it with other middleware.
func Instrument(logger *slog.Logger, r *mux.Router) http.Handler {
	r.Use(routeTemplate)
	return observe(logger, r)
}

func addRoutes(r *mux.Router, logger *slog.Logger, deps Deps) {
	r.Handle("/healthz", handleHealthz()).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/readyz", handleReadyz(logger, deps.DB)).Methods(http.MethodGet, http.MethodHead)

	if deps.Admin != nil {
		r.PathPrefix(AdminPrefix).Handler(deps.Admin)
	}

	api := r.NewRoute().Subrouter()
	api.Use(authenticate(logger, deps.Queries, newKeyCache(keyCacheTTL, keyCacheEntries)))
	api.Handle("/strategies", handleCreateStrategy(logger, deps.Queries)).Methods(http.MethodPost)
	api.Handle("/strategies/{id}", handleGetStrategy(logger, deps.Queries)).Methods(http.MethodGet)
	api.Handle("/backtests", handleCreateBacktest(logger, deps.Queries, deps.Enqueuer)).Methods(http.MethodPost)
	api.Handle("/backtests", handleListBacktests(logger, deps.Queries)).Methods(http.MethodGet)
	api.Handle("/backtests/{id}", handleGetBacktest(logger, deps.Queries)).Methods(http.MethodGet)
}

// How long, and for how many keys, a key's owner is remembered.
const (
	keyCacheTTL     = 30 * time.Second
	keyCacheEntries = 10_000
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

// HashAPIKey is the stored form of a key. Keys are 256 random bits, so a
// fast unsalted hash is safe, and lets a key be looked up by its hash.
func HashAPIKey(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

type userKey struct{}

// userFrom returns the authenticated user; only routes behind authenticate
// call it.
func userFrom(ctx context.Context) store.User {
	u, _ := ctx.Value(userKey{}).(store.User)
	return u
}

// authenticate lets through requests with a valid Bearer API key and binds
// the user's ID to the request's log lines.
func authenticate(logger *slog.Logger, q *store.Queries, cache *keyCache) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, ok := bearerToken(r.Header.Get("Authorization"))
			if !ok {
				unauthorized(w, r)
				return
			}
			hash, now := HashAPIKey(key), time.Now()
			user, ok := cache.get(hash, now)
			if !ok {
				var err error
				user, err = q.UserByKeyHash(r.Context(), hash)
				if errors.Is(err, store.ErrNotFound) {
					unauthorized(w, r)
					return
				}
				if err != nil {
					serverError(logger, w, r, err)
					return
				}
				cache.put(hash, user, now)
			}
			ctx := obs.WithAttrs(r.Context(), slog.String(obs.KeyUserID, user.ID.String()))
			infoFrom(ctx).userID = user.ID.String()
			next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, userKey{}, user)))
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
