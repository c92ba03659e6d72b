package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// sweepRun is a run of a test sweep: what it backtests, and whether its
// job is cancelled in River before any worker sees it.
type sweepRun struct {
	symbol    string
	days      int
	cancelled bool
}

// insertSweep inserts a sweep of the user's with its runs and their jobs,
// as POST /sweeps does: one correlation ID, the sweep's id in each job's
// arguments and on each run. It returns the sweep's id.
func (b *testBundle) insertSweep(t *testing.T, cid string, runs []sweepRun) uuid.UUID {
	t.Helper()
	ctx := t.Context()
	inserter, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)
	sma := fixture.Strategy(t, b.q, b.user.ID, backtest.KindSMACrossover, `{"fast_window":5,"slow_window":50}`)
	sweepID := uuid.Must(uuid.NewV7())
	err = pgx.BeginFunc(ctx, b.db.Pool, func(tx pgx.Tx) error {
		if err := b.insertSweepRow(ctx, tx, sweepID, cid, len(runs)); err != nil {
			return err
		}
		q := store.New(tx)
		for _, r := range runs {
			nb := fixture.Backtest(b.user.ID, sma.ID, cid, r.symbol, r.days)
			runID := uuid.Must(uuid.NewV7())
			res, err := inserter.InsertTx(ctx, tx, jobargs.Backtest{
				RunID: runID, CorrelationID: cid, UserID: b.user.ID, StrategyID: sma.ID, SweepID: sweepID,
			}, &river.InsertOpts{Priority: 2})
			if err != nil {
				return err
			}
			if _, err := q.InsertRun(ctx, store.NewRun{
				ID: runID, UserID: b.user.ID, StrategyID: sma.ID, CorrelationID: cid, JobID: res.Job.ID,
				Symbol: nb.Symbol, Start: nb.Start, End: nb.End, InitialCash: nb.InitialCash,
			}); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE backtest_runs SET sweep_id = $2 WHERE id = $1`, runID, sweepID); err != nil {
				return err
			}
			if r.cancelled {
				if _, err := inserter.JobCancelTx(ctx, tx, res.Job.ID); err != nil {
					return err
				}
			}
		}
		return nil
	})
	require.NoError(t, err)
	return sweepID
}

// gate holds the engine's first n calls until all n have arrived, then lets
// them all go at once; later calls pass.
type gate struct {
	slots   chan struct{} // taken by the first n calls
	arrived chan struct{} // one per held call
	release chan struct{}
}

func newGate(n int) *gate {
	return &gate{slots: make(chan struct{}, n), arrived: make(chan struct{}, n), release: make(chan struct{})}
}

func (g *gate) wrap(next jobs.Engine) jobs.Engine {
	return func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
		select {
		case g.slots <- struct{}{}:
			g.arrived <- struct{}{}
			select {
			case <-g.release:
			case <-ctx.Done():
				return backtest.Result{}, ctx.Err()
			}
		default: // the gate is full: a later attempt
		}
		return next(ctx, in)
	}
}

// open waits for the n calls, then lets them go together.
func (g *gate) open(t *testing.T) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for range cap(g.arrived) {
		select {
		case <-g.arrived:
		case <-deadline:
			t.Fatal("the attempts did not all reach the engine")
		}
	}
	close(g.release)
}

// TestSweepFinishedOnceWhenItsLastRunEnds works a sweep with two River
// clients, every first attempt held until all eight are running and then
// ended at once (succeeded, failed, failed and retried), and one run whose
// job was cancelled in River, which the reconciliation ends: the sweep is
// finished and sweep_finished logged exactly once, with the counts.
func TestSweepFinishedOnceWhenItsLastRunEnds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	runs := []sweepRun{
		{symbol: "ACME", days: 365},
		{symbol: "ACME", days: 365},
		{symbol: "BETA", days: 365},
		{symbol: "BETA", days: 365},
		{symbol: "GAMMA", days: 365},
		{symbol: "GAMMA", days: 365},
		{symbol: "ACME", days: 20},   // fewer bars than slow_window: failed
		{symbol: "FLAKY", days: 365}, // fails once, then succeeds
		{symbol: "ACME", cancelled: true, days: 365},
	}
	const held = 8 // the runs whose first attempt reaches the engine
	sweepID := b.insertSweep(t, "cid-sweep", runs)

	g := newGate(held)
	flaky := &flakyEngine{calls: map[string]int{}}
	kinds := []river.EventKind{river.EventKindJobCompleted, river.EventKindJobCancelled, river.EventKindJobFailed}
	cfg := jobs.ClientConfig{Concurrency: held / 2, Engine: g.wrap(flaky.run), RetryPolicy: fastRetry{}}
	cfg.ID = "worker-1"
	_, events1 := b.startClient(t, cfg, kinds...)
	cfg.ID = "worker-2"
	_, events2 := b.startClient(t, cfg, kinds...)
	g.open(t) // neither client alone can hold all eight: both work the sweep

	require.Eventually(t, func() bool {
		drain(events1, events2)
		return len(b.linesOf(t, uuid.Nil, obs.EventSweepFinished)) > 0
	}, 30*time.Second, 20*time.Millisecond, "sweep_finished is logged")

	var unfinished int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `
		SELECT count(*) FROM backtest_runs WHERE sweep_id = $1 AND status IN ('queued', 'running', 'retrying')`,
		sweepID).Scan(&unfinished))
	require.Zero(t, unfinished, "the sweep finished with its last run")
	var marked bool
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT finished_at IS NOT NULL FROM sweeps WHERE id = $1`, sweepID).Scan(&marked))
	require.True(t, marked)

	// Every run's last attempt logged, the line is still the only one.
	waitLastAttemptsLogged(t, b.logs, held)
	finished := b.linesOf(t, uuid.Nil, obs.EventSweepFinished)
	require.Len(t, finished, 1)
	// The run the reconciliation ended is found by the sweep too.
	var reconciled []any
	for _, l := range b.logs.Lines(t) {
		if l[obs.KeyEvent] == obs.EventRunReconciled {
			reconciled = append(reconciled, l[obs.KeySweepID])
		}
	}
	require.NotEmpty(t, reconciled, "the run cancelled in River")
	for _, got := range reconciled {
		require.Equal(t, sweepID.String(), got)
	}
	line := finished[0]
	require.GreaterOrEqual(t, line[obs.KeyDurationMS], float64(90_000), "from the sweep's created_at")
	delete(line, obs.KeyTimestamp)
	delete(line, obs.KeyDurationMS)
	require.Equal(t, map[string]any{
		"level": "info", "event": "sweep_finished", "service": "worker",
		"correlation_id": "cid-sweep", "user_id": b.user.ID.String(), "sweep_id": sweepID.String(),
		"succeeded_count": float64(7), "failed_count": float64(1), "cancelled_count": float64(1),
	}, line)
}

// drain empties the clients' event channels, which nobody else reads.
func drain(chans ...<-chan *river.Event) {
	for _, ch := range chans {
		for {
			select {
			case <-ch:
				continue
			default:
			}
			break
		}
	}
}

// TestEndOfASweepsLastRunFinishesIt works the one run of a sweep once,
// through rivertest (no reconciliation runs): every way an attempt can end
// its run finishes the sweep, with the counts, and an attempt that leaves
// the run to retry does not.
func TestEndOfASweepsLastRunFinishesIt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		days        int
		engine      jobs.Engine
		maxAttempts int
		want        []int // succeeded, failed, cancelled; nil: not finished
	}{
		{name: "succeeded", days: 365, want: []int{1, 0, 0}},
		{name: "failed for good", days: 20, want: []int{0, 1, 0}},
		{name: "panic on the last attempt", days: 365, engine: panickingEngine, maxAttempts: 1, want: []int{0, 1, 0}},
		{name: "panic with attempts left", days: 365, engine: panickingEngine, maxAttempts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			sweepID := uuid.Must(uuid.NewV7())
			nb := fixture.Backtest(b.user.ID, uuid.Nil, "cid-one", "ACME", tt.days)
			_, _, _, _ = b.workOnceWith(t, backtest.KindSMACrossover, `{"fast_window":5,"slow_window":50}`, nb, sweepID,
				func(*store.Queries, store.Run) jobs.WorkerConfig { return jobs.WorkerConfig{Engine: tt.engine} }, tt.maxAttempts)

			finished := b.linesOf(t, uuid.Nil, obs.EventSweepFinished)
			if tt.want == nil {
				require.Empty(t, finished, "the run is retrying: the sweep goes on")
				return
			}
			require.Len(t, finished, 1)
			got := []int{
				int(finished[0][obs.KeySucceededCount].(float64)), int(finished[0][obs.KeyFailedCount].(float64)),
				int(finished[0][obs.KeyCancelledCount].(float64)),
			}
			require.Equal(t, tt.want, got)
			require.Equal(t, sweepID.String(), finished[0][obs.KeySweepID])
			require.Equal(t, "cid-one", finished[0][obs.KeyCorrelationID])
		})
	}
}

// TestOnlyAFinalAttemptChecksItsSweep works the one run of a sweep with a
// trigger that counts the statements updating sweeps, as the check for a
// sweep's end does (even when it marks none): an attempt that leaves the
// run final checks once, one that leaves it to retry does not check.
func TestOnlyAFinalAttemptChecksItsSweep(t *testing.T) {
	t.Parallel()
	failing := func(context.Context, backtest.Input) (backtest.Result, error) {
		return backtest.Result{}, errors.New("market data unavailable")
	}
	tests := []struct {
		name        string
		days        int
		engine      jobs.Engine
		maxAttempts int
		wantChecks  int
	}{
		{name: "succeeded", days: 365, wantChecks: 1},
		{name: "failed for good", days: 20, wantChecks: 1},
		{name: "failed with attempts left", days: 365, engine: failing, maxAttempts: 3},
		{name: "panic on the last attempt", days: 365, engine: panickingEngine, maxAttempts: 1, wantChecks: 1},
		{name: "panic with attempts left", days: 365, engine: panickingEngine, maxAttempts: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			// A sequence counts the checks: nextval is not rolled back with
			// the attempt's transaction, so the count is read outside it.
			_, err := b.db.Pool.Exec(t.Context(), `
				CREATE SEQUENCE sweep_checks;
				CREATE FUNCTION count_sweep_check() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN PERFORM nextval('sweep_checks'); RETURN NULL; END $$;
				CREATE TRIGGER count_sweep_check AFTER UPDATE ON sweeps
				    FOR EACH STATEMENT EXECUTE FUNCTION count_sweep_check();`)
			require.NoError(t, err)
			nb := fixture.Backtest(b.user.ID, uuid.Nil, "cid-one", "ACME", tt.days)
			_, _, _, _ = b.workOnceWith(t, backtest.KindSMACrossover, `{"fast_window":5,"slow_window":50}`, nb,
				uuid.Must(uuid.NewV7()),
				func(*store.Queries, store.Run) jobs.WorkerConfig { return jobs.WorkerConfig{Engine: tt.engine} }, tt.maxAttempts)
			var checks int
			require.NoError(t, b.db.Pool.QueryRow(t.Context(),
				`SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM sweep_checks`).Scan(&checks))

			var ended int
			for _, l := range b.logs.Lines(t) {
				if l[obs.KeyEvent] == obs.EventJobCompleted || l[obs.KeyEvent] == obs.EventJobFailed {
					ended++
				}
			}
			require.Equal(t, 1, ended, "the attempt ended")
			require.Equal(t, tt.wantChecks, checks)
		})
	}
}

// panickingEngine is an engine that panics.
func panickingEngine(context.Context, backtest.Input) (backtest.Result, error) {
	panic("engine exploded")
}
