package httpx_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// Two Authorization headers are ambiguous (which one would a proxy have
// checked?): 400, whatever they hold.
func TestTwoAuthorizationHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name   string
		values []string
		want   int
	}{
		{"one valid key", []string{"Bearer " + b.aliceKey}, http.StatusOK},
		{"the same key twice", []string{"Bearer " + b.aliceKey, "Bearer " + b.aliceKey}, http.StatusBadRequest},
		{"two users' keys", []string{"Bearer " + b.aliceKey, "Bearer " + b.bobKey}, http.StatusBadRequest},
		{"a valid key after a bad one", []string{"Bearer bt_nope", "Bearer " + b.aliceKey}, http.StatusBadRequest},
		{"an empty one and a valid one", []string{"", "Bearer " + b.aliceKey}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.send(t, http.MethodGet, "/backtests", "", map[string][]string{"Authorization": tt.values}, "")
			if tt.want != http.StatusOK {
				requireProblem(t, r, tt.want)
				return
			}
			require.Equal(t, tt.want, r.status, r.raw)
		})
	}
}

// A user deleted while a server still has their key cached: the writes
// that need the user find them gone and answer 401, not 500, and the key
// is forgotten. No listener runs here, so only the cache's TTL would have
// dropped the key.
func TestDeletedUsersCachedKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bobStrategy := b.strategy(t, b.bobKey)

	tests := []struct {
		name, key, user, path, body string
	}{
		{"create a strategy", b.aliceKey, "alice", "/strategies", `{"kind":"buy_and_hold"}`},
		{
			"start a backtest", b.bobKey, "bob", "/backtests",
			`{"strategy_id":"` + bobStrategy + `","symbol":"ACME","start":"2020-01-01","end":"2021-01-01","initial_cash":1000}`,
		},
	}
	for _, tt := range tests {
		// The key is cached by a first request, then its user deleted.
		require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/backtests", tt.key, "", "").status)
		_, err := b.db.Pool.Exec(t.Context(), `DELETE FROM users WHERE name = $1`, tt.user)
		require.NoError(t, err)
		before := b.rows(t)

		r := b.post(t, tt.path, tt.key, tt.body)
		requireProblem(t, r, http.StatusUnauthorized)
		require.Equal(t, before, b.rows(t), "%s: nothing written", tt.name)
		// Still cached, the key would list an empty page: it is gone.
		requireProblem(t, b.call(t, http.MethodGet, "/backtests", tt.key, "", ""), http.StatusUnauthorized)
	}
	require.Nil(t, b.logs.Find(t, obs.EventRequestFailed), "a gone user is no server fault")
}

// Past the bound of unfinished runs POST /backtests, and POST /sweeps,
// answer 429 with Retry-After and write nothing, also when a user's
// requests race.
func TestUnfinishedRunsBound(t *testing.T) {
	t.Parallel()
	const bound = 2
	b := setup(t, func(d *httpx.Deps) {
		enq, ok := d.Enqueuer.(*enqueue.Enqueuer)
		require.True(t, ok)
		enq.WithMaxUnfinished(bound)
	})
	body := func(strategy string) string {
		return `{"strategy_id":"` + strategy + `","symbol":"ACME","start":"2020-01-01","end":"2021-01-01","initial_cash":1000}`
	}

	// One after the other.
	alices := b.strategy(t, b.aliceKey)
	for range bound {
		r := b.post(t, "/backtests", b.aliceKey, body(alices))
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
	}
	before := b.rows(t)
	r := b.post(t, "/backtests", b.aliceKey, body(alices))
	requireProblem(t, r, http.StatusTooManyRequests)
	require.Equal(t, "/problems/too_many_unfinished", r.body["type"])
	require.Equal(t, "60", r.header.Get("Retry-After"))
	require.Contains(t, r.body["detail"], strconv.Itoa(bound)+" backtests queued or running")
	require.Equal(t, "You have 2 backtests queued or running, the most allowed: start more once some have finished.", r.body["detail"])
	require.Equal(t, before, b.rows(t), "a refused backtest writes nothing")
	sweep := b.post(t, "/sweeps", b.aliceKey, sweepBody)
	requireProblem(t, sweep, http.StatusTooManyRequests)
	require.Equal(t, "/problems/too_many_unfinished", sweep.body["type"])
	require.Equal(t, "60", sweep.header.Get("Retry-After"))
	require.Equal(t, "You have 2 backtests queued or running; this sweep's 10 more would pass the most allowed, 2: "+
		"start it once some have finished, or make it smaller.", sweep.body["detail"])
	require.Equal(t, before, b.rows(t), "a refused sweep writes nothing")

	// At once, another user: exactly the bound gets in.
	bobs := b.strategy(t, b.bobKey)
	before = b.rows(t)
	const racers = 12
	statuses := make(chan int, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range racers {
		wg.Go(func() {
			<-start
			statuses <- b.post(t, "/backtests", b.bobKey, body(bobs)).status
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	require.Equal(t, map[int]int{http.StatusAccepted: bound, http.StatusTooManyRequests: racers - bound}, got)
	after := b.rows(t)
	require.Equal(t, before["backtest_runs"]+bound, after["backtest_runs"])
	require.Equal(t, before["river_job"]+bound, after["river_job"])
	require.Nil(t, b.logs.Find(t, obs.EventRequestFailed), "the bound is no server fault")
}

// waitForEvent waits until logs hold n lines of event, and returns the nth.
func waitForEvent(t *testing.T, logs *logtest.Sink, event string, n int) map[string]any {
	t.Helper()
	var found map[string]any
	require.Eventually(t, func() bool {
		seen := 0
		for _, l := range logs.Lines(t) {
			if l[obs.KeyEvent] == event {
				seen++
				if seen == n {
					found = l
					return true
				}
			}
		}
		return false
	}, 30*time.Second, 5*time.Millisecond, "%d %s lines", n, event)
	return found
}

// The listener keeps the cache in step with api_keys: a key deleted in SQL,
// or with its user, is refused by the next request, well inside the TTL;
// a lost listening connection empties the cache and is reopened.
func TestKeyListenerFollowsRevocations(t *testing.T) {
	t.Parallel()
	cache := httpx.NewKeyCache(time.Hour, 100) // only an invalidation can drop a key here
	// NOTIFY reaches every schema of a database: another test's revocation
	// would be heard here.
	b := setupOn(t, dbtest.NewDatabase(t), func(d *httpx.Deps) { d.Keys = cache })
	listenerLogs := &logtest.Sink{}
	var pid atomic.Uint32
	l := &httpx.KeyListener{
		Logger: obs.NewLogger(listenerLogs, obs.Options{Service: "server"}),
		Cache:  cache,
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			c, err := pgx.Connect(ctx, b.db.URL)
			if err == nil {
				pid.Store(c.PgConn().PID())
			}
			return c, err
		},
		CheckEvery: time.Second, // the quiet-connection ping runs too
		RetryMin:   time.Millisecond,
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	waitForEvent(t, listenerLogs, obs.EventKeyListenerStarted, 1)

	get := func(key string) int { return b.call(t, http.MethodGet, "/backtests", key, "", "").status }
	q := store.New(b.db.Pool)

	// Deleted in SQL.
	require.Equal(t, http.StatusOK, get(b.aliceKey))
	_, err := b.db.Pool.Exec(t.Context(), `DELETE FROM api_keys WHERE key_hash = $1`, httpx.HashAPIKey(b.aliceKey))
	require.NoError(t, err)
	require.InDelta(t, 1, waitForEvent(t, listenerLogs, obs.EventAPIKeyInvalidated, 1)[obs.KeyDropped], 0,
		"the cached key is dropped")
	require.Equal(t, http.StatusUnauthorized, get(b.aliceKey))

	// Deleted with its user.
	require.Equal(t, http.StatusOK, get(b.bobKey))
	_, err = b.db.Pool.Exec(t.Context(), `DELETE FROM users WHERE name = 'bob'`)
	require.NoError(t, err)
	require.InDelta(t, 1, waitForEvent(t, listenerLogs, obs.EventAPIKeyInvalidated, 2)[obs.KeyDropped], 0)
	require.Equal(t, http.StatusUnauthorized, get(b.bobKey))

	// The listening connection is killed: the listener says so, empties
	// the cache, listens again, and revocations work as before.
	carol, err := q.EnsureUser(t.Context(), "carol")
	require.NoError(t, err)
	carolKey, hash := httpx.NewAPIKey()
	k, err := q.CreateAPIKey(t.Context(), carol.ID, hash, httpx.PublicPrefix(carolKey))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, get(carolKey))
	_, err = b.db.Pool.Exec(t.Context(), `SELECT pg_terminate_backend($1)`, int(pid.Load()))
	require.NoError(t, err)
	failed := waitForEvent(t, listenerLogs, obs.EventKeyListenerFailed, 1)
	require.InDelta(t, 1, failed[obs.KeyDropped], 0, "carol's key went with the connection")
	require.NotEmpty(t, failed[obs.KeyError])
	waitForEvent(t, listenerLogs, obs.EventKeyListenerStarted, 2)
	require.Equal(t, http.StatusOK, get(carolKey))
	_, err = q.RevokeAPIKey(t.Context(), k.ID)
	require.NoError(t, err)
	require.InDelta(t, 1, waitForEvent(t, listenerLogs, obs.EventAPIKeyInvalidated, 3)[obs.KeyDropped], 0)
	require.Equal(t, http.StatusUnauthorized, get(carolKey))

	cancel()
	<-done
	events := []any{}
	for _, line := range listenerLogs.Lines(t) {
		events = append(events, line[obs.KeyEvent])
	}
	require.Equal(t, []any{
		obs.EventKeyListenerStarted, obs.EventAPIKeyInvalidated, obs.EventAPIKeyInvalidated,
		obs.EventKeyListenerFailed, obs.EventKeyListenerStarted, obs.EventAPIKeyInvalidated,
	}, events, "and nothing once stopped")
}
