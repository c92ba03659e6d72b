package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	apiclient "github.com/backtestd/backtestd/api/client"
	"github.com/backtestd/backtestd/internal/obs"
)

// traceBuilt builds cmd/trace beside the server and the worker, once, for
// the tests that run it on their logs.
var traceBuilt = sync.OnceValue(func() error {
	build := exec.CommandContext(context.Background(), "go", "build", "-o", filepath.Join(binDir, "trace"), "../cmd/trace")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build trace: %w\n%s", err, out)
	}
	return nil
})

// runTrace runs the trace command with args and returns what it printed;
// it must exit 0.
func runTrace(t *testing.T, args ...string) string {
	t.Helper()
	select {
	case <-built: // binDir is complete, and no longer being written
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	require.NoError(t, buildErr)
	require.NoError(t, traceBuilt())
	return runCommand(t, nil, "trace", args...)
}

// sweepBundle is a stack with a worker of a given concurrency, the
// generated client and a pool on the stack's schema.
type sweepBundle struct {
	st          *stack
	api         *apiclient.ClientWithResponses
	db          *pgxpool.Pool
	concurrency int
}

func sweepSetup(t *testing.T, concurrency int) *sweepBundle {
	t.Helper()
	// The reconciliation runs every second, as a busy service's would mend a
	// run within its interval: a cancel that meets an attempt's start on a
	// loaded machine can leave the run running with its job cancelled, a
	// race not yet closed, which the reconciliation ends.
	// A sweep of 10,000 runs is one transaction: half a second as shipped,
	// but the race-built server on a machine busy with other tests has
	// taken more than the default 10 s request deadline.
	st := newStack(t, "WORKER_CONCURRENCY="+strconv.Itoa(concurrency), "RECONCILE_INTERVAL=1s",
		"REQUEST_TIMEOUT=60s", "DB_STATEMENT_TIMEOUT=60s", "HTTP_WRITE_TIMEOUT=70s")
	return &sweepBundle{st: st, api: st.api.generated(t), db: st.db, concurrency: concurrency}
}

// sweepGrid is an sma_crossover sweep's grid and symbols over the first
// quarter of 2025 (about 64 bars, enough for slow windows up to 60).
type sweepGrid struct {
	fast, slow []int
	symbols    []string
}

// between returns the integers from lo to hi by step.
func between(lo, hi, step int) []int {
	var out []int
	for v := lo; v <= hi; v += step {
		out = append(out, v)
	}
	return out
}

// symbolsN returns n symbols, SYM0 to SYM<n-1>.
func symbolsN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "SYM" + strconv.Itoa(i)
	}
	return out
}

// createSweep posts the sweep of g under correlation ID cid and checks the
// 202's shape.
func (b *sweepBundle) createSweep(t *testing.T, cid string, g sweepGrid) *apiclient.SweepEnqueued {
	t.Helper()
	anyOf := func(vs []int) []any {
		out := make([]any, len(vs))
		for i, v := range vs {
			out[i] = v
		}
		return out
	}
	resp, err := b.api.CreateSweepWithResponse(t.Context(), &apiclient.CreateSweepParams{XCorrelationID: &cid}, apiclient.NewSweep{
		Kind:        apiclient.SmaCrossover,
		ParamsGrid:  map[string][]any{"fast_window": anyOf(g.fast), "slow_window": anyOf(g.slow)},
		Symbols:     g.symbols,
		Start:       apiDate(t, "2025-01-01"),
		End:         apiDate(t, "2025-03-31"),
		InitialCash: 10000,
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode(), string(resp.Body))
	enq := resp.JSON202
	require.NotNil(t, enq)
	require.Equal(t, cid, enq.CorrelationId)
	require.Equal(t, cid, resp.HTTPResponse.Header.Get("X-Correlation-ID"))
	require.Equal(t, apiclient.SweepEnqueuedStatus("queued"), enq.Status)
	require.Equal(t, "/sweeps/"+enq.SweepId.String(), resp.HTTPResponse.Header.Get("Location"))
	return enq
}

func (b *sweepBundle) sweep(t *testing.T, id string) *apiclient.Sweep {
	t.Helper()
	resp, err := b.api.GetSweepWithResponse(t.Context(), id, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
	require.NotNil(t, resp.JSON200)
	return resp.JSON200
}

// awaitSweep polls the sweep until done says so, for at most within.
func (b *sweepBundle) awaitSweep(t *testing.T, id, what string, within time.Duration, done func(*apiclient.Sweep) bool) *apiclient.Sweep {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := b.sweep(t, id)
		if done(s) {
			return s
		}
		require.True(t, time.Now().Before(deadline), "sweep %s: no %s within %s; last: %+v", id, what, within, s.Counts)
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// sweepRow is what SQL says of a sweep and its runs.
type sweepRow struct {
	runCount, skippedCount int
	finished               bool
	statuses               map[string]int // runs per status
	runs                   map[string]bool
	otherCorrelation       int            // runs whose correlation_id is not the sweep's
	jobs                   map[string]int // River jobs per "state/priority"
}

// explainUnfinished logs, for a failed test, each of the sweep's runs not
// yet final: its row, its job and its lines, which say where it stopped.
func (b *sweepBundle) explainUnfinished(t *testing.T, id string) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	rows, err := b.db.Query(ctx, `
		SELECT r.id::text, r.status, r.attempt, r.cancel_requested_at IS NOT NULL,
		       coalesce(j.state::text, 'gone'), coalesce(j.attempt, 0), coalesce(j.metadata::text, '')
		FROM backtest_runs r LEFT JOIN river_job j ON j.id = r.river_job_id
		WHERE r.sweep_id = $1 AND r.status IN ('queued', 'running', 'retrying')`, id)
	if err != nil {
		t.Logf("explain: %v", err)
		return
	}
	defer rows.Close()
	lines := b.st.worker.lines(t)
	for rows.Next() {
		var run, status, jobState, metadata string
		var attempt, jobAttempt int
		var asked bool
		if err := rows.Scan(&run, &status, &attempt, &asked, &jobState, &jobAttempt, &metadata); err != nil {
			t.Logf("explain: %v", err)
			return
		}
		t.Logf("unfinished run %s: %s at attempt %d (cancel asked: %v); job %s at attempt %d, metadata %s",
			run, status, attempt, asked, jobState, jobAttempt, metadata)
		for _, l := range lines {
			if str(l, obs.KeyRunID) == run {
				t.Logf("  %v", l)
			}
		}
	}
}

func (b *sweepBundle) sweepRow(t *testing.T, id string) sweepRow {
	t.Helper()
	ctx := t.Context()
	r := sweepRow{statuses: map[string]int{}, runs: map[string]bool{}, jobs: map[string]int{}}
	var cid string
	require.NoError(t, b.db.QueryRow(ctx,
		`SELECT run_count, skipped_count, finished_at IS NOT NULL, correlation_id FROM sweeps WHERE id = $1`, id,
	).Scan(&r.runCount, &r.skippedCount, &r.finished, &cid))
	rows, err := b.db.Query(ctx, `SELECT id::text, status, correlation_id <> $2 FROM backtest_runs WHERE sweep_id = $1`, id, cid)
	require.NoError(t, err)
	for rows.Next() {
		var run, status string
		var other bool
		require.NoError(t, rows.Scan(&run, &status, &other))
		r.runs[run] = true
		r.statuses[status]++
		if other {
			r.otherCorrelation++
		}
	}
	require.NoError(t, rows.Err())
	rows, err = b.db.Query(ctx, `SELECT j.state::text || '/' || j.priority, count(*)
		FROM backtest_runs r JOIN river_job j ON j.id = r.river_job_id WHERE r.sweep_id = $1 GROUP BY 1`, id)
	require.NoError(t, err)
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		r.jobs[k] = n
	}
	require.NoError(t, rows.Err())
	return r
}

// requireCountsAgree checks the API's counts of a sweep against SQL's.
func requireCountsAgree(t *testing.T, s *apiclient.Sweep, row sweepRow) {
	t.Helper()
	require.Equal(t, row.runCount, s.RunCount)
	require.Equal(t, row.skippedCount, s.SkippedCount)
	require.Len(t, row.runs, row.runCount, "a run per combination and symbol")
	require.Equal(t, map[string]int{
		"queued": row.statuses["queued"], "running": row.statuses["running"], "retrying": row.statuses["retrying"],
		"succeeded": row.statuses["succeeded"], "failed": row.statuses["failed"], "cancelled": row.statuses["cancelled"],
	}, map[string]int{
		"queued": s.Counts.Queued, "running": s.Counts.Running, "retrying": s.Counts.Retrying,
		"succeeded": s.Counts.Succeeded, "failed": s.Counts.Failed, "cancelled": s.Counts.Cancelled,
	})
}

// str is a line's string field, or "".
func str(l map[string]any, key string) string {
	s, _ := l[key].(string)
	return s
}

// num is a line's number field as an int, or -1.
func num(l map[string]any, key string) int {
	f, ok := l[key].(float64)
	if !ok {
		return -1
	}
	return int(f)
}

// oneSweepLine returns the only line of event for sweep id among lines.
func oneSweepLine(t *testing.T, lines []map[string]any, event, id string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, l := range lines {
		if str(l, obs.KeyEvent) == event && str(l, obs.KeySweepID) == id {
			found = append(found, l)
		}
	}
	require.Len(t, found, 1, "one %s line for the sweep", event)
	return found[0]
}

// Rows of trace's summary: an event's lines per level and total, and runs
// per outcome.
var (
	summaryEventRow   = regexp.MustCompile(`^  (\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`)
	summaryOutcomeRow = regexp.MustCompile(`^  (\S+)\s+(\d+)$`)
	summaryHead       = regexp.MustCompile(`^(\d+) lines of (\d+) runs, `)
	summaryOneRun     = regexp.MustCompile(`(?m)^one run's timeline: trace --run (\S+)$`)
)

// traceSummary is what trace's summary of a fan-out says.
type traceSummary struct {
	lines, runs int
	perEvent    map[string]int // lines per event, all levels
	perOutcome  map[string]int
	oneRun      string
}

func parseTraceSummary(t *testing.T, out string) traceSummary {
	t.Helper()
	rows := strings.Split(strings.TrimRight(out, "\n"), "\n")
	head := summaryHead.FindStringSubmatch(rows[0])
	require.NotNil(t, head, "a summary starts with its totals: %q", rows[0])
	s := traceSummary{perEvent: map[string]int{}, perOutcome: map[string]int{}}
	s.lines, _ = strconv.Atoi(head[1])
	s.runs, _ = strconv.Atoi(head[2])
	section := ""
	for _, row := range rows[1:] {
		switch {
		case row == "":
			section = ""
		case strings.HasSuffix(row, ":") && !strings.HasPrefix(row, " "):
			section = row
		case section == "lines per event:":
			if m := summaryEventRow.FindStringSubmatch(row); m != nil {
				s.perEvent[m[1]], _ = strconv.Atoi(m[6])
			}
		case section == "runs per outcome:":
			m := summaryOutcomeRow.FindStringSubmatch(row)
			require.NotNil(t, m, "an outcome row: %q", row)
			s.perOutcome[m[1]], _ = strconv.Atoi(m[2])
		}
	}
	one := summaryOneRun.FindStringSubmatch(out)
	require.NotNil(t, one, "the summary says how to see one run")
	s.oneRun = one[1]
	return s
}

// TestSweepOfAThousandRuns drains a sweep of 1,090 runs through the real
// server and a worker, then checks that the API, SQL and the logs agree,
// and that the documented ways of reading the logs (the jq recipes, trace)
// work at that size.
func TestSweepOfAThousandRuns(t *testing.T) {
	t.Parallel()
	began := time.Now()
	b := sweepSetup(t, 8)
	ready := time.Now()

	// 11 fast × 10 slow windows, of which fast 13 with slow 12 is refused
	// (fast must be below slow): 109 combinations × 10 symbols.
	g := sweepGrid{fast: append(between(2, 11, 1), 13), slow: between(12, 30, 2), symbols: symbolsN(10)}
	const wantRuns, wantSkipped = 1090, 1
	cid := "sweep-e2e-" + uuid.NewString()[:8]
	enq := b.createSweep(t, cid, g)
	id := enq.SweepId.String()
	require.Equal(t, wantRuns, enq.RunCount)
	require.Equal(t, wantSkipped, enq.SkippedCount)
	enqueued := time.Now()

	final := b.awaitSweep(t, id, "finish", 8*time.Minute, func(s *apiclient.Sweep) bool {
		return s.Status == apiclient.SweepStatusFinished
	})
	drained := time.Now()

	// The API and SQL agree: every run succeeded, each with its River job
	// completed at the sweep's priority.
	row := b.sweepRow(t, id)
	requireCountsAgree(t, final, row)
	require.Equal(t, wantRuns, row.runCount)
	require.Equal(t, map[string]int{"succeeded": wantRuns}, row.statuses)
	require.Equal(t, map[string]int{"completed/2": wantRuns}, row.jobs)
	require.Zero(t, row.otherCorrelation, "every run has the sweep's correlation ID")
	require.True(t, row.finished)
	require.NotNil(t, final.FinishedAt)
	require.Equal(t, 100, final.ProgressPct)
	require.Equal(t, apiclient.RankMetric("sharpe"), final.RankBy)
	require.Len(t, final.Best, 10)
	for i := 1; i < len(final.Best); i++ {
		require.GreaterOrEqual(t, final.Best[i-1].Value, final.Best[i].Value, "best first")
	}
	listed := listRuns(t, b.api, apiclient.ListBacktestsParams{SweepId: &enq.SweepId})
	require.Len(t, listed, wantRuns)
	seen := map[string]bool{}
	for _, r := range listed {
		seen[r.Id.String()] = true
		require.Equal(t, cid, r.CorrelationId)
		require.Equal(t, apiclient.RunStatusSucceeded, r.Status)
	}
	require.Equal(t, row.runs, seen, "the list pages through every run of the sweep, once")

	b.st.server.stop(t)
	b.st.worker.stop(t)
	serverRaw, workerRaw := b.st.server.rawLines(t), b.st.worker.rawLines(t)
	serverLines, workerLines := b.st.server.lines(t), b.st.worker.lines(t)
	all := append(slices.Clone(serverLines), workerLines...)

	// sweep_enqueued and sweep_finished, once each, with SQL's counts.
	enqLine := oneSweepLine(t, serverLines, obs.EventSweepEnqueued, id)
	require.Equal(t, cid, str(enqLine, obs.KeyCorrelationID))
	require.Equal(t, row.runCount, num(enqLine, obs.KeyRunCount))
	require.Equal(t, row.skippedCount, num(enqLine, obs.KeySkippedCount))
	finLine := oneSweepLine(t, all, obs.EventSweepFinished, id)
	require.Equal(t, cid, str(finLine, obs.KeyCorrelationID))
	require.Equal(t, row.statuses["succeeded"], num(finLine, obs.KeySucceededCount))
	require.Equal(t, row.statuses["failed"], num(finLine, obs.KeyFailedCount))
	require.Equal(t, row.statuses["cancelled"], num(finLine, obs.KeyCancelledCount))
	require.GreaterOrEqual(t, num(finLine, obs.KeyDurationMS), 0)

	// Every job line of the sweep's runs carries sweep_id and the sweep's
	// correlation ID; every run started and completed exactly once.
	perRun := map[string]map[string]int{}
	perEvent := map[string]int{} // the lines of the sweep's correlation ID
	for _, l := range all {
		if str(l, obs.KeyCorrelationID) == cid {
			perEvent[str(l, obs.KeyEvent)]++
		}
		run := str(l, obs.KeyRunID)
		if !row.runs[run] {
			if str(l, obs.KeySweepID) == id { // the sweep's own lines, checked above
				require.Contains(t, []string{obs.EventSweepEnqueued, obs.EventSweepFinished}, str(l, obs.KeyEvent), "%v", l)
			}
			continue
		}
		require.Equal(t, "worker", str(l, obs.KeyService), "%v", l)
		require.Equal(t, id, str(l, obs.KeySweepID), "a job line without the sweep: %v", l)
		require.Equal(t, cid, str(l, obs.KeyCorrelationID), "%v", l)
		require.NotNil(t, l[obs.KeyJobID], "%v", l)
		if perRun[run] == nil {
			perRun[run] = map[string]int{}
		}
		perRun[run][str(l, obs.KeyEvent)]++
	}
	require.Len(t, perRun, wantRuns, "every run has job lines")
	for run, events := range perRun {
		require.Equal(t, map[string]int{obs.EventJobStarted: 1, obs.EventJobProgress: 10, obs.EventJobCompleted: 1}, events, "run %s", run)
	}
	require.Equal(t, wantRuns, perEvent[obs.EventJobStarted])
	require.Equal(t, wantRuns, perEvent[obs.EventJobCompleted])

	// docs/logging.md's recipes over what docker compose would show: one
	// run followed by its ID, and the sweep's progress by its correlation
	// ID.
	logs := filepath.Join(t.TempDir(), "compose.log")
	require.NoError(t, os.WriteFile(logs, composeLogs(serverRaw, workerRaw, false), 0o600))
	followed := final.Best[0].RunId.String()
	recipes := map[string]recipe{}
	for _, r := range docRecipes(t, "recipe") {
		recipes[r.name] = r
	}
	require.Contains(t, recipes, "run")
	require.Contains(t, recipes, "sweep")
	steps := runRecipe(t, recipes["run"], logs, map[string]string{"RUN": followed})
	var events []string
	lastPct := -1
	for i, s := range steps {
		events = append(events, str(s, obs.KeyEvent))
		if i > 0 {
			require.LessOrEqual(t, str(steps[i-1], obs.KeyTimestamp), str(s, obs.KeyTimestamp), "in time order")
		}
		if str(s, obs.KeyEvent) == obs.EventJobProgress {
			require.Greater(t, num(s, obs.KeyProgressPct), lastPct, "progress goes up")
			lastPct = num(s, obs.KeyProgressPct)
		}
	}
	wantEvents := []string{obs.EventJobStarted}
	for range 10 {
		wantEvents = append(wantEvents, obs.EventJobProgress)
	}
	wantEvents = append(wantEvents, obs.EventJobCompleted)
	require.Equal(t, wantEvents, events, "run %s's timeline", followed)
	require.Equal(t, []map[string]any{{
		"run_count": float64(wantRuns), "succeeded": float64(wantRuns), "failed": float64(0), "cancelled": float64(0),
	}}, runRecipe(t, recipes["sweep"], logs, map[string]string{"ID": cid}))

	// trace summarises the fan-out in a page, with the log's counts.
	serverLog, workerLog := b.st.server.stdout, b.st.worker.stdout
	traced := time.Now()
	out := runTrace(t, cid, serverLog, workerLog)
	outLines := strings.Count(out, "\n")
	require.Less(t, outLines, 100, "a summary of %d runs in a page:\n%s", wantRuns, out)
	t.Logf("trace %s:\n%s", cid, out)
	sum := parseTraceSummary(t, out)
	cidLines := 0
	for _, n := range perEvent {
		cidLines += n
	}
	require.Equal(t, cidLines, sum.lines)
	require.Equal(t, wantRuns, sum.runs)
	require.Equal(t, perEvent, sum.perEvent, "lines per event, as the log has them")
	require.Equal(t, map[string]int{"succeeded": wantRuns}, sum.perOutcome)
	require.True(t, row.runs[sum.oneRun], "the run it suggests is one of the sweep's: %s", sum.oneRun)

	// ... and shows one run's timeline, line by line.
	one := runTrace(t, "--run", followed, serverLog, workerLog)
	require.NotContains(t, one, "lines per event")
	oneLines := strings.Split(strings.TrimRight(one, "\n"), "\n")
	require.Len(t, oneLines, len(wantEvents), "a line per line of the run:\n%s", one)
	require.Contains(t, oneLines[0], obs.EventJobStarted)
	require.Contains(t, oneLines[0], followed)
	require.Contains(t, oneLines[len(oneLines)-1], obs.EventJobCompleted)
	done := time.Now()

	t.Logf("sweep of %d runs (%d skipped), concurrency %d: stack up %s, POST %s, drained in %s (%.0f runs/s), "+
		"checks %s (trace %s); %d worker lines; trace summary %d lines; whole test %s",
		wantRuns, wantSkipped, b.concurrency, ready.Sub(began).Round(time.Millisecond), enqueued.Sub(ready).Round(time.Millisecond),
		drained.Sub(enqueued).Round(time.Millisecond), float64(wantRuns)/drained.Sub(enqueued).Seconds(),
		done.Sub(drained).Round(time.Millisecond), done.Sub(traced).Round(time.Millisecond),
		len(workerLines), outLines, done.Sub(began).Round(time.Millisecond))
}

// TestSingleRunIsNotStarvedBySweep posts a single backtest while a worker
// of small concurrency drains a sweep of 10,000 runs queued before it: the
// single run, at River's higher priority, starts ahead of the sweep's
// queued runs and finishes while they are still queued. Asserted by the
// order of the worker's lines, not by durations.
func TestSingleRunIsNotStarvedBySweep(t *testing.T) {
	t.Parallel()
	began := time.Now()
	b := sweepSetup(t, 2)
	strategy := b.st.api.createStrategy(t, 5, 20)

	// 20 fast × 10 slow windows × 50 symbols, all accepted: the largest
	// sweep MAX_SWEEP_RUNS allows by default.
	g := sweepGrid{fast: between(2, 21, 1), slow: between(30, 48, 2), symbols: symbolsN(50)}
	const wantRuns = 10000
	enq := b.createSweep(t, "sweep-busy-"+uuid.NewString()[:8], g)
	id := enq.SweepId.String()
	require.Equal(t, wantRuns, enq.RunCount)

	// The worker is busy with the sweep before the single run comes.
	b.awaitSweep(t, id, "progress", 2*time.Minute, func(s *apiclient.Sweep) bool {
		return s.Counts.Succeeded >= 4*b.concurrency
	})
	// Every worker line from here on was written after this point, which
	// is before the POST.
	beforePost := strings.Count(string(readAll(t, b.st.worker.stdout)), "\n")

	resp, err := b.api.CreateBacktestWithResponse(t.Context(), nil, apiclient.NewBacktest{
		StrategyId: uuid.MustParse(strategy), Symbol: "ACME",
		Start: apiDate(t, "2025-01-01"), End: apiDate(t, "2025-03-31"), InitialCash: 10000,
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode(), string(resp.Body))
	single := resp.JSON202.RunId.String()
	body := b.st.api.waitFinished(t, single)
	require.Equal(t, "succeeded", body["status"])

	// It finished while the sweep still had queued runs.
	atSingleEnd := b.sweep(t, id)
	require.Positive(t, atSingleEnd.Counts.Queued, "the sweep still had queued runs: %+v", atSingleEnd.Counts)

	var singlePriority int
	require.NoError(t, b.db.QueryRow(t.Context(),
		`SELECT j.priority FROM backtest_runs r JOIN river_job j ON j.id = r.river_job_id WHERE r.id = $1`, single,
	).Scan(&singlePriority))
	require.Equal(t, 1, singlePriority, "a single run goes ahead of a sweep's (priority 2)")

	// The worker goes on with the sweep past the single, by more runs than
	// it ran at once when the single completed: some started after it.
	b.awaitSweep(t, id, "progress after the single", 2*time.Minute, func(s *apiclient.Sweep) bool {
		return s.Counts.Succeeded >= atSingleEnd.Counts.Succeeded+2*b.concurrency
	})

	// The rest of the sweep is cancelled, not drained: the test has seen
	// what it came for.
	cancelResp, err := b.api.CancelSweepWithResponse(t.Context(), id, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, cancelResp.StatusCode(), string(cancelResp.Body))
	// A run whose job River had fetched but whose attempt had not started
	// when the cancel came is cancelled by its worker, and the sweep ends.
	cancelAsked := time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			b.explainUnfinished(t, id)
		}
	})
	final := b.awaitSweep(t, id, "cancel", 2*time.Minute, func(s *apiclient.Sweep) bool {
		return s.Status == apiclient.SweepStatusCancelled
	})
	settled := time.Since(cancelAsked)
	row := b.sweepRow(t, id)
	requireCountsAgree(t, final, row)
	require.Zero(t, row.statuses["queued"]+row.statuses["running"]+row.statuses["retrying"], "%v", row.statuses)
	require.Positive(t, row.statuses["cancelled"])

	b.st.server.stop(t)
	b.st.worker.stop(t)
	workerLines := b.st.worker.lines(t)
	all := append(b.st.server.lines(t), workerLines...)
	fin := oneSweepLine(t, all, obs.EventSweepFinished, id)
	require.Equal(t, row.statuses["succeeded"], num(fin, obs.KeySucceededCount))
	require.Equal(t, row.statuses["failed"], num(fin, obs.KeyFailedCount))
	require.Equal(t, row.statuses["cancelled"], num(fin, obs.KeyCancelledCount))

	// In the worker's order of lines: the sweep runs started between the
	// single's commit and its start (at most those fetched as it was
	// inserted), and those started after the single completed.
	started, completed := -1, -1
	var singleStart map[string]any
	for i, l := range workerLines {
		if str(l, obs.KeyRunID) != single {
			continue
		}
		require.Empty(t, str(l, obs.KeySweepID), "a single run's lines name no sweep: %v", l)
		switch str(l, obs.KeyEvent) {
		case obs.EventJobStarted:
			require.Equal(t, -1, started, "one start")
			started, singleStart = i, l
		case obs.EventJobCompleted:
			completed = i
		}
	}
	require.GreaterOrEqual(t, started, beforePost, "the single started after its POST")
	require.Greater(t, completed, started)
	sweepStarts := func(lines []map[string]any) int {
		n := 0
		for _, l := range lines {
			if str(l, obs.KeyEvent) == obs.EventJobStarted && str(l, obs.KeySweepID) == id {
				n++
			}
		}
		return n
	}
	// From the single's commit (its backtest_enqueued line: timestamps of
	// one clock, fixed width, so they order as strings) to its start, the
	// worker may start what it had fetched before the commit and what a
	// fetch under way at the commit returns: a slot's worth each, at most.
	var enqueuedAt string
	for _, l := range b.st.server.lines(t) {
		if str(l, obs.KeyEvent) == obs.EventBacktestEnqueued && str(l, obs.KeyRunID) == single {
			enqueuedAt = str(l, obs.KeyTimestamp)
		}
	}
	require.NotEmpty(t, enqueuedAt, "the single's backtest_enqueued line")
	first := beforePost
	for first < started && str(workerLines[first], obs.KeyTimestamp) <= enqueuedAt {
		first++
	}
	ahead := sweepStarts(workerLines[first:started])
	after := sweepStarts(workerLines[completed:])
	before := sweepStarts(workerLines[:beforePost])
	require.LessOrEqual(t, ahead, 2*b.concurrency, "sweep runs that started between the single's commit and its start")
	require.Positive(t, after, "sweep runs still started after the single completed")

	t.Logf("concurrency %d: sweep of %d runs, %d started before the POST, %d between the single's commit "+
		"and its job_started, %d after its job_completed (then cancelled: %v, settled in %s); single's queue_wait_ms %v; whole test %s",
		b.concurrency, wantRuns, before, ahead, after, row.statuses, settled.Round(time.Millisecond), singleStart[obs.KeyQueueWaitMS],
		time.Since(began).Round(time.Millisecond))
}
