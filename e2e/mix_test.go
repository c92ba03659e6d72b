package e2e

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	apiclient "github.com/backtestd/backtestd/api/client"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

const (
	// mixConcurrency is each worker's WORKER_CONCURRENCY; the mix runs two
	// workers, whose slots the hanging runs fill.
	mixConcurrency = 4
	// mixWait bounds each wait of the mix for the database to get somewhere.
	mixWait = 2 * time.Minute
	// mixPoll spaces the reads of a wait.
	mixPoll = 100 * time.Millisecond
)

// mixKind is one way TestMix drives a run, and how the run must end: its
// status, its error code, its attempts ("attempt:outcome:code", first
// first), its River job's state at rest ("" for a job deleted), and what
// the reconciliation logs of it (run_reconciled's river_action).
type mixKind struct {
	name   string
	symbol string
	// gappy runs the strategy that wants more bars than GAP data has.
	gappy    bool
	n        int
	status   string
	code     string
	attempts []string
	job      string
	// reconciled is the river_action of the run's one run_reconciled
	// line, if the run must have one; mayRetry allows one of job_retried
	// (the reconciliation saw the retried job before a worker took it).
	reconciled string
	mayRetry   bool
}

// mixRun is one run of the mix.
type mixRun struct {
	kind          *mixKind
	id            string
	correlationID string
	jobID         int64
}

// mixState is a run and its job as the database has them.
type mixState struct {
	status  string
	attempt int
	job     string // "" when the job is gone
}

// mixAction is done to each run of a kind once the run is ready for it.
type mixAction struct {
	runs  []*mixRun
	ready func(mixState) bool
	act   func(*mixRun)
}

// mixBundle is what TestMix drives: the service from its binaries with two
// workers, the generated API client, a pool on the service's schema, and a
// River client on it to do what River UI's buttons do.
type mixBundle struct {
	st         *stack
	second     *process
	api        *apiclient.ClientWithResponses
	db         *pgxpool.Pool
	river      *river.Client[pgx.Tx]
	strategies map[bool]uuid.UUID // by mixKind.gappy
	runs       []*mixRun
}

// mixSetup starts the service with a second worker, and makes the
// strategies of the mix.
func mixSetup(t *testing.T) *mixBundle {
	t.Helper()
	// Two attempts: River's default policy retries the first after about a
	// second; the runs acted on while retrying (DEFER) wait an hour for
	// their second. The reconciliation runs every second.
	st := newStack(t, "FAULT_INJECTION=1", "JOB_MAX_ATTEMPTS=2", "RECONCILE_INTERVAL=1s",
		"WORKER_CONCURRENCY="+strconv.Itoa(mixConcurrency))
	second := start(t, "worker", st.env)
	second.waitFor(t, obs.EventWorkerStarted)
	// River UI's buttons call these methods of River's client: an
	// insert-only client on the same schema, never started.
	rc, err := river.NewClient(riverpgxv5.New(st.db), &river.Config{Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	require.NoError(t, err)
	b := &mixBundle{st: st, second: second, api: st.api.generated(t), db: st.db, river: rc}
	b.strategies = map[bool]uuid.UUID{
		false: uuid.MustParse(st.api.createStrategy(t, 5, 20)),
		// 100 bars wanted; GAP data has about 65 of the range's 130.
		true: uuid.MustParse(st.api.createStrategy(t, 5, 100)),
	}
	return b
}

// submit creates k's runs through the API.
func (b *mixBundle) submit(t *testing.T, k *mixKind) []*mixRun {
	t.Helper()
	var out []*mixRun
	for i := range k.n {
		cid := fmt.Sprintf("mix-%s-%d", k.name, i)
		resp, err := b.api.CreateBacktestWithResponse(t.Context(), nil, apiclient.NewBacktest{
			StrategyId: b.strategies[k.gappy], Symbol: fmt.Sprintf("%s%d", k.symbol, i),
			Start: apiDate(t, "2025-01-01"), End: apiDate(t, "2025-07-01"), InitialCash: 10000,
		}, withCorrelationID(cid))
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, resp.StatusCode(), "%s: %s", cid, resp.Body)
		out = append(out, &mixRun{kind: k, id: resp.JSON202.RunId.String(), correlationID: cid})
	}
	rows, err := b.db.Query(t.Context(), `SELECT id::text, river_job_id FROM backtest_runs WHERE id = ANY($1::uuid[])`, runIDs(out))
	require.NoError(t, err)
	jobs := map[string]int64{}
	for rows.Next() {
		var id string
		var job int64
		require.NoError(t, rows.Scan(&id, &job))
		jobs[id] = job
	}
	require.NoError(t, rows.Err())
	for _, r := range out {
		r.jobID = jobs[r.id]
		require.NotZero(t, r.jobID, "%s has a job", r.correlationID)
	}
	b.runs = append(b.runs, out...)
	return out
}

// runIDs are the IDs of runs, for a query's uuid[].
func runIDs(runs []*mixRun) []string {
	ids := make([]string, 0, len(runs))
	for _, r := range runs {
		ids = append(ids, r.id)
	}
	return ids
}

// states reads runs and their jobs.
func (b *mixBundle) states(t *testing.T, runs []*mixRun) map[string]mixState {
	t.Helper()
	rows, err := b.db.Query(t.Context(), `
		SELECT r.id::text, r.status, r.attempt, COALESCE(j.state::text, '')
		FROM backtest_runs r LEFT JOIN river_job j ON j.id = r.river_job_id
		WHERE r.id = ANY($1::uuid[])`, runIDs(runs))
	require.NoError(t, err)
	out := map[string]mixState{}
	for rows.Next() {
		var id string
		var s mixState
		require.NoError(t, rows.Scan(&id, &s.status, &s.attempt, &s.job))
		out[id] = s
	}
	require.NoError(t, rows.Err())
	return out
}

// await polls until every run of the actions has been ready for its action,
// doing it to each run as soon as it is: a state such as a finished run's
// may last only until the reconciliation or a worker moves it on.
func (b *mixBundle) await(t *testing.T, what string, actions ...mixAction) {
	t.Helper()
	type pending struct {
		run    *mixRun
		action mixAction
	}
	var todo []pending
	for _, a := range actions {
		for _, r := range a.runs {
			todo = append(todo, pending{r, a})
		}
	}
	deadline := time.Now().Add(mixWait)
	for {
		runs := make([]*mixRun, 0, len(todo))
		for _, p := range todo {
			runs = append(runs, p.run)
		}
		states := b.states(t, runs)
		todo = slices.DeleteFunc(todo, func(p pending) bool {
			if !p.action.ready(states[p.run.id]) {
				return false
			}
			if p.action.act != nil {
				p.action.act(p.run)
			}
			return true
		})
		if len(todo) == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%s: %d runs are not there yet, %s among them: %+v",
			what, len(todo), todo[0].run.correlationID, states[todo[0].run.id])
		time.Sleep(mixPoll)
	}
}

// cancel cancels r over the API and returns the run as the answer has it.
func (b *mixBundle) cancel(t *testing.T, r *mixRun) *apiclient.Run {
	t.Helper()
	resp, err := b.api.CancelBacktestWithResponse(t.Context(), r.id, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode(), "%s: %s", r.correlationID, resp.Body)
	return resp.JSON200
}

// cancelledAtOnce is an action that cancels a run waiting for an attempt
// (queued or retrying) over the API, which must cancel it at once.
func (b *mixBundle) cancelledAtOnce(t *testing.T) func(*mixRun) {
	t.Helper()
	return func(r *mixRun) {
		got := b.cancel(t, r)
		require.Equal(t, apiclient.RunStatusCancelled, got.Status, r.correlationID)
		require.NotNil(t, got.Error, r.correlationID)
		require.Equal(t, apiclient.ErrorCode(store.ErrorCodeCancelled), got.Error.Code, r.correlationID)
		require.Nil(t, got.CancelRequestedAt, "%s: cancelled at once", r.correlationID)
	}
}

// riverCancel, riverDelete and riverRetry are actions that do what River
// UI's buttons do to a run's job; riverCancel's answer has the job in want.
func (b *mixBundle) riverCancel(t *testing.T, want rivertype.JobState) func(*mixRun) {
	t.Helper()
	return func(r *mixRun) {
		job, err := b.river.JobCancel(t.Context(), r.jobID)
		require.NoError(t, err, r.correlationID)
		require.Equal(t, want, job.State, r.correlationID)
	}
}

func (b *mixBundle) riverDelete(t *testing.T) func(*mixRun) {
	t.Helper()
	return func(r *mixRun) {
		_, err := b.river.JobDelete(t.Context(), r.jobID)
		require.NoError(t, err, r.correlationID)
	}
}

func (b *mixBundle) riverRetry(t *testing.T) func(*mixRun) {
	t.Helper()
	return func(r *mixRun) {
		job, err := b.river.JobRetry(t.Context(), r.jobID)
		require.NoError(t, err, r.correlationID)
		require.Equal(t, rivertype.JobStateAvailable, job.State, r.correlationID)
	}
}

// atRest waits until no job of the mix is left to work, then until a
// reconciliation has begun and ended after that: the runs whose jobs
// River cancelled or deleted while they waited have no worker to end them.
func (b *mixBundle) atRest(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(mixWait)
	var empty time.Time
	for {
		var open int
		require.NoError(t, b.db.QueryRow(ctx, `
			SELECT count(*), now() FROM river_job
			WHERE kind = 'backtest' AND state IN ('pending', 'available', 'scheduled', 'retryable', 'running')`).
			Scan(&open, &empty))
		if open == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "%d jobs still to work", open)
		time.Sleep(mixPoll)
	}
	for {
		var reconciled bool
		require.NoError(t, b.db.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM river_job
			               WHERE kind = 'reconcile_runs' AND state = 'completed' AND attempted_at > $1)`, empty).
			Scan(&reconciled))
		if reconciled {
			return
		}
		require.True(t, time.Now().Before(deadline), "no reconciliation since the queue emptied")
		time.Sleep(mixPoll)
	}
}

// mixRow is a run at rest, with its job and attempts, as SQL has them.
type mixRow struct {
	status, code, job string
	attempt           int
	hasResult         bool
	attempts          []string
}

// rows reads every run of the schema at rest, by ID.
func (b *mixBundle) rows(t *testing.T) map[string]mixRow {
	t.Helper()
	rows, err := b.db.Query(t.Context(), `
		SELECT r.id::text, r.status, COALESCE(r.error_code, ''), COALESCE(j.state::text, ''), r.attempt,
		       r.result IS NOT NULL,
		       COALESCE(array_agg(a.attempt || ':' || COALESCE(a.outcome, '') || ':' || COALESCE(a.error_code, '')
		                          ORDER BY a.attempt, a.started_at) FILTER (WHERE a.run_id IS NOT NULL), '{}')
		FROM backtest_runs r
		LEFT JOIN river_job j ON j.id = r.river_job_id
		LEFT JOIN backtest_run_attempts a ON a.run_id = r.id
		GROUP BY r.id, j.state`)
	require.NoError(t, err)
	out := map[string]mixRow{}
	for rows.Next() {
		var id string
		var r mixRow
		require.NoError(t, rows.Scan(&id, &r.status, &r.code, &r.job, &r.attempt, &r.hasResult, &r.attempts))
		out[id] = r
	}
	require.NoError(t, rows.Err())
	return out
}

// mismatches says how a run at rest differs from what its kind must end
// as, and from what every run at rest must be: final, its attempt the last
// attempt row's, its result there only when that attempt succeeded.
func mismatches(r *mixRun, got mixRow) []string {
	k := r.kind
	var out []string
	add := func(format string, args ...any) {
		out = append(out, r.correlationID+": "+fmt.Sprintf(format, args...))
	}
	if got.status != k.status || got.code != k.code {
		add("status %s (%q), want %s (%q)", got.status, got.code, k.status, k.code)
	}
	if got.job != k.job {
		add("job %q, want %q", got.job, k.job)
	}
	if !slices.Equal(got.attempts, k.attempts) {
		add("attempts %v, want %v", got.attempts, k.attempts)
	}
	last, outcome := 0, ""
	if n := len(got.attempts); n > 0 {
		parts := strings.Split(got.attempts[n-1], ":")
		last, _ = strconv.Atoi(parts[0])
		outcome = parts[1]
	}
	if got.attempt != last {
		add("attempt %d, the last attempt row's is %d", got.attempt, last)
	}
	if got.hasResult != (got.status == store.StatusSucceeded) || got.hasResult && outcome != store.OutcomeSucceeded {
		add("result %v with status %s and last attempt %q", got.hasResult, got.status, outcome)
	}
	return out
}

// The proof of issue 11 at scale: a mix of runs through the real server and
// two real workers (successes, flaky and panicking attempts, crashes, too
// few bars, cancels over the API while queued, retrying and running, and
// River UI's cancel, delete and retry), checked at rest against their jobs
// in SQL: no run and job disagree, no run is left unfinished, each run's
// attempt, result and error code are those of its kind's last attempt.
func TestMix(t *testing.T) {
	t.Parallel()
	b := mixSetup(t)
	began := time.Now()
	const (
		cancelled, failed, succeeded = store.StatusCancelled, store.StatusFailed, store.StatusSucceeded
		panicked, tooFew             = "failed:" + store.ErrorCodePanic, "failed:" + store.ErrorCodeInsufficientData
	)
	var (
		// The runs that hang fill both workers' slots; they are cancelled
		// while running.
		runningAPI = &mixKind{
			name: "running-api-cancel", symbol: "HANG", n: 5,
			status: cancelled, code: "cancelled", job: "cancelled", attempts: []string{"1:cancelled:cancelled"},
		}
		runningRiver = &mixKind{
			name: "running-river-cancel", symbol: "HANG", n: 3,
			status: cancelled, code: "cancelled", job: "cancelled", attempts: []string{"1:cancelled:cancelled"},
		}

		// The runs that wait meanwhile.
		queued = &mixKind{
			name: "queued", symbol: "ACME", n: 20,
			status: succeeded, job: "completed", attempts: []string{"1:succeeded:"},
		}
		queuedAPI = &mixKind{
			name: "queued-api-cancel", symbol: "ACME", n: 20,
			status: cancelled, code: "cancelled", job: "cancelled",
		}
		queuedAPIRetried = &mixKind{
			name: "queued-api-cancel-river-retry", symbol: "ACME", n: 5,
			status: succeeded, job: "completed", attempts: []string{"1:succeeded:"}, mayRetry: true,
		}
		queuedRiver = &mixKind{
			name: "queued-river-cancel", symbol: "ACME", n: 10,
			status: cancelled, code: "cancelled", job: "cancelled", reconciled: store.ReasonJobCancelled,
		}
		queuedDeleted = &mixKind{
			name: "queued-river-delete", symbol: "ACME", n: 10,
			status: cancelled, code: "job_deleted", reconciled: store.ReasonJobDeleted,
		}

		// The rest: faults, cancels while retrying, River UI's actions on
		// finished jobs.
		plain = &mixKind{
			name: "plain", symbol: "ACME", n: 50,
			status: succeeded, job: "completed", attempts: []string{"1:succeeded:"},
		}
		flaky = &mixKind{
			name: "flaky", symbol: "FLAKY", n: 25,
			status: succeeded, job: "completed", attempts: []string{"1:failed:internal", "2:succeeded:"},
		}
		panicky = &mixKind{
			name: "panic", symbol: "PANIC", n: 20,
			status: succeeded, job: "completed", attempts: []string{"1:" + panicked, "2:succeeded:"},
		}
		crash = &mixKind{
			name: "crash", symbol: "CRASH", n: 10,
			status: failed, code: "panic", job: "discarded", attempts: []string{"1:" + panicked, "2:" + panicked},
		}
		gap = &mixKind{
			name: "gap", symbol: "GAP", gappy: true, n: 15,
			status: failed, code: "insufficient_data", job: "cancelled", attempts: []string{"1:" + tooFew},
		}
		retryingAPI = &mixKind{
			name: "retrying-api-cancel", symbol: "DEFER", n: 8,
			status: cancelled, code: "cancelled", job: "cancelled", attempts: []string{"1:failed:internal"},
		}
		retryingRiver = &mixKind{
			name: "retrying-river-cancel", symbol: "DEFER", n: 4,
			status: cancelled, code: "cancelled", job: "cancelled", attempts: []string{"1:failed:internal"},
			reconciled: store.ReasonJobCancelled,
		}
		retryingDeleted = &mixKind{
			name: "retrying-river-delete", symbol: "DEFER", n: 4,
			status: cancelled, code: "job_deleted", attempts: []string{"1:failed:internal"},
			reconciled: store.ReasonJobDeleted,
		}
		doneRetried = &mixKind{
			name: "succeeded-river-retry", symbol: "ACME", n: 10,
			status: succeeded, job: "completed", attempts: []string{"1:succeeded:", "2:succeeded:"}, mayRetry: true,
		}
		doneDeleted = &mixKind{
			name: "succeeded-river-delete", symbol: "ACME", n: 5,
			status: succeeded, attempts: []string{"1:succeeded:"},
		}
		gapRetried = &mixKind{
			name: "failed-river-retry", symbol: "GAP", gappy: true, n: 5,
			status: failed, code: "insufficient_data", job: "cancelled", attempts: []string{"1:" + tooFew, "2:" + tooFew},
			mayRetry: true,
		}
		crashRetried = &mixKind{
			name: "discarded-river-retry", symbol: "CRASH", n: 3,
			status: failed, code: "panic", job: "discarded", mayRetry: true,
			attempts: []string{"1:" + panicked, "2:" + panicked, "3:" + panicked},
		}
	)

	// Hanging runs take every slot of both workers: the runs submitted
	// next wait in the queue for as long as the test wants.
	hanging := append(b.submit(t, runningAPI), b.submit(t, runningRiver)...)
	require.Len(t, hanging, 2*mixConcurrency)
	b.await(t, "hanging runs running", mixAction{runs: hanging, ready: func(s mixState) bool {
		return s.status == store.StatusRunning && s.job == "running"
	}})

	// Cancels while queued: over the API (at once), and in River, whose
	// cancelled and deleted jobs the reconciliation finds.
	var waiting []*mixRun
	for _, k := range []*mixKind{queued, queuedAPI, queuedAPIRetried, queuedRiver, queuedDeleted} {
		waiting = append(waiting, b.submit(t, k)...)
	}
	for id, s := range b.states(t, waiting) {
		require.Equal(t, mixState{status: store.StatusQueued, job: "available"}, s, "%s waits: every slot is taken", id)
	}
	b.await(t, "queued runs acted on",
		mixAction{runs: byKind(waiting, queuedAPI), ready: anyState, act: b.cancelledAtOnce(t)},
		mixAction{runs: byKind(waiting, queuedAPIRetried), ready: anyState, act: func(r *mixRun) {
			b.cancelledAtOnce(t)(r)
			b.riverRetry(t)(r) // River UI's Retry of the cancelled job runs the run after all
		}},
		mixAction{runs: byKind(waiting, queuedRiver), ready: anyState, act: b.riverCancel(t, rivertype.JobStateCancelled)},
		mixAction{runs: byKind(waiting, queuedDeleted), ready: anyState, act: b.riverDelete(t)},
	)

	// Cancels while running: the API asks (the run says so until its
	// attempt stops), and River UI's Cancel of a running job.
	b.await(t, "running runs cancelled",
		mixAction{runs: byKind(hanging, runningAPI), ready: anyState, act: func(r *mixRun) {
			got := b.cancel(t, r)
			require.Equal(t, apiclient.RunStatusRunning, got.Status, r.correlationID)
			require.NotNil(t, got.CancelRequestedAt, r.correlationID)
		}},
		mixAction{runs: byKind(hanging, runningRiver), ready: anyState, act: b.riverCancel(t, rivertype.JobStateRunning)},
	)

	// The runs to act on while retrying go first: a DEFER run fails its
	// first attempt and River waits an hour for its second.
	var windowed []*mixRun
	for _, k := range []*mixKind{retryingAPI, retryingRiver, retryingDeleted} {
		windowed = append(windowed, b.submit(t, k)...)
	}
	retrying := func(s mixState) bool {
		return s.status == store.StatusRetrying && s.attempt == 1 && s.job == "retryable"
	}
	b.await(t, "runs acted on while retrying",
		mixAction{runs: byKind(windowed, retryingAPI), ready: retrying, act: b.cancelledAtOnce(t)},
		mixAction{runs: byKind(windowed, retryingRiver), ready: retrying, act: b.riverCancel(t, rivertype.JobStateCancelled)},
		mixAction{runs: byKind(windowed, retryingDeleted), ready: retrying, act: b.riverDelete(t)},
	)

	// The rest, all at once: the workers are free again.
	rest := windowed
	for _, k := range []*mixKind{crashRetried, doneRetried, doneDeleted, gapRetried, plain, flaky, panicky, crash, gap} {
		rest = append(rest, b.submit(t, k)...)
	}
	submitted := time.Since(began)
	b.await(t, "runs acted on once finished",
		mixAction{runs: byKind(rest, doneRetried), ready: func(s mixState) bool {
			return s.status == store.StatusSucceeded && s.job == "completed"
		}, act: b.riverRetry(t)},
		mixAction{runs: byKind(rest, doneDeleted), ready: func(s mixState) bool {
			return s.status == store.StatusSucceeded && s.job == "completed"
		}, act: b.riverDelete(t)},
		mixAction{runs: byKind(rest, gapRetried), ready: func(s mixState) bool {
			return s.status == store.StatusFailed && s.job == "cancelled"
		}, act: b.riverRetry(t)},
		mixAction{runs: byKind(rest, crashRetried), ready: func(s mixState) bool {
			return s.status == store.StatusFailed && s.job == "discarded"
		}, act: b.riverRetry(t)},
	)
	acted := time.Since(began)

	b.atRest(t)
	settled := time.Since(began)
	ctx := t.Context()

	// The documented recipe, exactly as docs/logging.md has it: no run
	// disagrees with its job.
	var disagree string
	for _, r := range docRecipes(t, "sql") {
		if r.name == "disagree" {
			disagree = r.text
		}
	}
	require.NotEmpty(t, disagree, "docs/logging.md has the disagree recipe")
	rows, err := b.db.Query(ctx, disagree)
	require.NoError(t, err)
	disagreeing, err := pgx.CollectRows(rows, pgx.RowToMap)
	require.NoError(t, err)
	var lines []string
	for _, d := range disagreeing {
		lines = append(lines, fmt.Sprintf("%v: run %v at attempt %v, job %v at attempt %v",
			d["correlation_id"], d["status"], d["attempt"], d["job_state"], d["job_attempt"]))
	}
	requireNone(t, "runs that disagree with their jobs", lines)

	// Every run, against its kind, the rules of a run at rest, and the
	// table of docs/api.md.
	table := jobStateTable(t)
	got := b.rows(t)
	require.Len(t, got, len(b.runs), "no run but the mix's")
	require.GreaterOrEqual(t, len(b.runs), 200)
	var wrong []string
	statuses, jobStates, kinds := map[string]int{}, map[string]int{}, map[string]bool{}
	for _, r := range b.runs {
		row, ok := got[r.id]
		require.True(t, ok, r.correlationID)
		wrong = append(wrong, mismatches(r, row)...)
		if !slices.Contains(table[row.status], row.job) {
			wrong = append(wrong, fmt.Sprintf("%s: run %s with job %q, not in docs/api.md's table (%v)",
				r.correlationID, row.status, row.job, table[row.status]))
		}
		statuses[row.status]++
		jobStates[cmp.Or(row.job, "(deleted)")]++
		kinds[r.kind.name] = true
	}
	requireNone(t, "runs at rest that are not as they must be", wrong)
	for _, s := range []string{store.StatusQueued, store.StatusRunning, store.StatusRetrying} {
		require.Zero(t, statuses[s], "runs left %s", s)
	}

	// The API shows every run as SQL has it.
	seen := b.requireAPIAgrees(t, got)
	require.Equal(t, len(b.runs), seen)

	// The processes stop cleanly; their lines tell the same story.
	b.st.server.stop(t)
	b.st.worker.stop(t)
	b.second.stop(t)
	b.requireLines(t)

	t.Logf("mix: %d runs of %d kinds through 2 workers; at rest: %v; jobs: %v", len(b.runs), len(kinds), statuses, jobStates)
	t.Logf("mix: submitted after %v, acted on after %v, at rest and reconciled after %v; 0 disagreements, 0 runs unfinished",
		submitted.Round(time.Millisecond), acted.Round(time.Millisecond), settled.Round(time.Millisecond))
}

func anyState(mixState) bool { return true }

// jobStateTable reads the table of docs/api.md that says which River job
// states go with each run status.
func jobStateTable(t *testing.T) map[string][]string {
	t.Helper()
	_, section, ok := strings.Cut(string(readAll(t, apiDoc)), "| run status | River job state |")
	require.True(t, ok, "docs/api.md has the table")
	section, _, _ = strings.Cut(section, "\n\n")
	code := regexp.MustCompile("`([a-z_]+)`")
	table := map[string][]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 4 || !code.MatchString(cells[1]) {
			continue
		}
		status := code.FindStringSubmatch(cells[1])[1]
		if strings.Contains(cells[2], "gone") {
			table[status] = append(table[status], "") // the job may be deleted
		}
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			if slices.Contains(rivertype.JobStates(), rivertype.JobState(m[1])) {
				table[status] = append(table[status], m[1])
			}
		}
	}
	require.Len(t, table, 6, "a row for each status: %v", table)
	return table
}

// requireNone fails t with the first of problems, one a line, if there are
// any.
func requireNone(t *testing.T, what string, problems []string) {
	t.Helper()
	if len(problems) > 0 {
		t.Fatalf("%d %s:\n%s", len(problems), what, strings.Join(problems[:min(len(problems), 40)], "\n"))
	}
}

// byKind are the runs of kind k.
func byKind(runs []*mixRun, k *mixKind) []*mixRun {
	var out []*mixRun
	for _, r := range runs {
		if r.kind == k {
			out = append(out, r)
		}
	}
	return out
}

// requireAPIAgrees lists every run through the API and checks it against
// SQL's row; it returns how many runs it saw.
func (b *mixBundle) requireAPIAgrees(t *testing.T, rows map[string]mixRow) int {
	t.Helper()
	runs := listRuns(t, b.api, apiclient.ListBacktestsParams{})
	for _, run := range runs {
		row, ok := rows[run.Id.String()]
		require.True(t, ok, "%s", run.Id)
		code := ""
		if run.Error != nil {
			code = string(run.Error.Code)
		}
		attempts := []string{}
		for _, a := range run.Attempts {
			outcome, acode := "", ""
			if a.Outcome != nil {
				outcome = string(*a.Outcome)
			}
			if a.Error != nil {
				acode = string(a.Error.Code)
			}
			attempts = append(attempts, fmt.Sprintf("%d:%s:%s", a.Attempt, outcome, acode))
		}
		require.Equal(t, mixRow{
			status: row.status, code: row.code, attempt: row.attempt, hasResult: row.hasResult, attempts: row.attempts,
		}, mixRow{
			status: string(run.Status), code: code, attempt: run.Attempt, hasResult: run.Result != nil, attempts: attempts,
		}, "%s (%s)", run.CorrelationId, run.Id)
		require.Nil(t, run.NextAttemptAt, "%s: at rest", run.CorrelationId)
		require.NotNil(t, run.FinishedAt, "%s: at rest", run.CorrelationId)
	}
	return len(runs)
}

// requireLines checks the processes' lines about the mix: every request
// answered below 500; errors only for runs that failed, each logged once
// by the attempt that failed them; no stale attempt, no failed write to a
// run; and run_reconciled exactly for the runs River acted on while no
// worker held them.
func (b *mixBundle) requireLines(t *testing.T) {
	t.Helper()
	kindOf := map[string]*mixKind{}
	for _, r := range b.runs {
		kindOf[r.id] = r.kind
	}
	for _, l := range b.st.server.lines(t) {
		if l[obs.KeyEvent] == obs.EventRequestFinished {
			require.Less(t, l[obs.KeyStatusCode], float64(http.StatusInternalServerError), "%v", l)
		}
	}
	failedLines := map[string]int{}
	reconciled := map[string][]string{}
	for _, p := range []*process{b.st.worker, b.second} {
		for _, l := range p.lines(t) {
			ev, _ := l[obs.KeyEvent].(string)
			runID, _ := l[obs.KeyRunID].(string)
			require.NotContains(t, []string{obs.EventStaleAttempt, obs.EventRunUpdateFailed, obs.EventRunFailed}, ev, "%v", l)
			if l[obs.KeyLevel] == "error" {
				require.Equal(t, obs.EventJobFailed, ev, "%v", l)
				require.NotNil(t, kindOf[runID], "%v", l)
				require.Equal(t, store.StatusFailed, kindOf[runID].status, "an error only for a run that failed: %v", l)
				failedLines[runID]++
			}
			if ev == obs.EventRunReconciled {
				action, _ := l[obs.KeyRiverAction].(string)
				reconciled[runID] = append(reconciled[runID], action)
			}
		}
	}
	for _, r := range b.runs {
		k := r.kind
		if k.status == store.StatusFailed {
			// A retried failed run failed twice: once per end.
			want := 1
			if k.mayRetry {
				want = 2
			}
			require.Equal(t, want, failedLines[r.id], "%s: job_failed at error", r.correlationID)
		}
		got := reconciled[r.id]
		switch {
		case k.reconciled != "":
			require.Equal(t, []string{k.reconciled}, got, r.correlationID)
		case k.mayRetry && len(got) > 0:
			require.Equal(t, []string{store.ReasonJobRetried}, got, r.correlationID)
		default:
			require.Empty(t, got, r.correlationID)
		}
	}
}
