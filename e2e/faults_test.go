package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
		resp, body := st.api.do(t, r.method, r.path, cid, payload)
		if resp.StatusCode != http.StatusServiceUnavailable {
			for _, l := range st.server.lines(t) { // what the server saw, for the failure message
				if l[obs.KeyCorrelationID] == cid && l[obs.KeyEvent] == obs.EventRequestFailed {
					t.Logf("%s: %v (%v)", cid, l[obs.KeyError], l[obs.KeyErrorType])
				}
			}
		}
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %v", cid, body)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		require.Equal(t, cid, body["correlation_id"])
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
	}
	resp, _ = st.api.do(t, http.MethodGet, "/healthz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "liveness does not depend on the database")
	require.Equal(t, 1, countRows(t, st.dbURL, "backtest_runs"), "nothing half-written")
	// Backtest jobs only: the worker's periodic reconcile_runs job lands in
	// river_job too, once it has been elected leader.
	require.Equal(t, 1, countRows(t, st.dbURL, "river_job WHERE kind = 'backtest'"), "nothing half-written")

	px.restore()
	restored := time.Now()
	var recovered string
	require.Eventually(t, func() bool {
		resp, body := st.api.do(t, http.MethodPost, "/backtests", "after-outage", backtestBody(strategy, "ACME"))
		recovered, _ = body["run_id"].(string)
		return resp.StatusCode == http.StatusAccepted
	}, 30*time.Second, 250*time.Millisecond, "the server recovers by itself")
	t.Logf("outage: %d requests answered 503 with their correlation_id, 0 rows written; a POST succeeded %v after the database returned",
		len(outage), time.Since(restored).Round(time.Millisecond))
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
				// Failed on the refused connection, not by waiting out the
				// request's deadline: fast, whatever the machine's load.
				require.NotContains(t, l[obs.KeyError], "deadline exceeded", "%s: a dead database fails fast", cid)
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
	// rescues the job after JOB_RESCUE_AFTER. Time passes in the database
	// rather than on the wall clock: the dead leader's lease (River's 15 s,
	// not a setting) has run out, and the attempt began a minute ago, past
	// the stack's JOB_RESCUE_AFTER but far inside River's default.
	leaderGoneJobAged(t, st.db, "the dead worker", time.Minute)
	next := start(t, "worker", st.env)
	return st.api.waitFinished(t, runID), next
}

// leaderGoneJobAged makes time pass in the database rather than on the
// wall clock, for River's rescue: the lease of River's leader (who names
// that process) has run out, and the one running backtest job, the
// leader's too, began age ago. Both must be there to change.
func leaderGoneJobAged(t *testing.T, db *pgxpool.Pool, who string, age time.Duration) {
	t.Helper()
	tag, err := db.Exec(t.Context(), `UPDATE river_leader SET expires_at = now() - interval '1 second'`)
	require.NoError(t, err)
	require.Equal(t, int64(1), tag.RowsAffected(), "%s was the leader", who)
	tag, err = db.Exec(t.Context(), `UPDATE river_job SET attempted_at = attempted_at - make_interval(secs => $1)
		WHERE state = 'running' AND kind = 'backtest'`, age.Seconds())
	require.NoError(t, err)
	require.Equal(t, int64(1), tag.RowsAffected(), "%s's job is still running as far as River knows", who)
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
		if l[obs.KeyEvent] == obs.EventRunReconciled {
			// The reconciliation may find the rescued job before attempt 2
			// starts: the run is retrying, attempt 1 lost with its worker.
			require.Equal(t, "job_rescued", l[obs.KeyRiverAction])
			require.InDelta(t, 1, l[obs.KeyAttempt], 0)
			continue
		}
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
	require.Equal(t, "job_discarded", runErr["code"])
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

// SIGTERM while requests and jobs are in flight: every request the server
// accepted is answered, running jobs finish or go back to the queue (never
// failed), nothing accepted is lost, and the final lines are written.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	// The worker's shutdown timeout is shorter than a slow job: those are
	// interrupted. The server's is long: every request it read finishes
	// before server_stopped, however busy the machine.
	st := newStackWith(t, stackOptions{
		env:       []string{"FAULT_INJECTION=1", "WORKER_CONCURRENCY=2", "SHUTDOWN_TIMEOUT=1m"},
		workerEnv: []string{"SHUTDOWN_TIMEOUT=1s"},
	})
	strategy := st.api.createStrategy(t, 5, 20)
	// Each new connection: a request is either accepted and answered, or
	// refused once the listener is closed; never cut halfway.
	hc := &http.Client{Transport: checkedTransport(t, &http.Transport{DisableKeepAlives: true}), Timeout: 30 * time.Second}
	post := func(cid, symbol string) (int, string, error) {
		b, _ := json.Marshal(backtestBody(strategy, symbol))
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.api.base+"/backtests", bytes.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+st.api.key)
		req.Header.Set("X-Correlation-ID", cid)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		id, _ := out["run_id"].(string)
		return resp.StatusCode, id, nil
	}
	// Jobs that hang until they are cancelled keep both worker slots busy
	// when the signal comes, however long the load takes to get there.
	for i := range 4 {
		status, _, err := post(fmt.Sprintf("hang-%d", i), "HANG")
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, status)
	}
	st.worker.waitFor(t, obs.EventJobProgress)

	var mu sync.Mutex
	accepted, refused := []string{}, 0
	var dropped []error // errors other than a refused or reset connection
	var otherStatus []int
	var reset []string // connections reset unread: must have left no trace
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 { // bounded: the server stops long before
				select {
				case <-stop:
					return
				default:
				}
				cid := fmt.Sprintf("term-%d-%d", g, i)
				status, runID, err := post(cid, "ACME")
				mu.Lock()
				switch {
				case errors.Is(err, syscall.ECONNREFUSED):
					refused++
				case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF):
					// Still in the kernel's accept queue when the listener
					// closed: TCP resets those, unread (the client sees the
					// reset while reading, writing, or as an early EOF).
					reset = append(reset, cid)
				case err != nil:
					dropped = append(dropped, err)
				case status != http.StatusAccepted:
					otherStatus = append(otherStatus, status)
				default:
					accepted = append(accepted, runID)
				}
				mu.Unlock()
				if err != nil {
					return // the server is gone
				}
			}
		}()
	}
	// The signal comes while the clients are posting: once some of their
	// requests were accepted, however long that took.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= 20
	}, time.Minute, 10*time.Millisecond, "the clients' requests are accepted")
	require.NoError(t, st.server.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, st.worker.cmd.Process.Signal(syscall.SIGTERM))
	for _, p := range []*process{st.server, st.worker} {
		select {
		case err := <-p.done:
			p.done <- err // for Cleanup
			require.NoError(t, err)
		case <-time.After(2 * time.Minute): // past the server's SHUTDOWN_TIMEOUT
			t.Fatal("did not stop")
		}
	}
	close(stop)
	wg.Wait()
	require.Empty(t, dropped, "accepted requests were dropped")
	require.Empty(t, otherStatus, "requests failed during shutdown")
	server, worker := st.server.lines(t), st.worker.lines(t)
	require.Equal(t, obs.EventServerStopped, server[len(server)-1][obs.KeyEvent])
	require.Equal(t, obs.EventWorkerStopped, worker[len(worker)-1][obs.KeyEvent])

	// Nothing failed, nothing lost: runs are done or back in the queue.
	conn, err := pgx.Connect(t.Context(), st.dbURL)
	require.NoError(t, err)
	defer conn.Close(t.Context())
	var failed, running int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE status = 'failed'),
		count(*) FILTER (WHERE status = 'running') FROM backtest_runs`).Scan(&failed, &running))
	require.Zero(t, failed, "a shutdown fails no run")
	require.Zero(t, running, "no run is left running")
	for _, id := range accepted {
		var n int
		require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM backtest_runs WHERE id = $1`, id).Scan(&n))
		require.Equal(t, 1, n, "accepted run %s was lost", id)
	}
	for _, cid := range reset {
		var n int
		require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM backtest_runs WHERE correlation_id = $1`, cid).Scan(&n))
		require.Zero(t, n, "%s was reset after the server had read it", cid)
		for _, l := range server {
			require.NotEqual(t, cid, l[obs.KeyCorrelationID], "%s was reset after the server had read it", cid)
		}
	}

	var hung int
	require.NoError(t, conn.QueryRow(t.Context(),
		`SELECT count(*) FROM backtest_runs WHERE symbol = 'HANG' AND status = 'queued'`).Scan(&hung))
	require.Equal(t, 4, hung, "the hanging jobs were interrupted and are back in the queue")

	// A new worker picks up where the old one stopped.
	next := start(t, "worker", append(st.env, "WORKER_CONCURRENCY=8", "SHUTDOWN_TIMEOUT=1s"))
	require.Eventually(t, func() bool {
		var open int
		err := conn.QueryRow(t.Context(),
			`SELECT count(*) FROM backtest_runs WHERE status <> 'succeeded' AND symbol <> 'HANG'`).Scan(&open)
		return err == nil && open == 0
	}, 60*time.Second, 200*time.Millisecond, "every accepted backtest succeeds in the end")
	next.stop(t)
	interrupted := 0
	for _, l := range worker {
		if l[obs.KeyEvent] == obs.EventJobInterrupted {
			interrupted++
		}
	}
	t.Logf("SIGTERM with 20 clients posting: %d accepted (all succeeded in the end), %d refused after close, %d reset unread in the accept queue, %d jobs interrupted and requeued",
		len(accepted), refused, len(reset), interrupted)
	require.Positive(t, interrupted, "the hanging jobs were interrupted, not failed")
}

// A job that panics, run by the real worker with all of River's lines
// written: every line about the job carries its correlation_id, River's
// uncorrelated copies of the panic are not written, and the processes say
// which build they are.
func TestRiverLinesAboutAPanickingJobAreCorrelated(t *testing.T) {
	t.Parallel()
	st := newStack(t, "FAULT_INJECTION=1", "RIVER_LOG_LEVEL=debug")
	strategy := st.api.createStrategy(t, 5, 20)
	resp, body := st.api.do(t, http.MethodPost, "/backtests", "panics-once", backtestBody(strategy, "PANIC"))
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	runID, _ := body["run_id"].(string)
	require.Equal(t, "succeeded", st.api.waitFinished(t, runID)["status"], "the second attempt succeeds")
	st.worker.stop(t)

	var jobID any
	var panicked int
	for _, l := range st.worker.lines(t) {
		if l[obs.KeyRunID] == runID {
			jobID = l[obs.KeyJobID]
			if l[obs.KeyEvent] == obs.EventJobFailed && l[obs.KeyPanic] == true {
				panicked++
			}
		}
	}
	require.NotNil(t, jobID)
	require.Equal(t, 1, panicked, "job_failed tells of the panic")
	for _, l := range st.worker.lines(t) {
		if l[obs.KeyJobID] == jobID {
			require.Equal(t, "panics-once", l[obs.KeyCorrelationID], "a line about the job without its correlation_id: %v", l)
		}
		if l[obs.KeyEvent] == obs.EventRiverLog {
			require.NotContains(t, l[obs.KeyMessage], "panic recovery", "job_failed said it already")
		}
	}
	requireSchema(t, st.worker.rawLines(t))

	for _, p := range []struct {
		name    string
		process *process
		started string
	}{{"server", st.server, obs.EventServerStarted}, {"worker", st.worker, obs.EventWorkerStarted}} {
		version, _ := p.process.waitFor(t, p.started)[obs.KeyVersion].(string)
		require.NotEmpty(t, version, p.name)
		require.True(t, strings.HasPrefix(runCommand(t, st.env, p.name, "version"), p.name+" "+version),
			"%s version prints the version %s logs", p.name, version)
	}
}
