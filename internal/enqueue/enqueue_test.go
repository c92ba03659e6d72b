package enqueue_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

type testBundle struct {
	db      *dbtest.DB
	q       *store.Queries
	user    store.User
	handler *obs.Handler
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := dbtest.New(t)
	q := store.New(db.Pool)
	user, err := q.EnsureUser(t.Context(), "alice")
	require.NoError(t, err)
	h := obs.NewHandler(&logtest.Sink{}, obs.Options{Service: "server"})
	return &testBundle{db: db, q: q, user: user, handler: h}
}

func count(t *testing.T, db store.DBTX, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.QueryRow(t.Context(), `SELECT count(*) FROM `+table).Scan(&n))
	return n
}

func TestEnqueueWritesRunAndJobTogether(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
	client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)

	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	run, err := enqueue.NewEnqueuer(tx, client, 0).Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid-1", "ACME", 30))
	require.NoError(t, err)
	job := rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, tx, &jobargs.Backtest{},
		&rivertest.RequireInsertedOpts{Queue: jobargs.Queue, MaxAttempts: config.DefaultJobMaxAttempts})
	require.Equal(t, "cid-1", job.Args.CorrelationID)
	require.Equal(t, run.ID, job.Args.RunID)
	require.Equal(t, b.user.ID, job.Args.UserID)
	require.Equal(t, strategy.ID, job.Args.StrategyID)
	require.Equal(t, job.ID, run.JobID)
	require.Equal(t, "cid-1", run.CorrelationID)
}

func TestEnqueueLeavesNothingHalfWritten(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)

	failing, err := river.NewClient(riverpgxv5.New(b.db.Pool), &river.Config{
		Logger: slog.New(slog.DiscardHandler),
		Middleware: []rivertype.Middleware{river.JobInsertMiddlewareFunc(
			func(context.Context, []*rivertype.JobInsertParams, func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
				return nil, errors.New("insert refused")
			})},
	})
	require.NoError(t, err)
	_, err = enqueue.NewEnqueuer(b.db.Pool, failing, 0).Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid", "ACME", 30))
	require.ErrorContains(t, err, "insert refused")
	require.Zero(t, count(t, b.db.Pool, "backtest_runs"), "a failed job insert leaves no run")
	require.Zero(t, count(t, b.db.Pool, "river_job"))

	// The job insert succeeds, then a transient fault strikes before the run
	// is inserted: the transaction takes the job back too.
	afterInsert, err := river.NewClient(riverpgxv5.New(b.db.Pool), &river.Config{
		Logger: slog.New(slog.DiscardHandler),
		Middleware: []rivertype.Middleware{river.JobInsertMiddlewareFunc(
			func(ctx context.Context, _ []*rivertype.JobInsertParams, doInner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
				if _, err := doInner(ctx); err != nil {
					return nil, err
				}
				return nil, errors.New("connection reset after the job insert")
			})},
	})
	require.NoError(t, err)
	_, err = enqueue.NewEnqueuer(b.db.Pool, afterInsert, 0).Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid", "ACME", 30))
	require.ErrorContains(t, err, "connection reset")
	require.Zero(t, count(t, b.db.Pool, "backtest_runs"))
	require.Zero(t, count(t, b.db.Pool, "river_job"), "the inserted job is rolled back with the rest")

	client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)
	other, err := b.q.EnsureUser(ctx, "mallory")
	require.NoError(t, err)
	_, err = enqueue.NewEnqueuer(b.db.Pool, client, 0).Enqueue(ctx, fixture.Backtest(other.ID, strategy.ID, "cid", "ACME", 30))
	require.ErrorIs(t, err, store.ErrNotFound)
	require.Zero(t, count(t, b.db.Pool, "backtest_runs"))
	require.Zero(t, count(t, b.db.Pool, "river_job"), "a refused run insert leaves no job")
}

// The bound on unfinished runs holds when a user's enqueues race: each
// counts under the user's lock, so exactly the bound gets in and the rest
// write nothing. A finished run makes room again.
func TestEnqueueBoundsUnfinishedRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
	client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)
	const bound, racers = 3, 16
	enq := enqueue.NewEnqueuer(b.db.Pool, client, 0).WithMaxUnfinished(bound)

	start := make(chan struct{})
	errs := make(chan error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			_, err := enq.Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "race-"+strconv.Itoa(i), "ACME", 30))
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	accepted, refused := 0, 0
	for err := range errs {
		var tooMany *enqueue.TooManyUnfinishedError
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &tooMany):
			require.Equal(t, bound, tooMany.Limit)
			refused++
		default:
			require.NoError(t, err)
		}
	}
	require.Equal(t, bound, accepted)
	require.Equal(t, racers-bound, refused)
	require.Equal(t, bound, count(t, b.db.Pool, "backtest_runs"))
	require.Equal(t, bound, count(t, b.db.Pool, "river_job"), "a refused run leaves no job")

	runs, _, err := b.q.ListRuns(ctx, b.user.ID, store.RunFilter{}, store.Page{Limit: 10})
	require.NoError(t, err)
	_, _, err = b.q.StartWork(ctx, runs[0].ID, 1)
	require.NoError(t, err)
	require.NoError(t, b.q.FailAttempt(ctx, runs[0].ID, 1, store.AttemptFailure{Code: store.ErrorCodeInternal, Message: "done"}))
	_, err = enq.Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "after", "ACME", 30))
	require.NoError(t, err, "a finished run makes room")
	_, err = enq.Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "over", "ACME", 30))
	var tooMany *enqueue.TooManyUnfinishedError
	require.ErrorAs(t, err, &tooMany)
	require.Equal(t, enqueue.TooManyUnfinishedError{Limit: bound, Unfinished: bound, Requested: 1}, *tooMany)

	gone, err := b.q.EnsureUser(ctx, "gone")
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, gone.ID)
	require.NoError(t, err)
	_, err = enq.Enqueue(ctx, fixture.Backtest(gone.ID, strategy.ID, "gone", "ACME", 30))
	require.ErrorIs(t, err, store.ErrUserGone)
	require.Equal(t, bound+1, count(t, b.db.Pool, "river_job"))
}
