package httpx_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// countingDB counts the statements that read API keys: the database work an
// unknown key costs.
type countingDB struct {
	store.DBTX
	keyLookups atomic.Int64
}

func (c *countingDB) count(sql string) {
	if strings.Contains(sql, "api_keys") {
		c.keyLookups.Add(1)
	}
}

func (c *countingDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.count(sql)
	return c.DBTX.Exec(ctx, sql, args...)
}

func (c *countingDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.count(sql)
	return c.DBTX.Query(ctx, sql, args...)
}

func (c *countingDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.count(sql)
	return c.DBTX.QueryRow(ctx, sql, args...)
}

// exchange sends one request from a client address and returns the response.
func exchange(t *testing.T, h http.Handler, req *http.Request, remoteAddr string) *httptest.ResponseRecorder {
	t.Helper()
	req.RemoteAddr = remoteAddr
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// stillClock is a clock that always tells the same time.
func stillClock() func() time.Time {
	now := time.Now()
	return func() time.Time { return now }
}

func requireTooMany(t *testing.T, rec *httptest.ResponseRecorder, wantRetryAfter string) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, rec.Code, rec.Body.String())
	require.Equal(t, wantRetryAfter, rec.Header().Get("Retry-After"))
	require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	var p httpx.Problem
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Equal(t, http.StatusTooManyRequests, p.Status)
	require.Equal(t, rec.Header().Get(httpx.HeaderCorrelationID), p.CorrelationID)
	require.NotEmpty(t, p.CorrelationID)
}

// Unknown keys past an address's budget are answered 429 without a query,
// while valid keys go on working.
func TestUnknownKeysAreLimitedWithoutQueries(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	logs := &logtest.Sink{}
	inserter, err := enqueue.NewInsertClient(db.Pool, obs.NewHandler(logs, obs.Options{Service: "server"}))
	require.NoError(t, err)
	plain := store.New(db.Pool)
	newKey := func(name string) string {
		u, err := plain.EnsureUser(t.Context(), name)
		require.NoError(t, err)
		key, hash := httpx.NewAPIKey()
		require.NoError(t, plain.AddAPIKey(t.Context(), u.ID, hash))
		return key
	}
	counted := &countingDB{DBTX: db.Pool}
	h := checked(t, httpx.NewServer(obs.NewLogger(logs, obs.Options{Service: "server"}), httpx.Deps{
		Queries: store.New(counted), Enqueuer: enqueue.NewEnqueuer(db.Pool, inserter, 0), DB: db.Pool,
		// A clock that stands still: no budget refills while the test runs,
		// however slowly, so Retry-After is the whole hour.
		AuthLimit: httpx.AuthLimit{Burst: 5, Every: time.Hour, Addresses: 100, Now: stillClock()},
	}))
	const attacker, neighbour = "198.51.100.7:40000", "203.0.113.5:40000"
	get := func(key, from string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/backtests", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		return exchange(t, h, req, from)
	}
	aliceKey := newKey("alice")
	aliceMore := make([]string, 10)
	for i := range aliceMore {
		aliceMore[i] = newKey("alice")
	}
	bobKey := newKey("bob")

	require.Equal(t, http.StatusOK, get(aliceKey, attacker).Code)
	for _, k := range aliceMore {
		require.Equal(t, http.StatusOK, get(k, attacker).Code, "valid keys spend nothing of the budget")
	}
	require.EqualValues(t, 11, counted.keyLookups.Load())

	for range 5 {
		require.Equal(t, http.StatusUnauthorized, get("bt_unknown-"+newKey("x")[3:], attacker).Code)
	}
	require.EqualValues(t, 16, counted.keyLookups.Load(), "within the budget, unknown keys are looked up")
	for range 20 {
		requireTooMany(t, get("bt_unknown", attacker), "3600")
	}
	require.EqualValues(t, 16, counted.keyLookups.Load(), "past the budget, no query")

	require.Equal(t, http.StatusOK, get(aliceKey, attacker).Code, "a cached valid key works from a limited address")
	requireTooMany(t, get(bobKey, attacker), "3600") // not cached: it cannot be told from a guess without the query
	require.EqualValues(t, 16, counted.keyLookups.Load())

	require.Equal(t, http.StatusOK, get(bobKey, neighbour).Code, "other addresses have their own budget")
	require.Equal(t, http.StatusUnauthorized, get("bt_unknown", neighbour).Code)
	require.EqualValues(t, 18, counted.keyLookups.Load())

	var limited int
	for _, l := range logs.Lines(t) {
		if l[obs.KeyEvent] != obs.EventRequestFinished {
			continue
		}
		require.NotEmpty(t, l[obs.KeyClientIP], "every access line has the client address: %v", l)
		if l[obs.KeyStatusCode] == float64(http.StatusTooManyRequests) {
			limited++
			require.Equal(t, "198.51.100.7", l[obs.KeyClientIP])
			require.Equal(t, "info", l[obs.KeyLevel], "a refused client is no server fault")
		}
	}
	require.Equal(t, 21, limited)
	require.NotContains(t, logs.String(), aliceKey)
	require.NotContains(t, logs.String(), "Bearer")
}

// The access line names the client: the peer, or X-Forwarded-For's client
// when the peer is a trusted proxy.
func TestAccessLineClientIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		trusted    []netip.Prefix
		remoteAddr string
		forwarded  string
		path       string
		want       string
	}{
		{name: "peer", remoteAddr: "198.51.100.7:1234", path: "/healthz", want: "198.51.100.7"},
		{
			name: "header from an untrusted peer is ignored", remoteAddr: "198.51.100.7:1234", forwarded: "203.0.113.9",
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, path: "/healthz", want: "198.51.100.7",
		},
		{
			name: "trusted proxy", remoteAddr: "10.0.0.2:1234", forwarded: "192.0.2.1, 203.0.113.9",
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, path: "/healthz", want: "203.0.113.9",
		},
		{
			name: "router 404 too", remoteAddr: "10.0.0.2:1234", forwarded: "203.0.113.9",
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, path: "/nowhere", want: "203.0.113.9",
		},
		{name: "IPv6 peer", remoteAddr: "[2001:db8::7]:1234", path: "/healthz", want: "2001:db8::7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &logtest.Sink{}
			h := checked(t, httpx.NewServer(obs.NewLogger(logs, obs.Options{Service: "server"}), httpx.Deps{TrustedProxies: tt.trusted}))
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, tt.path, nil)
			if tt.forwarded != "" {
				req.Header.Set("X-Forwarded-For", tt.forwarded)
			}
			exchange(t, h, req, tt.remoteAddr)
			line := logs.Find(t, obs.EventRequestFinished)
			require.NotNil(t, line)
			require.Equal(t, tt.want, line[obs.KeyClientIP])
		})
	}
}

// River UI refuses cross-site writes, and limits password guesses.
func TestGuardAdmin(t *testing.T) {
	t.Parallel()
	const user, password = "ops", "a long operator password"
	type testBundle struct {
		handler http.Handler
		calls   *atomic.Int64
		logs    *logtest.Sink
	}
	setup := func(t *testing.T, limit httpx.AuthLimit) *testBundle {
		t.Helper()
		calls := &atomic.Int64{}
		inner := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls.Add(1)
			w.WriteHeader(http.StatusOK)
		})
		logs := &logtest.Sink{}
		h := httpx.NewServer(obs.NewLogger(logs, obs.Options{Service: "server"}), httpx.Deps{
			Admin:          httpx.GuardAdmin("River UI", user, password, limit, inner),
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		})
		return &testBundle{handler: h, calls: calls, logs: logs}
	}
	basic := func(u, p string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p)) }

	t.Run("cross-origin writes", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name     string
			method   string
			header   map[string]string
			wantCode int
		}{
			{name: "cross-site text/plain POST", method: http.MethodPost, header: map[string]string{
				"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain",
			}, wantCode: http.StatusForbidden},
			{name: "same-site but other origin", method: http.MethodPost, header: map[string]string{
				"Origin": "https://other.backtestd.example", "Sec-Fetch-Site": "same-site",
			}, wantCode: http.StatusForbidden},
			{name: "foreign Origin, no Sec-Fetch-Site", method: http.MethodPost, header: map[string]string{
				"Origin": "https://evil.example",
			}, wantCode: http.StatusForbidden},
			{name: "cross-site DELETE", method: http.MethodDelete, header: map[string]string{
				"Sec-Fetch-Site": "cross-site",
			}, wantCode: http.StatusForbidden},
			{name: "same-origin POST", method: http.MethodPost, header: map[string]string{
				"Origin": "http://admin.example", "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json",
			}, wantCode: http.StatusOK},
			{name: "Origin matching Host", method: http.MethodPost, header: map[string]string{
				"Origin": "http://admin.example",
			}, wantCode: http.StatusOK},
			{name: "not a browser", method: http.MethodPost, wantCode: http.StatusOK},
			{name: "cross-site GET is safe", method: http.MethodGet, header: map[string]string{
				"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
			}, wantCode: http.StatusOK},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, httpx.AuthLimit{Burst: 3, Every: time.Hour, Addresses: 100})
				req := httptest.NewRequestWithContext(t.Context(), tt.method, "http://admin.example/riverui/api/jobs/cancel",
					strings.NewReader(`{"ids":["1"]}`))
				req.Header.Set("Authorization", basic(user, password))
				for k, v := range tt.header {
					req.Header.Set(k, v)
				}
				rec := exchange(t, b.handler, req, "192.0.2.1:1234")
				require.Equal(t, tt.wantCode, rec.Code, rec.Body.String())
				if tt.wantCode == http.StatusForbidden {
					require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
					require.Contains(t, rec.Body.String(), rec.Header().Get(httpx.HeaderCorrelationID))
					require.Zero(t, b.calls.Load(), "River UI never saw it")
				} else {
					require.EqualValues(t, 1, b.calls.Load())
				}
			})
		}
	})

	t.Run("password guesses", func(t *testing.T) {
		t.Parallel()
		b := setup(t, httpx.AuthLimit{Burst: 3, Every: time.Minute, Addresses: 100, Now: stillClock()})
		get := func(auth, forwardedFor string) *httptest.ResponseRecorder {
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/riverui/", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			if forwardedFor != "" {
				req.Header.Set("X-Forwarded-For", forwardedFor)
			}
			return exchange(t, b.handler, req, "127.0.0.1:5000")
		}
		for range 5 {
			rec := get("", "198.51.100.7")
			require.Equal(t, http.StatusUnauthorized, rec.Code, "asking for credentials is not a guess")
			require.Contains(t, rec.Header().Get("WWW-Authenticate"), "Basic")
		}
		require.Equal(t, http.StatusOK, get(basic(user, password), "198.51.100.7").Code, "a right password spends nothing")
		for range 3 {
			require.Equal(t, http.StatusUnauthorized, get(basic(user, "guess"), "198.51.100.7").Code)
		}
		requireTooMany(t, get(basic(user, "guess"), "198.51.100.7"), "60")
		requireTooMany(t, get(basic(user, password), "198.51.100.7"), "60") // or guesses could still be told apart
		require.Equal(t, http.StatusOK, get(basic(user, password), "198.51.100.8").Code, "another client is not limited")
		require.EqualValues(t, 2, b.calls.Load())

		out := b.logs.String()
		require.NotContains(t, out, password)
		require.NotContains(t, out, "guess")
		require.NotContains(t, out, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
		require.NotContains(t, out, "Basic")
	})
}
