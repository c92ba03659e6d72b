package store_test

import (
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

// newSweep inserts a sweep of user's with a run per status given, and
// returns its id and its runs' ids.
func (b *testBundle) newSweep(t *testing.T, user store.User, statuses ...string) (uuid.UUID, []uuid.UUID) {
	t.Helper()
	ctx := t.Context()
	id := uuid.Must(uuid.NewV7())
	_, err := b.db.Pool.Exec(ctx, `
		INSERT INTO sweeps (id, user_id, correlation_id, kind, params_grid, symbols, start_date, end_date,
		                    initial_cash, run_count, created_at)
		VALUES ($1, $2, 'cid-sweep', 'buy_and_hold', '{}', '{ACME}', '2020-01-01', '2021-01-01', 1000, $3,
		        now() - interval '90 seconds')`,
		id, user.ID, len(statuses))
	require.NoError(t, err)
	runs := make([]uuid.UUID, len(statuses))
	for i, status := range statuses {
		r, err := b.newRun(t, store.NewRun{UserID: user.ID, CorrelationID: "cid-sweep"})
		require.NoError(t, err)
		_, err = b.db.Pool.Exec(ctx, `UPDATE backtest_runs SET sweep_id = $2, status = $3 WHERE id = $1`, r.ID, id, status)
		require.NoError(t, err)
		runs[i] = r.ID
	}
	return id, runs
}

func TestFinishSweep(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		statuses []string
		// finish are the runs made final (succeeded) before FinishSweep.
		finish []int
		want   bool
		counts [3]int // succeeded, failed, cancelled
	}{
		{name: "all final", statuses: []string{"succeeded", "failed", "cancelled", "succeeded"}, want: true, counts: [3]int{2, 1, 1}},
		{name: "one queued", statuses: []string{"succeeded", "queued"}},
		{name: "one running", statuses: []string{"running", "failed"}},
		{name: "one retrying", statuses: []string{"cancelled", "retrying"}},
		{name: "the last one ends", statuses: []string{"failed", "running"}, finish: []int{1}, want: true, counts: [3]int{1, 1, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			id, runs := b.newSweep(t, b.alice, c.statuses...)
			for _, i := range c.finish {
				_, err := b.db.Pool.Exec(ctx, `UPDATE backtest_runs SET status = 'succeeded' WHERE id = $1`, runs[i])
				require.NoError(t, err)
			}
			f, ok, err := b.q.FinishSweep(ctx, id)
			require.NoError(t, err)
			require.Equal(t, c.want, ok)
			if !c.want {
				settled, err := b.q.FinishSettledSweeps(ctx)
				require.NoError(t, err)
				require.Empty(t, settled, "an unfinished sweep is not finished by the reconciliation either")
				return
			}
			require.Equal(t, id, f.ID)
			require.Equal(t, b.alice.ID, f.UserID)
			require.Equal(t, "cid-sweep", f.CorrelationID)
			got := [3]int{f.Succeeded, f.Failed, f.Cancelled}
			require.Equal(t, c.counts, got)
			require.GreaterOrEqual(t, f.FinishedAt.Sub(f.CreatedAt).Seconds(), 90.0)

			_, again, err := b.q.FinishSweep(ctx, id)
			require.NoError(t, err)
			require.False(t, again, "a sweep finishes once")
			settled, err := b.q.FinishSettledSweeps(ctx)
			require.NoError(t, err)
			require.Empty(t, settled, "nor does the reconciliation finish it again")
		})
	}
}

// TestFinishSweepOnceUnderConcurrency ends the last runs of a sweep in
// concurrent transactions, each asking to finish the sweep once its own
// write committed, with the reconciliation's catch-all racing them: the
// sweep is finished exactly once.
func TestFinishSweepOnceUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	const n = 8
	statuses := make([]string, n)
	for i := range statuses {
		statuses[i] = "running"
	}
	id, runs := b.newSweep(t, b.alice, statuses...)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		finished []store.SweepFinished
	)
	start := make(chan struct{})
	record := func(f ...store.SweepFinished) {
		mu.Lock()
		defer mu.Unlock()
		finished = append(finished, f...)
	}
	for i, run := range runs {
		wg.Go(func() {
			<-start
			status := "succeeded"
			if i%3 == 0 {
				status = "failed"
			}
			_, err := b.db.Pool.Exec(ctx, `UPDATE backtest_runs SET status = $2 WHERE id = $1`, run, status)
			if !assert.NoError(t, err) { //nolint:forbidigo,testifylint // a goroutine: require would stop the wrong one
				return
			}
			f, ok, err := b.q.FinishSweep(ctx, id)
			if assert.NoError(t, err) && ok { //nolint:forbidigo // a goroutine, as above
				record(f)
			}
		})
		wg.Go(func() {
			<-start
			settled, err := b.q.FinishSettledSweeps(ctx)
			if assert.NoError(t, err) { //nolint:forbidigo // a goroutine, as above
				record(settled...)
			}
		})
	}
	close(start)
	wg.Wait()
	settled, err := b.q.FinishSettledSweeps(ctx)
	require.NoError(t, err)
	record(settled...)
	require.Len(t, finished, 1, "the sweep is finished exactly once")
	require.Equal(t, [3]int{5, 3, 0}, [3]int{finished[0].Succeeded, finished[0].Failed, finished[0].Cancelled})
}
