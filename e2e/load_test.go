package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// loadRequest is one request of the load and what it must have produced.
type loadRequest struct {
	correlationID string
	user          int
	method, path  string
	body          any
	kind          string // for backtests: "ok", "permanent", "flaky", "panic"

	status int
	runID  string
}

var loadRequests = flag.Int("load-requests", 400,
	"requests TestLoadKeepsEveryLineWithItsRequest sends at once (docs/reliability.md's figures use 2000)")

// Requests in flight at once (400 by default, 2,000 for the docs' figures),
// a quarter of them backtests of which a third fail for good, some fail
// once and some panic once: every line must carry its own request's and its
// own job's fields, never another's.
func TestLoadKeepsEveryLineWithItsRequest(t *testing.T) {
	t.Parallel()
	const users = 4
	requests := *loadRequests
	require.GreaterOrEqual(t, requests, 40, "-load-requests: enough for every kind of backtest")
	backtests := requests / 4
	// 2,000 clients at once, each keeping its connection: above the
	// default HTTP_MAX_CONNECTIONS, where the last ones would wait for the
	// first ones' idle connections to time out. The client dials some
	// connections it uses only later, when a busy machine may be past the
	// header timeout, and a POST is not retried on a connection the server
	// closed: this test is about the logs, not the timeouts.
	st := newStack(t, "FAULT_INJECTION=1", "WORKER_CONCURRENCY=8", "HTTP_MAX_CONNECTIONS=2500",
		"HTTP_READ_HEADER_TIMEOUT=1m", "HTTP_READ_TIMEOUT=1m", "REQUEST_TIMEOUT=1m", "HTTP_WRITE_TIMEOUT=2m", "DB_STATEMENT_TIMEOUT=1m")
	keys := []string{st.api.key}
	for u := 1; u < users; u++ {
		keys = append(keys, strings.TrimSpace(runCommand(t, st.env, "server", "create-api-key", "-user", fmt.Sprintf("load-%d", u))))
	}
	good, gappy := make([]string, users), make([]string, users)
	userIDs := make([]string, users)
	for u := range users {
		c := client{base: st.api.base, key: keys[u]}
		good[u] = c.createStrategy(t, 5, 20)
		gappy[u] = c.createStrategy(t, 5, 100)
		_, body := c.do(t, http.MethodGet, "/strategies/"+good[u], "", nil)
		require.Equal(t, good[u], body["id"])
	}
	for _, l := range st.server.lines(t) {
		if l[obs.KeyEvent] == obs.EventStrategyCreated {
			for u := range users {
				if l[obs.KeyStrategyID] == good[u] {
					userIDs[u], _ = l[obs.KeyUserID].(string)
				}
			}
		}
	}

	reqs := make([]*loadRequest, requests)
	for i := range reqs {
		r := &loadRequest{correlationID: fmt.Sprintf("load-%04d", i), user: i % users}
		switch i % 4 {
		case 0:
			r.method, r.path = http.MethodPost, "/backtests"
			strategy, symbol := good[r.user], "ACME"
			switch n := i / 4; {
			case n%3 == 0:
				// GAP: the worker gets half the range's bars, too few.
				r.kind, strategy, symbol = "permanent", gappy[r.user], "GAP"
			case n%9 == 1:
				r.kind, symbol = "flaky", "FLAKY"
			case n%9 == 2:
				r.kind, symbol = "panic", "PANIC"
			default:
				r.kind = "ok"
			}
			r.body = backtestBody(strategy, symbol)
		case 1:
			r.method, r.path = http.MethodGet, "/strategies/"+good[r.user]
		case 2:
			r.method, r.path = http.MethodGet, "/backtests"
		default:
			r.method, r.path = http.MethodGet, "/healthz"
		}
		reqs[i] = r
	}

	transport := &http.Transport{MaxIdleConnsPerHost: requests, MaxConnsPerHost: 0}
	defer transport.CloseIdleConnections()
	hc := &http.Client{Transport: checkedTransport(t, transport), Timeout: 60 * time.Second}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start // all at once
			var body io.Reader
			if r.body != nil {
				b, _ := json.Marshal(r.body)
				body = bytes.NewReader(b)
			}
			req, err := http.NewRequestWithContext(t.Context(), r.method, st.api.base+r.path, body)
			if err != nil {
				errs <- err
				return
			}
			req.Header.Set("Authorization", "Bearer "+keys[r.user])
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Correlation-ID", r.correlationID)
			resp, err := hc.Do(req)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", r.correlationID, err)
				return
			}
			defer resp.Body.Close()
			r.status = resp.StatusCode
			var out map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&out)
			r.runID, _ = out["run_id"].(string)
			if got := resp.Header.Get("X-Correlation-ID"); got != r.correlationID {
				errs <- fmt.Errorf("%s answered as %s", r.correlationID, got)
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	elapsed := time.Since(began)
	for _, r := range reqs {
		want := http.StatusOK
		if r.method == http.MethodPost {
			want = http.StatusAccepted
		}
		require.Equal(t, want, r.status, r.correlationID)
	}

	// Wait for every backtest to end, straight from the database.
	conn, err := pgx.Connect(t.Context(), st.dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(t.Context()))
	require.Eventually(t, func() bool {
		var open int
		err := conn.QueryRow(t.Context(), `SELECT count(*) FROM backtest_runs WHERE status IN ('queued', 'running', 'retrying')`).Scan(&open)
		return err == nil && open == 0
	}, 3*time.Minute, 200*time.Millisecond, "every backtest ends")
	serverPeak, workerPeak := peakRSS(t, st.server), peakRSS(t, st.worker)
	st.server.stop(t)
	st.worker.stop(t)

	byCID := map[string]*loadRequest{}
	byRun := map[string]*loadRequest{}
	for _, r := range reqs {
		byCID[r.correlationID] = r
		if r.runID != "" {
			byRun[r.runID] = r
		}
	}
	require.Len(t, byRun, backtests)

	// Requests: each of its lines carries its ID; one access line each, for
	// the path it asked, with its user.
	serverLines, mismatched, finished := 0, 0, map[string]int{}
	for _, l := range st.server.lines(t) {
		ev, _ := l[obs.KeyEvent].(string)
		cid, _ := l[obs.KeyCorrelationID].(string)
		r := byCID[cid]
		if processEvents[ev] || r == nil {
			continue // start-up, stop, the strategies made before the load
		}
		serverLines++
		if u, ok := l[obs.KeyUserID]; ok && u != userIDs[r.user] {
			mismatched++
		}
		if rid, ok := l[obs.KeyRunID]; ok && rid != r.runID {
			mismatched++
		}
		if ev == obs.EventRequestFinished {
			finished[cid]++
			if l[obs.KeyPath] != r.path {
				mismatched++
			}
		}
	}
	for _, r := range reqs {
		require.Equal(t, 1, finished[r.correlationID], "%s: one access line", r.correlationID)
	}

	// Jobs: each line carries its own run's fields, on every attempt.
	jobLines, attempts := 0, map[string]int{}
	for _, l := range st.worker.lines(t) {
		runID, ok := l[obs.KeyRunID].(string)
		if !ok {
			continue
		}
		jobLines++
		r := byRun[runID]
		if r == nil || l[obs.KeyCorrelationID] != r.correlationID || l[obs.KeyUserID] != userIDs[r.user] {
			mismatched++
			continue
		}
		if l[obs.KeyEvent] == obs.EventJobStarted {
			a, _ := l[obs.KeyAttempt].(float64)
			attempts[runID] = max(attempts[runID], int(a))
		}
	}
	require.Zero(t, mismatched, "lines with another request's or job's fields")

	// Outcomes, from the database.
	rows, err := conn.Query(t.Context(), `SELECT id::text, status, attempt, COALESCE(error_message, '') FROM backtest_runs`)
	require.NoError(t, err)
	type outcome struct {
		status  string
		attempt int
		errMsg  string
	}
	outcomes := map[string]outcome{}
	for rows.Next() {
		var id string
		var o outcome
		require.NoError(t, rows.Scan(&id, &o.status, &o.attempt, &o.errMsg))
		outcomes[id] = o
	}
	require.NoError(t, rows.Err())
	kinds := map[string]int{}
	for runID, r := range byRun {
		o := outcomes[runID]
		kinds[r.kind]++
		switch r.kind {
		case "permanent":
			require.Equal(t, "failed", o.status, r.correlationID)
			require.Contains(t, o.errMsg, "needs at least 100 bars")
		case "flaky", "panic":
			require.Equal(t, "succeeded", o.status, r.correlationID)
			require.Equal(t, 2, o.attempt, r.correlationID)
			require.Equal(t, 2, attempts[runID], "%s: attempt 2 is in the logs", r.correlationID)
		default:
			require.Equal(t, "succeeded", o.status, r.correlationID)
		}
	}
	t.Logf("%d requests in flight at once, answered in %v; %d backtests (%v); %d request lines and %d job lines, 0 mismatched",
		requests, elapsed.Round(time.Millisecond), len(byRun), kinds, serverLines, jobLines)
	t.Logf("peak RSS: server %d MiB with %d connections, worker %d MiB at concurrency 8 (with the race detector unless E2E_NO_RACE=1)",
		serverPeak>>10, requests, workerPeak>>10)
}

// peakRSS reads a process's peak resident set (VmHWM), in KiB.
func peakRSS(t *testing.T, p *process) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			require.NoError(t, err)
			return kb
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
