package enqueue_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/store"
)

func grid(t *testing.T, s string) enqueue.Grid {
	t.Helper()
	var g enqueue.Grid
	require.NoError(t, json.Unmarshal([]byte(s), &g))
	return g
}

func TestExpand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		kind    string
		grid    string
		bars    int
		want    []string // each combination's stored params, in order
		skipped int
	}{
		{
			name: "cross product, fast >= slow skipped", kind: backtest.KindSMACrossover,
			grid: `{"slow_window": [50, 100], "fast_window": [5, 10, 60]}`, bars: 1000,
			want: []string{
				`{"fast_window":5,"slow_window":50}`, `{"fast_window":5,"slow_window":100}`,
				`{"fast_window":10,"slow_window":50}`, `{"fast_window":10,"slow_window":100}`,
				`{"fast_window":60,"slow_window":100}`,
			},
			skipped: 1,
		},
		{
			name: "parameters left out take the kind's defaults", kind: backtest.KindRSIReversion,
			grid: `{"period": [10, 20]}`, bars: 1000,
			want: []string{
				`{"period":10,"oversold":30,"overbought":70}`, `{"period":20,"oversold":30,"overbought":70}`,
			},
		},
		{
			name: "an empty grid is one combination", kind: backtest.KindBuyAndHold, grid: `{}`, bars: 1000,
			want: []string{`{}`},
		},
		{
			name: "a combination needing more bars than the range has is skipped", kind: backtest.KindSMACrossover,
			grid: `{"fast_window": [5], "slow_window": [50, 500]}`, bars: 200,
			want: []string{`{"fast_window":5,"slow_window":50}`}, skipped: 1,
		},
		{
			name: "a parameter the kind does not have refuses everything", kind: backtest.KindSMACrossover,
			grid: `{"fast_window": [5], "slow_window": [50], "nope": [1, 2]}`, bars: 1000, skipped: 2,
		},
		{
			name: "a required parameter left out refuses everything", kind: backtest.KindSMACrossover,
			grid: `{"fast_window": [5, 6]}`, bars: 1000, skipped: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := enqueue.Expand(tt.kind, grid(t, tt.grid), tt.bars)
			require.NoError(t, err)
			got := make([]string, len(res.Combinations))
			for i, c := range res.Combinations {
				got[i] = string(c.Params)
			}
			if tt.want == nil {
				tt.want = []string{}
			}
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.skipped, res.Skipped)
			require.Equal(t, tt.skipped > 0, res.FirstRefusal != nil)
		})
	}
}

func TestCandidates(t *testing.T) {
	t.Parallel()
	require.Equal(t, 1, enqueue.Candidates(enqueue.Grid{}, 10))
	g := grid(t, `{"a": [1, 2, 3], "b": [1, 2, 3, 4]}`)
	require.Equal(t, 12, enqueue.Candidates(g, 12))
	require.Equal(t, 11, enqueue.Candidates(g, 10), "capped one past the bound")
}

func newSweep(t *testing.T, userID uuid.UUID, g string, symbols ...string) enqueue.NewSweep {
	t.Helper()
	exp, err := enqueue.Expand(backtest.KindSMACrossover, grid(t, g), 1000)
	require.NoError(t, err)
	start := time.Date(2018, 1, 1, 0, 0, 0, 0, time.UTC)
	return enqueue.NewSweep{
		UserID: userID, CorrelationID: "sweep-cid", Kind: backtest.KindSMACrossover, ParamsGrid: json.RawMessage(g),
		Combinations: exp.Combinations, Skipped: exp.Skipped, Symbols: symbols,
		Start: start, End: start.AddDate(4, 0, 0), InitialCash: 10_000,
	}
}

const grid3 = `{"fast_window": [5, 10, 60], "slow_window": [50]}`

// The sweep, a strategy per combination, a run per combination and symbol
// and a job per run, each run pointing at its job, every job at the sweep's
// lower priority.
func TestEnqueueSweepWritesEverything(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)
	sweep, err := enqueue.NewEnqueuer(b.db.Pool, client, 0).EnqueueSweep(ctx, newSweep(t, b.user.ID, grid3, "ACME", "BETA"))
	require.NoError(t, err)
	require.Equal(t, 4, sweep.RunCount, "(5,50) and (10,50) over two symbols")
	require.Equal(t, 1, sweep.SkippedCount)

	require.Equal(t, 1, count(t, b.db.Pool, "sweeps"))
	require.Equal(t, 2, count(t, b.db.Pool, "strategies"))
	require.Equal(t, 4, count(t, b.db.Pool, "backtest_runs"))
	require.Equal(t, 4, count(t, b.db.Pool, "river_job"))

	var mismatched, wrongPriority, sweepRuns int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE (j.args->>'run_id')::uuid <> r.id OR (j.args->>'strategy_id')::uuid <> r.strategy_id
		                          OR j.args->>'sweep_id' <> r.sweep_id::text OR j.args->>'correlation_id' <> r.correlation_id),
		       count(*) FILTER (WHERE j.priority <> $1),
		       count(*) FILTER (WHERE r.sweep_id = $2 AND r.status = 'queued')
		FROM backtest_runs r JOIN river_job j ON j.id = r.river_job_id`, enqueue.PrioritySweep, sweep.ID,
	).Scan(&mismatched, &wrongPriority, &sweepRuns))
	require.Zero(t, mismatched)
	require.Zero(t, wrongPriority)
	require.Equal(t, 4, sweepRuns)
	require.Equal(t, 2, enqueue.PrioritySweep)
	require.Less(t, enqueue.PrioritySingle, enqueue.PrioritySweep, "River fetches lower numbers first")
}

// A failure anywhere in the insert leaves nothing: a River insert
// middleware that refuses, a trigger that fails the last run's row, the
// bound of unfinished runs.
func TestEnqueueSweepLeavesNothingHalfWritten(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, b *testBundle) *enqueue.Enqueuer
		wantErr func(t *testing.T, err error)
	}{
		{
			name: "River refuses the jobs",
			prepare: func(t *testing.T, b *testBundle) *enqueue.Enqueuer {
				t.Helper()
				failing, err := river.NewClient(riverpgxv5.New(b.db.Pool), &river.Config{
					Logger: slog.New(slog.DiscardHandler),
					Middleware: []rivertype.Middleware{river.JobInsertMiddlewareFunc(
						func(context.Context, []*rivertype.JobInsertParams, func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
							return nil, errors.New("insert refused")
						})},
				})
				require.NoError(t, err)
				return enqueue.NewEnqueuer(b.db.Pool, failing, 0)
			},
			wantErr: func(t *testing.T, err error) { t.Helper(); require.ErrorContains(t, err, "insert refused") },
		},
		{
			name: "the last run's row fails",
			prepare: func(t *testing.T, b *testBundle) *enqueue.Enqueuer {
				t.Helper()
				_, err := b.db.Pool.Exec(t.Context(), `
					CREATE FUNCTION refuse_beta() RETURNS trigger LANGUAGE plpgsql AS $$
					BEGIN
					    IF (SELECT count(*) FROM backtest_runs) = 3 THEN -- the fourth and last
					        RAISE EXCEPTION 'disk full';
					    END IF;
					    RETURN NEW;
					END $$;
					CREATE TRIGGER refuse_beta BEFORE INSERT ON backtest_runs FOR EACH ROW EXECUTE FUNCTION refuse_beta();`)
				require.NoError(t, err)
				client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
				require.NoError(t, err)
				return enqueue.NewEnqueuer(b.db.Pool, client, 0)
			},
			wantErr: func(t *testing.T, err error) { t.Helper(); require.ErrorContains(t, err, "disk full") },
		},
		{
			name: "past the bound of unfinished runs",
			prepare: func(t *testing.T, b *testBundle) *enqueue.Enqueuer {
				t.Helper()
				client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
				require.NoError(t, err)
				return enqueue.NewEnqueuer(b.db.Pool, client, 0).WithMaxUnfinished(3)
			},
			wantErr: func(t *testing.T, err error) {
				t.Helper()
				var tooMany *enqueue.TooManyUnfinishedError
				require.ErrorAs(t, err, &tooMany)
				require.Equal(t, enqueue.TooManyUnfinishedError{Limit: 3, Unfinished: 0, Requested: 4}, *tooMany)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			enq := tt.prepare(t, b)
			_, err := enq.EnqueueSweep(t.Context(), newSweep(t, b.user.ID, grid3, "ACME", "BETA"))
			tt.wantErr(t, err)
			for _, table := range []string{"sweeps", "strategies", "backtest_runs", "river_job"} {
				require.Zero(t, count(t, b.db.Pool, table), table)
			}
		})
	}
}

// A cancel ends the waiting runs with their jobs at once, asks the running
// one to stop, and leaves the finished one alone; once every run has ended
// a second cancel changes nothing, and a sweep that finished without one
// is past cancelling.
func TestCancelSweep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)
	enq := enqueue.NewEnqueuer(b.db.Pool, client, 0)
	sweep, err := enq.EnqueueSweep(ctx, newSweep(t, b.user.ID, grid3, "ACME", "BETA"))
	require.NoError(t, err)
	runs, _, err := b.q.ListRuns(ctx, b.user.ID, store.RunFilter{SweepID: sweep.ID}, store.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, runs, 4)
	succeeded, running := runs[0], runs[1]
	_, err = b.db.Pool.Exec(ctx, `UPDATE backtest_runs SET status = 'succeeded', finished_at = now() WHERE id = $1`, succeeded.ID)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `UPDATE river_job SET state = 'completed', finalized_at = now() WHERE id = $1`, succeeded.JobID)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `UPDATE backtest_runs SET status = 'running', started_at = now() WHERE id = $1`, running.ID)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() WHERE id = $1`, running.JobID)
	require.NoError(t, err)

	c, err := enq.CancelSweep(ctx, b.user.ID, sweep.ID)
	require.NoError(t, err)
	require.Equal(t, 2, c.Cancelled)
	require.Equal(t, 1, c.Asked)
	require.Nil(t, c.Finished, "the running run has not ended")
	require.NotNil(t, c.Sweep.CancelRequestedAt)
	counts, err := b.q.SweepCounts(ctx, sweep.ID)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"queued": 0, "running": 1, "retrying": 0, "succeeded": 1, "failed": 0, "cancelled": 2}, counts)
	var states []string
	rows, err := b.db.Pool.Query(ctx, `SELECT state::text FROM river_job ORDER BY state`)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		states = append(states, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"cancelled", "cancelled", "completed", "running"}, states)
	got, err := b.q.Run(ctx, b.user.ID, running.ID)
	require.NoError(t, err)
	require.NotNil(t, got.CancelRequestedAt, "River's cancel reaches the worker; the run ends with its attempt")

	// The attempt ends: the last cancel's request holds, a second one
	// changes nothing.
	_, _, err = b.q.CancelRun(ctx, running.ID, enqueue.CancelledMessage)
	require.NoError(t, err)
	c, err = enq.CancelSweep(ctx, b.user.ID, sweep.ID)
	require.NoError(t, err)
	require.Zero(t, c.Cancelled+c.Asked)

	other, err := enq.EnqueueSweep(ctx, newSweep(t, b.user.ID, `{"fast_window": [5], "slow_window": [50]}`, "ACME"))
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `UPDATE backtest_runs SET status = 'failed', finished_at = now() WHERE sweep_id = $1`, other.ID)
	require.NoError(t, err)
	_, err = enq.CancelSweep(ctx, b.user.ID, other.ID)
	var finished *enqueue.FinishedError
	require.ErrorAs(t, err, &finished)

	_, err = enq.CancelSweep(ctx, uuid.Must(uuid.NewV7()), sweep.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "another user's sweep is not found")
}

// Cancelling a sweep's runs one by one over the run's own cancel finishes
// the sweep with the last one, at once and once; a run of no sweep, or a
// sweep with a run left, finishes nothing.
func TestCancelOfASweepsLastRunFinishesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)
	enq := enqueue.NewEnqueuer(b.db.Pool, client, 0)
	sweep, err := enq.EnqueueSweep(ctx, newSweep(t, b.user.ID, grid3, "ACME", "BETA"))
	require.NoError(t, err)
	runs, _, err := b.q.ListRuns(ctx, b.user.ID, store.RunFilter{SweepID: sweep.ID}, store.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, runs, 4)
	_, err = b.db.Pool.Exec(ctx, `UPDATE backtest_runs SET status = 'succeeded', finished_at = now() WHERE id = $1`, runs[0].ID)
	require.NoError(t, err)
	strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
	single, err := enq.Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "single", "ACME", 30))
	require.NoError(t, err)

	c, err := enq.Cancel(ctx, b.user.ID, single.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusCancelled, c.Run.Status)
	require.Nil(t, c.Finished, "a run of no sweep")
	for _, r := range runs[1:3] {
		c, err = enq.Cancel(ctx, b.user.ID, r.ID)
		require.NoError(t, err)
		require.Equal(t, store.StatusCancelled, c.Run.Status)
		require.Nil(t, c.Finished, "the sweep has a run left")
	}
	got, err := b.q.Sweep(ctx, b.user.ID, sweep.ID)
	require.NoError(t, err)
	require.Nil(t, got.FinishedAt)

	c, err = enq.Cancel(ctx, b.user.ID, runs[3].ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusCancelled, c.Run.Status)
	require.NotNil(t, c.Finished, "the cancel ended the sweep's last run")
	got, err = b.q.Sweep(ctx, b.user.ID, sweep.ID)
	require.NoError(t, err)
	require.NotNil(t, got.FinishedAt, "marked finished by the cancel, not left to the reconciliation")
	require.Equal(t, store.SweepFinished{
		ID: sweep.ID, UserID: b.user.ID, CorrelationID: "sweep-cid", Succeeded: 1, Cancelled: 3,
		CreatedAt: got.CreatedAt, FinishedAt: *got.FinishedAt,
	}, *c.Finished)

	c, err = enq.Cancel(ctx, b.user.ID, runs[3].ID)
	require.NoError(t, err)
	require.False(t, c.Asked)
	require.Nil(t, c.Finished, "a second cancel finishes nothing")
}
