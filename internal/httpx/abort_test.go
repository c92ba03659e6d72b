package httpx_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// departure cancels a request's context, as net/http does when the client
// goes away, when the request's n-th database query (or, if sql is set, the
// query with that text) starts (before it is sent) or ends (after its answer
// came back).
type departure struct {
	n      int32
	sql    string
	atEnd  bool
	cancel context.CancelFunc
	seen   atomic.Int32
	fired  atomic.Bool
}

// at reports whether the query is the one to leave at.
func (d *departure) at(sql string, n int32) bool {
	if d.sql != "" {
		return strings.EqualFold(strings.TrimSpace(sql), d.sql)
	}
	return n == d.n
}

type departureKey struct{}

// departureTracer counts the queries of requests that carry a departure.
type departureTracer struct{}

type departureSQLKey struct{}

func (departureTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	d, ok := ctx.Value(departureKey{}).(*departure)
	if !ok {
		return ctx
	}
	if d.at(data.SQL, d.seen.Add(1)) && !d.atEnd {
		d.fired.Store(true)
		d.cancel()
	}
	return context.WithValue(ctx, departureSQLKey{}, data.SQL)
}

func (departureTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	d, ok := ctx.Value(departureKey{}).(*departure)
	if !ok {
		return
	}
	if sql, _ := ctx.Value(departureSQLKey{}).(string); d.at(sql, d.seen.Load()) && d.atEnd {
		d.fired.Store(true)
		d.cancel()
	}
}

// A client that leaves at any step of POST /backtests (before or after each
// query of the enqueue transaction, the COMMIT included) gets an access line
// with status 499 at info, and no error line; the run and its job are both
// written or neither is. A deadline of the server's own is a 503 and an
// error, as before.
func TestDepartedClientIsNotAServerError(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = departureTracer{}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	logs := &logtest.Sink{}
	inserter, err := enqueue.NewInsertClient(pool, obs.NewHandler(logs, obs.Options{Service: "server"}))
	require.NoError(t, err)
	q := store.New(pool)
	handler := httpx.NewServer(obs.NewLogger(logs, obs.Options{Service: "server"}),
		httpx.Deps{Queries: q, Enqueuer: enqueue.NewEnqueuer(pool, inserter, 0), DB: pool})
	user, err := q.EnsureUser(t.Context(), "alice")
	require.NoError(t, err)
	key, hash := httpx.NewAPIKey()
	require.NoError(t, q.AddAPIKey(t.Context(), user.ID, hash))
	strategy, err := q.CreateStrategy(t.Context(), store.NewStrategy{UserID: user.ID, Name: "s", Kind: "buy_and_hold", Params: []byte(`{}`)})
	require.NoError(t, err)
	body := `{"strategy_id":"` + strategy.ID.String() + `","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":100}`

	send := func(ctx context.Context, cid string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/backtests", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(httpx.HeaderCorrelationID, cid)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}
	finished := func(cid string) map[string]any {
		var found map[string]any
		for _, l := range logs.Lines(t) {
			if l[obs.KeyCorrelationID] == cid && l[obs.KeyEvent] == obs.EventRequestFinished {
				require.Nil(t, found, "one access line per request")
				found = l
			}
		}
		require.NotNil(t, found, cid)
		return found
	}
	written := func(cid string) int {
		var runs, jobCount int
		require.NoError(t, db.Pool.QueryRow(t.Context(),
			`SELECT count(*) FROM backtest_runs WHERE correlation_id = $1`, cid).Scan(&runs))
		require.NoError(t, db.Pool.QueryRow(t.Context(),
			`SELECT count(*) FROM river_job WHERE kind = 'backtest' AND args->>'correlation_id' = $1`, cid).Scan(&jobCount))
		require.Equal(t, runs, jobCount, "%s: the run and its job are written together or not at all", cid)
		require.LessOrEqual(t, runs, 1)
		return runs
	}

	// The key's owner is cached from here on: every query counted below is
	// the handler's.
	require.Equal(t, http.StatusAccepted, send(t.Context(), "warm-up").Code)

	// leave sends a request whose client leaves at d, and returns how many
	// runs it wrote.
	leave := func(d *departure, cid string) (fired bool, runs int) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		d.cancel = cancel
		rec := send(context.WithValue(ctx, departureKey{}, d), cid)
		line := finished(cid)
		if !d.fired.Load() { // the request ran fewer queries than d.n
			require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
			require.InDelta(t, http.StatusAccepted, line[obs.KeyStatusCode], 0)
			require.Equal(t, 1, written(cid))
			return false, 1
		}
		require.InDelta(t, httpx.StatusClientClosedRequest, line[obs.KeyStatusCode], 0, "%s: %v", cid, line)
		require.Equal(t, "info", line[obs.KeyLevel])
		return true, written(cid)
	}

	// At each query in turn. (How many there are varies: River sends an
	// insert notification at most every so often.)
	departures := 0
	for n := int32(1); ; n++ {
		require.Less(t, n, int32(50), "the request never finished its queries")
		firedBefore, _ := leave(&departure{n: n}, fmt.Sprintf("gone-%d-before", n))
		firedAfter, _ := leave(&departure{n: n, atEnd: true}, fmt.Sprintf("gone-%d-after", n))
		if !firedBefore || !firedAfter {
			break
		}
		departures += 2
	}
	// At the COMMIT: before it nothing is written, after it everything is.
	fired, runs := leave(&departure{sql: "commit"}, "gone-before-commit")
	require.True(t, fired)
	require.Zero(t, runs, "a client gone before the COMMIT leaves nothing")
	fired, runs = leave(&departure{sql: "commit", atEnd: true}, "gone-after-commit")
	require.True(t, fired)
	require.Equal(t, 1, runs, "a client gone after the COMMIT leaves the run and its job")
	t.Logf("%d departures, one before and after each query: 499 at info each, runs and jobs written together or not at all",
		departures+2)

	for _, l := range logs.Lines(t) {
		require.NotEqual(t, "error", l[obs.KeyLevel], "a departed client is not a server error: %v", l)
		require.NotContains(t, l, obs.KeyTraceback, "%v", l)
	}

	// A deadline of the server's own is not a departure.
	ctx, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
	defer cancel()
	rec := send(ctx, "deadline")
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	line := finished("deadline")
	require.InDelta(t, http.StatusServiceUnavailable, line[obs.KeyStatusCode], 0)
	require.Equal(t, "error", line[obs.KeyLevel])
	require.NotNil(t, logs.Find(t, obs.EventRequestFailed), "the failure is logged")
	require.Zero(t, written("deadline"))
}
