package jobs_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

type testBundle struct {
	db      *dbtest.DB
	q       *store.Queries
	user    store.User
	logs    *logtest.Sink
	handler *obs.Handler
	logger  *slog.Logger
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := dbtest.New(t)
	q := store.New(db.Pool)
	user, err := q.EnsureUser(t.Context(), "alice")
	require.NoError(t, err)
	logs := &logtest.Sink{}
	h := obs.NewHandler(logs, obs.Options{Service: "worker", Level: slog.LevelDebug})
	return &testBundle{db: db, q: q, user: user, logs: logs, handler: h, logger: slog.New(h)}
}

// startClient starts a real River worker client on the test's database,
// subscribed to kinds, and stops it when the test ends.
func (b *testBundle) startClient(t *testing.T, cfg jobs.ClientConfig, kinds ...river.EventKind) (*river.Client[pgx.Tx], <-chan *river.Event) {
	t.Helper()
	client, err := jobs.NewWorkerClient(b.db.Pool, b.handler, b.logger, cfg)
	require.NoError(t, err)
	events, cancelSub := client.Subscribe(kinds...)
	t.Cleanup(cancelSub)
	require.NoError(t, client.Start(t.Context()))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		require.NoError(t, client.Stop(stopCtx))
	})
	return client, events
}

// workOnce runs one attempt of a backtest job through rivertest, in a
// transaction rolled back when t ends; q reads what the attempt wrote.
func (b *testBundle) workOnce(t *testing.T, kind, params string, nb enqueue.NewBacktest, engine jobs.Engine, maxAttempts int,
) (*store.Queries, store.Run, *rivertest.WorkResult, error) {
	t.Helper()
	return b.workOnceWith(t, kind, params, nb, uuid.Nil, func(*store.Queries, store.Run) jobs.WorkerConfig {
		return jobs.WorkerConfig{Engine: engine}
	}, maxAttempts)
}

// workOnceWith is workOnce with the worker configured by configure, which
// is given the attempt's queries and run before the attempt starts. With a
// sweepID, the run is the one run of that sweep, inserted with it
// (insertSweepRow).
func (b *testBundle) workOnceWith(t *testing.T, kind, params string, nb enqueue.NewBacktest, sweepID uuid.UUID,
	configure func(*store.Queries, store.Run) jobs.WorkerConfig, maxAttempts int,
) (*store.Queries, store.Run, *rivertest.WorkResult, error) {
	t.Helper()
	ctx := t.Context()
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	q := store.New(tx)
	strategy := fixture.Strategy(t, q, b.user.ID, kind, params)
	run, err := q.InsertRun(ctx, store.NewRun{
		ID: uuid.Must(uuid.NewV7()), UserID: b.user.ID, StrategyID: strategy.ID,
		CorrelationID: nb.CorrelationID, Symbol: nb.Symbol, Start: nb.Start, End: nb.End, InitialCash: nb.InitialCash,
	})
	require.NoError(t, err)
	if sweepID != uuid.Nil {
		require.NoError(t, b.insertSweepRow(ctx, tx, sweepID, nb.CorrelationID, 1))
		_, err = tx.Exec(ctx, `UPDATE backtest_runs SET sweep_id = $2 WHERE id = $1`, run.ID, sweepID)
		require.NoError(t, err)
	}
	w := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{
		Middleware: []rivertype.Middleware{jobs.NewLifecycle(b.logger, tx)},
	}, jobs.NewWorker(tx, b.logger, configure(q, run)))
	args := jobargs.Backtest{
		RunID: run.ID, CorrelationID: nb.CorrelationID, UserID: b.user.ID, StrategyID: strategy.ID, Traceparent: nb.Traceparent,
		SweepID: sweepID,
	}
	res, err := w.Work(ctx, t, tx, args, &river.InsertOpts{MaxAttempts: maxAttempts})
	return q, run, res, err
}

// insertSweepRow inserts the user's sweep id, of runCount runs, through db:
// an sma_crossover grid over ACME with fixture.Backtest's range and cash,
// created 90 seconds ago so that sweep_finished's duration_ms shows it
// counts from created_at. Its runs are the caller's to insert.
func (b *testBundle) insertSweepRow(ctx context.Context, db store.DBTX, id uuid.UUID, cid string, runCount int) error {
	_, err := db.Exec(ctx, `
		INSERT INTO sweeps (id, user_id, correlation_id, kind, params_grid, symbols, start_date, end_date,
		                    initial_cash, run_count, created_at)
		VALUES ($1, $2, $3, 'sma_crossover', '{"fast_window":[5],"slow_window":[50]}', '{ACME}',
		        '2024-01-01', '2025-01-01', 10000, $4, now() - interval '90 seconds')`,
		id, b.user.ID, cid, runCount)
	return err
}

// requireJobLines checks that every line of the run carries the job's fields.
func requireJobLines(t *testing.T, lines []map[string]any, runID uuid.UUID, cid string) map[string][]map[string]any {
	t.Helper()
	byEvent := map[string][]map[string]any{}
	for _, l := range lines {
		if l[obs.KeyRunID] != runID.String() {
			continue
		}
		for _, k := range []string{obs.KeyUserID, obs.KeyStrategyID, obs.KeyJobID, obs.KeyJobKind, obs.KeyAttempt} {
			require.NotEmpty(t, l[k], "%s missing from %v", k, l)
		}
		require.Equal(t, cid, l[obs.KeyCorrelationID])
		ev, _ := l[obs.KeyEvent].(string)
		byEvent[ev] = append(byEvent[ev], l)
	}
	return byEvent
}

func TestWorkerWithRivertest(t *testing.T) {
	t.Parallel()
	panicking := func(context.Context, backtest.Input) (backtest.Result, error) {
		var bars []float64
		return backtest.Result{Bars: int(bars[len(bars)-1])}, nil // index out of range
	}
	tests := []struct {
		name        string
		kind        string
		params      string
		days        int
		engine      jobs.Engine
		maxAttempts int
		wantEvent   river.EventKind
		wantStatus  string
		wantPanic   bool
		wantRetry   bool
	}{
		{
			name: "success", kind: backtest.KindSMACrossover, params: `{"fast_window":5,"slow_window":20}`, days: 365,
			wantEvent: river.EventKindJobCompleted, wantStatus: store.StatusSucceeded,
		},
		{
			name: "too few bars is permanent", kind: backtest.KindSMACrossover, params: `{"fast_window":5,"slow_window":200}`,
			days: 30, wantEvent: river.EventKindJobCancelled, wantStatus: store.StatusFailed,
		},
		{
			name: "panic with attempts left retries", kind: backtest.KindBuyAndHold, params: `{}`, days: 30,
			engine: panicking, wantStatus: store.StatusRetrying, wantPanic: true, wantRetry: true,
		},
		{
			name: "panic on the last attempt fails the run", kind: backtest.KindBuyAndHold, params: `{}`, days: 30,
			engine: panicking, maxAttempts: 1, wantStatus: store.StatusFailed, wantPanic: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			nb := fixture.Backtest(b.user.ID, uuid.Nil, "cid-"+strings.ReplaceAll(tt.name, " ", "-"), "ACME", tt.days)
			q, run, res, err := b.workOnce(t, tt.kind, tt.params, nb, tt.engine, tt.maxAttempts)
			if tt.wantPanic {
				var pe *rivertest.PanicError
				require.ErrorAs(t, err, &pe)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.wantEvent, res.EventKind)
			}

			got, err := q.Run(ctx, b.user.ID, run.ID)
			require.NoError(t, err)
			require.Equal(t, tt.wantStatus, got.Status)
			byEvent := requireJobLines(t, b.logs.Lines(t), run.ID, nb.CorrelationID)
			require.Len(t, byEvent[obs.EventJobStarted], 1)
			if tt.wantStatus == store.StatusSucceeded {
				require.Len(t, byEvent[obs.EventJobProgress], backtest.Checkpoints)
				require.Len(t, byEvent[obs.EventJobCompleted], 1)
				require.Contains(t, byEvent[obs.EventJobCompleted][0], obs.KeySharpe)
				require.NotEmpty(t, got.Result)
				return
			}
			require.Len(t, byEvent[obs.EventJobFailed], 1)
			failed := byEvent[obs.EventJobFailed][0]
			requireFailedLine(t, failed, tt.wantPanic, tt.wantRetry)
			if tt.wantStatus == store.StatusFailed {
				require.NotEmpty(t, got.ErrorMessage)
				require.NotEmpty(t, got.ErrorType)
				require.Equal(t, "error", failed[obs.KeyLevel])
			}
		})
	}
}

// requireFailedLine checks a job_failed line: its retry, error type, and a
// traceback whose first frame is where the attempt failed (the panicking
// engine of TestWorkerWithRivertest, or the line of Work that returned).
func requireFailedLine(t *testing.T, failed map[string]any, wantPanic, wantRetry bool) {
	t.Helper()
	require.Equal(t, wantRetry, failed[obs.KeyWillRetry])
	require.NotEmpty(t, failed[obs.KeyTraceback])
	require.NotEmpty(t, failed[obs.KeyErrorType])
	frames, _ := failed[obs.KeyTraceback].([]any)
	first, _ := frames[0].(map[string]any)
	if wantPanic {
		require.Equal(t, true, failed[obs.KeyPanic])
		require.Equal(t, "runtime.boundsError", failed[obs.KeyErrorType])
		require.Contains(t, first["function"], "TestWorkerWithRivertest", "the first frame is where it panicked")
		return
	}
	require.Contains(t, first["function"], "jobs.(*Worker).Work", "the first frame is where Work failed")
}

// flakyEngine fails or panics on the first attempt of some symbols.
type flakyEngine struct {
	mu    sync.Mutex
	calls map[string]int
}

func (f *flakyEngine) run(ctx context.Context, in backtest.Input) (backtest.Result, error) {
	f.mu.Lock()
	sym := in.Symbol
	f.calls[sym]++
	n := f.calls[sym]
	f.mu.Unlock()
	switch {
	case sym == "FLAKY" && n == 1:
		return backtest.Result{}, errors.New("market data service unavailable")
	case sym == "BOOM" && n == 1:
		panic("engine exploded")
	}
	return backtest.Run(ctx, in)
}

type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(50 * time.Millisecond) }

// TestProgressIsSavedAtMostEverySecond runs an engine whose first five
// checkpoints come at once and the sixth after a pause longer than the
// default ProgressEvery (on the worker's clock, which the engine moves):
// every checkpoint is logged, but only the sixth is written to the run,
// which the engine itself reads back as it goes.
func TestProgressIsSavedAtMostEverySecond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const every = time.Second // the default
	var (
		q     *store.Queries // the attempt's, set before the engine runs
		runID uuid.UUID
	)
	var seen []int
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	engine := func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
		for pct := 10; pct <= 100; pct += 10 {
			if pct == 60 {
				clock = clock.Add(every + 100*time.Millisecond)
			}
			in.Progress(pct)
			run, err := q.Run(ctx, b.user.ID, runID)
			if err != nil {
				return backtest.Result{}, err
			}
			seen = append(seen, run.ProgressPct)
		}
		return backtest.Result{Bars: 1}, nil
	}
	nb := fixture.Backtest(b.user.ID, uuid.Nil, "cid-progress", "ACME", 30)
	q, run, res, err := b.workOnceWith(t, backtest.KindBuyAndHold, `{}`, nb, uuid.Nil,
		func(attemptQ *store.Queries, r store.Run) jobs.WorkerConfig {
			q, runID = attemptQ, r.ID
			return jobs.WorkerConfig{Engine: engine, Now: func() time.Time { return clock }}
		}, 0)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)

	require.Equal(t, []int{0, 0, 0, 0, 0, 60, 60, 60, 60, 60}, seen)
	byEvent := requireJobLines(t, b.logs.Lines(t), run.ID, nb.CorrelationID)
	require.Len(t, byEvent[obs.EventJobProgress], 10, "every checkpoint is logged")
	got, err := q.Run(t.Context(), b.user.ID, run.ID)
	require.NoError(t, err)
	require.Equal(t, 100, got.ProgressPct, "a succeeded run is at 100")
}

func TestWorkerWithRealClient(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	engine := &flakyEngine{calls: map[string]int{}}
	client, events := b.startClient(t, jobs.ClientConfig{Concurrency: 2, Engine: engine.run, RetryPolicy: fastRetry{}},
		river.EventKindJobCompleted, river.EventKindJobCancelled, river.EventKindJobFailed)

	sma := fixture.Strategy(t, b.q, b.user.ID, backtest.KindSMACrossover, `{"fast_window":5,"slow_window":50}`)
	enq := enqueue.NewEnqueuer(b.db.Pool, client, 0)
	cases := []struct {
		symbol      string
		days        int
		wantStatus  string
		wantAttempt int
	}{
		{symbol: "ACME", days: 365, wantStatus: store.StatusSucceeded, wantAttempt: 1},
		{symbol: "ACME", days: 20, wantStatus: store.StatusFailed, wantAttempt: 1}, // fewer bars than slow_window
		{symbol: "FLAKY", days: 365, wantStatus: store.StatusSucceeded, wantAttempt: 2},
		{symbol: "BOOM", days: 365, wantStatus: store.StatusSucceeded, wantAttempt: 2},
	}
	runs := make([]store.Run, len(cases))
	for i, c := range cases {
		var err error
		runs[i], err = enq.Enqueue(ctx, fixture.Backtest(b.user.ID, sma.ID, "cid-"+c.symbol+"-"+strconv.Itoa(i), c.symbol, c.days))
		require.NoError(t, err)
	}

	waitFinal(t, events, len(cases))
	lines := waitLastAttemptsLogged(t, b.logs, len(cases))
	for i, c := range cases {
		got, err := b.q.Run(ctx, b.user.ID, runs[i].ID)
		require.NoError(t, err)
		require.Equal(t, c.wantStatus, got.Status, c.symbol)
		require.Equal(t, c.wantAttempt, got.Attempt, c.symbol)
		byEvent := requireJobLines(t, lines, runs[i].ID, runs[i].CorrelationID)
		require.Len(t, byEvent[obs.EventJobStarted], c.wantAttempt, c.symbol)
		if c.wantStatus == store.StatusSucceeded {
			require.Len(t, byEvent[obs.EventJobCompleted], 1)
			require.InDelta(t, c.wantAttempt, byEvent[obs.EventJobCompleted][0][obs.KeyAttempt], 0)
			require.NotEmpty(t, byEvent[obs.EventJobProgress])
		}
		if c.wantAttempt > 1 {
			first := byEvent[obs.EventJobFailed][0]
			require.Equal(t, true, first[obs.KeyWillRetry])
			require.InDelta(t, 1, first[obs.KeyAttempt], 0)
			require.Equal(t, c.symbol == "BOOM", first[obs.KeyPanic] == true)
		}
		if c.wantStatus == store.StatusFailed {
			require.Contains(t, got.ErrorMessage, "needs at least 50 bars")
			require.NotContains(t, got.ErrorMessage, "JobCancelError", "River's wrapper is not the user's business")
			require.Equal(t, "*backtest.InsufficientDataError", got.ErrorType)
			require.Len(t, byEvent[obs.EventJobFailed], 1)
			require.Equal(t, false, byEvent[obs.EventJobFailed][0][obs.KeyWillRetry])
		}
	}
}

// waitFinal waits for n jobs to reach a final state.
func waitFinal(t *testing.T, events <-chan *river.Event, n int) {
	t.Helper()
	final := map[int64]bool{}
	deadline := time.After(30 * time.Second)
	for len(final) < n {
		select {
		case ev := <-events:
			// The periodic reconcile_runs job ends too: counting it would let
			// the test go on while a retry was still to come.
			if ev.Job.Kind != jobargs.KindBacktest {
				continue
			}
			if ev.Job.State == rivertype.JobStateCompleted || ev.Job.State == rivertype.JobStateCancelled ||
				ev.Job.State == rivertype.JobStateDiscarded {
				final[ev.Job.ID] = true
			}
		case <-deadline:
			t.Fatalf("jobs did not finish: %d of %d", len(final), n)
		}
	}
}

// waitLastAttemptsLogged waits for the lines of n jobs' last attempts and
// returns every line: River reports a job final when its state is saved,
// and the worker or the lifecycle middleware logs the attempt's end just
// after.
func waitLastAttemptsLogged(t *testing.T, logs *logtest.Sink, n int) []map[string]any {
	t.Helper()
	var lines []map[string]any
	require.Eventually(t, func() bool {
		lines = logs.Lines(t)
		ended := 0
		for _, l := range lines {
			if l[obs.KeyJobKind] != jobargs.KindBacktest {
				continue
			}
			if l[obs.KeyEvent] == obs.EventJobCompleted || (l[obs.KeyEvent] == obs.EventJobFailed && l[obs.KeyWillRetry] == false) {
				ended++
			}
		}
		return ended >= n
	}, 10*time.Second, 10*time.Millisecond, "every job's last attempt is logged")
	return lines
}

func TestShutdownPutsTheJobBackInTheQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	started := make(chan struct{})
	var once sync.Once
	blocking := func(ctx context.Context, _ backtest.Input) (backtest.Result, error) {
		once.Do(func() { close(started) })
		<-ctx.Done()
		return backtest.Result{}, ctx.Err()
	}
	client, err := jobs.NewWorkerClient(b.db.Pool, b.handler, b.logger, jobs.ClientConfig{Engine: blocking})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
	run, err := enqueue.NewEnqueuer(b.db.Pool, client, 0).Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid-stop", "ACME", 30))
	require.NoError(t, err)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the job did not start")
	}

	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, client.StopAndCancel(stopCtx))

	got, err := b.q.Run(ctx, b.user.ID, run.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusQueued, got.Status, "an interrupted run is not failed")
	var state string
	var attempt int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT state, attempt FROM river_job WHERE id = $1`, run.JobID).Scan(&state, &attempt))
	require.Equal(t, "available", state)
	require.Zero(t, attempt, "the interrupted attempt is not counted")
	byEvent := requireJobLines(t, b.logs.Lines(t), run.ID, "cid-stop")
	require.Len(t, byEvent[obs.EventJobInterrupted], 1)
	require.Empty(t, byEvent[obs.EventJobFailed])
}

func deepPanic(n int) int {
	if n == 0 {
		panic(strings.Repeat("deep trouble ", 100_000)) // 1.3 MB of panic value too
	}
	return deepPanic(n-1) + 1
}

// Huge failures still make one line of at most 16 KiB, cut visibly.
func TestHugeFailuresStayOneLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		engine jobs.Engine
		panics bool
	}{
		{name: "1 MB error text", engine: func(context.Context, backtest.Input) (backtest.Result, error) {
			return backtest.Result{}, errors.New(strings.Repeat("x", 1<<20))
		}},
		{name: "panic 5000 frames deep", panics: true, engine: func(context.Context, backtest.Input) (backtest.Result, error) {
			return backtest.Result{Bars: deepPanic(5000)}, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			nb := fixture.Backtest(b.user.ID, uuid.Nil, "cid-huge", "ACME", 30)
			q, run, _, _ := b.workOnce(t, backtest.KindBuyAndHold, `{}`, nb, tt.engine, 1)

			var failed string
			for _, line := range strings.Split(strings.TrimSpace(b.logs.String()), "\n") {
				require.LessOrEqual(t, len(line)+1, obs.MaxLineBytes)
				if strings.Contains(line, `"event":"job_failed"`) {
					failed = line
				}
			}
			require.NotEmpty(t, failed)
			require.Contains(t, failed, "...[truncated ", "the cut is marked")
			require.Contains(t, failed, `"correlation_id":"cid-huge"`)
			if tt.panics {
				require.Contains(t, failed, "frames skipped")
			}
			got, err := q.Run(ctx, b.user.ID, run.ID)
			require.NoError(t, err)
			require.Equal(t, store.StatusFailed, got.Status)
			require.LessOrEqual(t, len(got.ErrorMessage), store.MaxErrorBytes, "the run keeps a bounded error")
			require.True(t, strings.HasSuffix(got.ErrorMessage, "...[truncated]"))
		})
	}
}

// The periodic reconciliation reports its own completion, as the backtest
// worker does: its job_started and job_completed lines are at debug, carry
// the job's fields, and share the correlation ID the lifecycle made for it.
func TestReconcileLogsItsLifecycleAtDebug(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	w := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{
		Middleware: []rivertype.Middleware{jobs.NewLifecycle(b.logger, tx)},
	}, jobs.NewReconcileWorker(tx, b.logger))
	res, err := w.Work(ctx, t, tx, jobs.ReconcileArgs{}, nil)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)

	byEvent := map[string]map[string]any{}
	for _, l := range b.logs.Lines(t) {
		ev, _ := l[obs.KeyEvent].(string)
		byEvent[ev] = l
	}
	started, completed := byEvent[obs.EventJobStarted], byEvent[obs.EventJobCompleted]
	require.NotNil(t, started)
	require.NotNil(t, completed)
	for _, l := range []map[string]any{started, completed} {
		require.Equal(t, "debug", l[obs.KeyLevel])
		require.Equal(t, jobs.ReconcileArgs{}.Kind(), l[obs.KeyJobKind])
		require.NotEmpty(t, l[obs.KeyCorrelationID])
		require.InDelta(t, res.Job.ID, l[obs.KeyJobID], 0)
	}
	require.Equal(t, started[obs.KeyCorrelationID], completed[obs.KeyCorrelationID])
	require.Contains(t, completed, obs.KeyDurationMS)
}

// River's own lines about a job are correlated: those about a failure the
// lifecycle logged (its panic recovery at error, "Job panicked", "Job
// errored") are not written, as job_failed says it all with the job's
// fields; River still saves each attempt's error, with the panic's stack,
// on the job row.
func TestRiverLinesAboutAJobAreCorrelated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	engine := func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
		switch in.Symbol {
		case "DOOMED":
			panic("engine exploded")
		case "BROKEN":
			return backtest.Result{}, errors.New("market data service unavailable")
		}
		return backtest.Run(ctx, in)
	}
	client, events := b.startClient(t, jobs.ClientConfig{
		Concurrency: 2, Engine: engine, RetryPolicy: fastRetry{}, RiverLogLevel: slog.LevelDebug,
	}, river.EventKindJobCompleted, river.EventKindJobFailed)

	sma := fixture.Strategy(t, b.q, b.user.ID, backtest.KindSMACrossover, `{"fast_window":5,"slow_window":50}`)
	enq := enqueue.NewEnqueuer(b.db.Pool, client, 2)
	tests := []struct {
		symbol    string
		wantPanic bool
	}{
		{symbol: "DOOMED", wantPanic: true},
		{symbol: "BROKEN"},
		{symbol: "ACME"},
	}
	runs := map[string]store.Run{}
	for _, tt := range tests {
		run, err := enq.Enqueue(ctx, fixture.Backtest(b.user.ID, sma.ID, "cid-river-"+tt.symbol, tt.symbol, 365))
		require.NoError(t, err)
		runs[tt.symbol] = run
	}
	// River reports a job final once its state is saved, after every line
	// about it: the lifecycle's, then River's.
	final := map[int64]bool{}
	deadline := time.After(30 * time.Second)
	for len(final) < len(tests) {
		select {
		case ev := <-events:
			if ev.Job.Kind == jobargs.KindBacktest && ev.Job.FinalizedAt != nil {
				final[ev.Job.ID] = true
			}
		case <-deadline:
			t.Fatalf("jobs did not finish: %d of %d", len(final), len(tests))
		}
	}
	lines := b.logs.Lines(t)

	cidOfJob := map[float64]string{}
	for _, l := range lines {
		if id, ok := l[obs.KeyJobID].(float64); ok && l[obs.KeyJobKind] == jobargs.KindBacktest {
			require.NotEmpty(t, l[obs.KeyCorrelationID], "a line about job %v without its correlation_id: %v", id, l)
			require.NotEmpty(t, l[obs.KeyRunID], "%v", l)
			if cidOfJob[id] == "" {
				cidOfJob[id], _ = l[obs.KeyCorrelationID].(string)
			}
			require.Equal(t, cidOfJob[id], l[obs.KeyCorrelationID], "one job, one correlation_id")
		}
		if l[obs.KeyEvent] == obs.EventRiverLog {
			msg, _ := l[obs.KeyMessage].(string)
			for _, dropped := range []string{"panic recovery", "Job panicked", "Job errored"} {
				require.NotContains(t, msg, dropped, "job_failed said it already: %v", l)
			}
		}
	}
	for _, tt := range tests {
		run := runs[tt.symbol]
		byEvent := requireJobLines(t, lines, run.ID, run.CorrelationID)
		var jobErrors []rivertype.AttemptError
		require.NoError(t, b.db.Pool.QueryRow(ctx,
			`SELECT coalesce(to_json(errors), '[]') FROM river_job WHERE id = $1`, run.JobID).Scan(&jobErrors))
		if tt.symbol == "ACME" {
			require.Empty(t, byEvent[obs.EventJobFailed])
			require.Empty(t, jobErrors)
			continue
		}
		require.Len(t, byEvent[obs.EventJobFailed], 2, tt.symbol)
		require.Len(t, jobErrors, 2, "River saved both attempts' errors")
		for i, f := range byEvent[obs.EventJobFailed] {
			require.Equal(t, tt.wantPanic, f[obs.KeyPanic] == true)
			require.NotEmpty(t, f[obs.KeyTraceback])
			require.Equal(t, tt.wantPanic, jobErrors[i].Trace != "", "River keeps the panic's stack: %+v", jobErrors[i])
		}
	}
}
