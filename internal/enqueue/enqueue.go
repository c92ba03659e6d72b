// Package enqueue starts backtests, on the API server's side: it writes a
// run and its River job in one transaction, within the bound of unfinished
// runs a user may have; and cancels them, run and job together. The worker, which runs the jobs, is another
// package (internal/jobs); what both sides agree on is internal/jobargs.
package enqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/store"
)

// Beginner starts transactions: a *pgxpool.Pool.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Enqueuer creates runs and their jobs.
type Enqueuer struct {
	db            Beginner
	river         *river.Client[pgx.Tx]
	maxAttempts   int
	maxUnfinished int
}

// NewEnqueuer returns an Enqueuer inserting with client, which may be an
// insert-only client (no workers, never started). Each job is tried up to
// maxAttempts times (config.DefaultJobMaxAttempts if 0). A user may have up
// to config.DefaultMaxUnfinishedRuns unfinished runs; WithMaxUnfinished
// changes that.
func NewEnqueuer(db Beginner, client *river.Client[pgx.Tx], maxAttempts int) *Enqueuer {
	if maxAttempts <= 0 {
		maxAttempts = config.DefaultJobMaxAttempts
	}
	return &Enqueuer{db: db, river: client, maxAttempts: maxAttempts, maxUnfinished: config.DefaultMaxUnfinishedRuns}
}

// WithMaxUnfinished sets how many queued or running runs a user may have
// (config.DefaultMaxUnfinishedRuns if n is 0 or less) and returns e.
func (e *Enqueuer) WithMaxUnfinished(n int) *Enqueuer {
	if n <= 0 {
		n = config.DefaultMaxUnfinishedRuns
	}
	e.maxUnfinished = n
	return e
}

// TooManyUnfinishedError is returned by Enqueue, having written nothing,
// when the user already has Limit runs queued or running.
type TooManyUnfinishedError struct {
	Limit int
	// Unfinished and Requested are the runs the user has unfinished, and
	// the runs asked for (1 for a backtest, a sweep's runs), which together
	// pass Limit.
	Unfinished, Requested int
}

func (e *TooManyUnfinishedError) Error() string {
	return fmt.Sprintf("the user has %d unfinished backtests, the most allowed", e.Limit)
}

// NewBacktest is a backtest a user asked for.
type NewBacktest struct {
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	Symbol        string
	Start, End    time.Time
	InitialCash   float64
	// Traceparent, if set, is the W3C traceparent of the request's span:
	// the job's attempts continue its trace.
	Traceparent string
	// Hook, if set, runs inside the enqueue's transaction, so that what it
	// writes commits with the run and its job, or not at all.
	Hook TxHook[store.Run]
}

// TxHook is work done inside an enqueue's transaction: an idempotency
// key's claim and its stored response, say. T is what the enqueue creates
// (a store.Run, a store.Sweep). An error of either method rolls the
// transaction back and is returned by the enqueue, wrapped.
type TxHook[T any] interface {
	// Before runs first, before the user's row is locked or anything is
	// written.
	Before(ctx context.Context, tx pgx.Tx) error
	// After runs once what the enqueue creates is inserted, with it.
	After(ctx context.Context, tx pgx.Tx, created T) error
}

// Enqueue inserts the run and its River job in one transaction: both or
// neither. Having written nothing, it returns an error wrapping
// store.ErrNotFound when the strategy is not the user's, store.ErrUserGone
// when the user no longer exists, and a *TooManyUnfinishedError when the
// user is at the bound of unfinished runs.
//
// The bound holds under concurrency: the user's row is locked before the
// count, so two enqueues of one user cannot both see room for one more.
func (e *Enqueuer) Enqueue(ctx context.Context, nb NewBacktest) (store.Run, error) {
	runID, err := uuid.NewV7()
	if err != nil {
		return store.Run{}, fmt.Errorf("new run id: %w", err)
	}
	var run store.Run
	err = pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		q := store.New(tx)
		if nb.Hook != nil {
			if err := nb.Hook.Before(ctx, tx); err != nil {
				return err
			}
		}
		if err := e.checkRoomFor(ctx, q, nb.UserID, 1); err != nil {
			return err
		}
		res, err := e.river.InsertTx(ctx, tx, jobargs.Backtest{
			RunID: runID, CorrelationID: nb.CorrelationID, UserID: nb.UserID, StrategyID: nb.StrategyID,
			Traceparent: nb.Traceparent,
		}, &river.InsertOpts{MaxAttempts: e.maxAttempts})
		if err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		run, err = q.InsertRun(ctx, store.NewRun{
			ID: runID, UserID: nb.UserID, StrategyID: nb.StrategyID, CorrelationID: nb.CorrelationID,
			JobID: res.Job.ID, Symbol: nb.Symbol, Start: nb.Start, End: nb.End, InitialCash: nb.InitialCash,
		})
		if err != nil || nb.Hook == nil {
			return err
		}
		return nb.Hook.After(ctx, tx, run)
	})
	if err != nil {
		return store.Run{}, fmt.Errorf("enqueue backtest: %w", err)
	}
	return run, nil
}
