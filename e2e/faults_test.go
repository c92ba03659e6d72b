package e2e

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

func backtestBody(strategyID, symbol string) map[string]any {
	return map[string]any{
		"strategy_id": strategyID, "symbol": symbol, "start": "2025-01-01", "end": "2025-07-01", "initial_cash": 10000,
	}
}

func countRows(t *testing.T, dbURL, table string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var n int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM `+table).Scan(&n))
	return n
}

// PostgreSQL goes away and comes back: requests in between get a 503 with
// their correlation ID and nothing half-written; then the service recovers
// on its own.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	var px *proxy
	st := newStackWith(t, stackOptions{via: func(dbURL string) string {
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		px = newProxy(t, u.Host)
		return px.via(dbURL)
	}})
	strategy := st.api.createStrategy(t, 5, 20)
	resp, body := st.api.do(t, http.MethodPost, "/backtests", "", backtestBody(strategy, "ACME"))
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	runID, _ := body["run_id"].(string)
	require.Equal(t, "succeeded", st.api.waitFinished(t, runID)["status"])

	px.cut()
	outage := []string{"outage-post", "outage-get", "outage-ready", "outage-list"}
	requests := map[string]struct{ method, path string }{
		"outage-post":  {http.MethodPost, "/backtests"},
		"outage-get":   {http.MethodGet, "/backtests/" + runID},
		"outage-ready": {http.MethodGet, "/readyz"},
		"outage-list":  {http.MethodGet, "/backtests"},
	}
	for _, cid := range outage {
		r := requests[cid]
		var payload any
		if r.method == http.MethodPost {
			payload = backtestBody(strategy, "ACME")
		}
		start := time.Now()
		resp, body := st.api.do(t, r.method, r.path, cid, payload)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %v", cid, body)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		require.Equal(t, cid, body["correlation_id"])
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		require.Less(t, time.Since(start), 10*time.Second, "%s: a dead database fails fast", cid)
	}
	resp, _ = st.api.do(t, http.MethodGet, "/healthz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "liveness does not depend on the database")
	require.Equal(t, 1, countRows(t, st.dbURL, "backtest_runs"), "nothing half-written")
	require.Equal(t, 1, countRows(t, st.dbURL, "river_job"))

	px.restore()
	var recovered string
	require.Eventually(t, func() bool {
		resp, body := st.api.do(t, http.MethodPost, "/backtests", "after-outage", backtestBody(strategy, "ACME"))
		recovered, _ = body["run_id"].(string)
		return resp.StatusCode == http.StatusAccepted
	}, 30*time.Second, 250*time.Millisecond, "the server recovers by itself")
	require.Equal(t, "succeeded", st.api.waitFinished(t, recovered)["status"], "so does the worker")

	st.server.stop(t)
	st.worker.stop(t)
	for _, cid := range outage {
		var failed, finished int
		for _, l := range st.server.lines(t) {
			if l[obs.KeyCorrelationID] != cid {
				continue
			}
			switch l[obs.KeyEvent] {
			case obs.EventRequestFailed:
				failed++
				require.NotEmpty(t, l[obs.KeyError])
			case obs.EventRequestFinished:
				finished++
				require.InDelta(t, http.StatusServiceUnavailable, l[obs.KeyStatusCode], 0)
			}
		}
		require.Equal(t, 1, failed, "%s: the error is logged", cid)
		require.Equal(t, 1, finished, cid)
	}
}

// killMidJob starts a slow backtest, kills the worker with SIGKILL while it
// runs, starts a new worker, and returns the run once it has finished.
func killMidJob(t *testing.T, st *stack, correlationID string) (map[string]any, *process) {
	t.Helper()
	strategy := st.api.createStrategy(t, 5, 20)
	resp, body := st.api.do(t, http.MethodPost, "/backtests", correlationID, backtestBody(strategy, "SLOW1"))
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	runID, _ := body["run_id"].(string)
	st.worker.waitFor(t, obs.EventJobProgress) // it is running
	require.NoError(t, st.worker.cmd.Process.Kill())
	<-st.worker.done //nolint:errcheck // killed on purpose
	st.worker.done <- nil
	_, body = st.api.do(t, http.MethodGet, "/backtests/"+runID, "", nil)
	require.Equal(t, "running", body["status"], "the dead worker left its run running")

	// River's leader (the new worker, once the dead one's lease runs out)
	// rescues the job after JOB_RESCUE_AFTER.
	next := start(t, "worker", st.env)
	return st.api.waitFinished(t, runID), next
}

func TestKilledWorkersJobIsRetried(t *testing.T) {
	t.Parallel()
	st := newStack(t, "FAULT_INJECTION=1", "JOB_TIMEOUT=5s", "JOB_RESCUE_AFTER=6s", "RECONCILE_INTERVAL=1s")
	run, next := killMidJob(t, st, "killed-then-retried")
	require.Equal(t, "succeeded", run["status"])
	require.InDelta(t, 2, run["attempt"], 0)
	next.stop(t)
	var started, completed bool
	for _, l := range next.lines(t) {
		if l[obs.KeyRunID] != run["id"] {
			continue
		}
		require.Equal(t, "killed-then-retried", l[obs.KeyCorrelationID], "the same correlation_id on the next attempt")
		require.InDelta(t, 2, l[obs.KeyAttempt], 0)
		started = started || l[obs.KeyEvent] == obs.EventJobStarted
		completed = completed || l[obs.KeyEvent] == obs.EventJobCompleted
	}
	require.True(t, started && completed, "the new worker ran attempt 2 to the end")
}

func TestCrashOnTheLastAttemptFailsTheRun(t *testing.T) {
	t.Parallel()
	st := newStack(t, "FAULT_INJECTION=1", "JOB_TIMEOUT=5s", "JOB_RESCUE_AFTER=6s", "RECONCILE_INTERVAL=1s",
		"JOB_MAX_ATTEMPTS=1")
	run, next := killMidJob(t, st, "killed-on-last-attempt")
	require.Equal(t, "failed", run["status"], "not running forever")
	runErr, _ := run["error"].(map[string]any)
	require.Equal(t, "job_discarded", runErr["type"])
	require.NotEmpty(t, runErr["message"])
	next.stop(t)
	var failed map[string]any
	for _, l := range next.lines(t) {
		if l[obs.KeyEvent] == obs.EventRunFailed && l[obs.KeyRunID] == run["id"] {
			failed = l
		}
	}
	require.NotNil(t, failed, "run_failed is logged")
	require.Equal(t, "killed-on-last-attempt", failed[obs.KeyCorrelationID])
	require.Equal(t, "error", failed[obs.KeyLevel])
	requireSchema(t, next.rawLines(t))
}
