// Package jobs runs backtests on River: the job's arguments, the transaction
// that enqueues a run with its job, the worker, and the lifecycle middleware
// that binds each job's fields to its log lines.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// Queue is the River queue backtests run on.
const Queue = "backtests"

// DefaultMaxAttempts is how many times a backtest job is tried before its run
// is marked failed.
const DefaultMaxAttempts = 5

// BacktestArgs are a backtest job's arguments. They carry the fields every
// job log line needs, so the worker can bind them before loading anything.
type BacktestArgs struct {
	RunID         uuid.UUID `json:"run_id"`
	CorrelationID string    `json:"correlation_id"`
	UserID        uuid.UUID `json:"user_id"`
	StrategyID    uuid.UUID `json:"strategy_id"`
}

// Kind is the River job kind of backtests.
func (BacktestArgs) Kind() string { return "backtest" }

// InsertOpts puts backtests on their queue.
func (BacktestArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: DefaultMaxAttempts}
}

// Beginner starts transactions: a *pgxpool.Pool.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// DefaultMaxUnfinished is how many queued or running backtests a user may
// have unless told otherwise (MAX_UNFINISHED_RUNS): room for a large
// parameter sweep, while one key can no longer fill the queue without end.
const DefaultMaxUnfinished = 50_000

// Enqueuer creates runs and their jobs.
type Enqueuer struct {
	db            Beginner
	river         *river.Client[pgx.Tx]
	maxAttempts   int
	maxUnfinished int
}

// NewEnqueuer returns an Enqueuer inserting with client, which may be an
// insert-only client (no workers, never started). Each job is tried up to
// maxAttempts times (DefaultMaxAttempts if 0). A user may have up to
// DefaultMaxUnfinished unfinished runs; WithMaxUnfinished changes that.
func NewEnqueuer(db Beginner, client *river.Client[pgx.Tx], maxAttempts int) *Enqueuer {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	return &Enqueuer{db: db, river: client, maxAttempts: maxAttempts, maxUnfinished: DefaultMaxUnfinished}
}

// WithMaxUnfinished sets how many queued or running runs a user may have
// (DefaultMaxUnfinished if n is 0 or less) and returns e.
func (e *Enqueuer) WithMaxUnfinished(n int) *Enqueuer {
	if n <= 0 {
		n = DefaultMaxUnfinished
	}
	e.maxUnfinished = n
	return e
}

// TooManyUnfinishedError is returned by Enqueue, having written nothing,
// when the user already has Limit runs queued or running.
type TooManyUnfinishedError struct {
	Limit int
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
		if err := q.LockUser(ctx, nb.UserID); err != nil {
			return err
		}
		unfinished, err := q.CountUnfinishedRuns(ctx, nb.UserID, e.maxUnfinished)
		if err != nil {
			return err
		}
		if unfinished >= e.maxUnfinished {
			return &TooManyUnfinishedError{Limit: e.maxUnfinished}
		}
		res, err := e.river.InsertTx(ctx, tx, BacktestArgs{
			RunID: runID, CorrelationID: nb.CorrelationID, UserID: nb.UserID, StrategyID: nb.StrategyID,
		}, &river.InsertOpts{MaxAttempts: e.maxAttempts})
		if err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		run, err = q.InsertRun(ctx, store.NewRun{
			ID: runID, UserID: nb.UserID, StrategyID: nb.StrategyID, CorrelationID: nb.CorrelationID,
			JobID: res.Job.ID, Symbol: nb.Symbol, Start: nb.Start, End: nb.End, InitialCash: nb.InitialCash,
		})
		return err
	})
	if err != nil {
		return store.Run{}, fmt.Errorf("enqueue backtest: %w", err)
	}
	return run, nil
}

// Engine runs a backtest: backtest.Run, or a stand-in in tests.
type Engine func(ctx context.Context, s backtest.Strategy, prices []float64, cash float64,
	progress backtest.Progress) (backtest.Result, error)

// Worker works backtest jobs.
type Worker struct {
	river.WorkerDefaults[BacktestArgs]

	db      Beginner
	q       *store.Queries
	logger  *slog.Logger
	engine  Engine
	timeout time.Duration
	faults  bool
	// progressEvery spaces the progress writes: each one is a commit, and
	// a small backtest reaching its ten checkpoints in milliseconds spent
	// most of its time waiting for ten fsyncs.
	progressEvery time.Duration
	now           func() time.Time
}

// WorkerConfig configures a Worker.
type WorkerConfig struct {
	// Timeout bounds one attempt. Defaults to 30 minutes.
	Timeout time.Duration
	// Engine runs the backtest. Defaults to backtest.Run.
	Engine Engine
	// FaultInjection makes backtests of the fault symbols misbehave: for
	// the tests of the real binaries, in a build with -tags faultinject.
	FaultInjection bool
	// ProgressEvery is how often, at most, a running run's progress is
	// written to the database. Defaults to one second. Every checkpoint is
	// logged (job_progress) whatever this is.
	ProgressEvery time.Duration
	// Now tells the time for spacing the progress writes. Defaults to
	// time.Now; tests set their own clock.
	Now func() time.Time
}

// DBTX is store's: queries, and transactions for completing jobs.
type DBTX = store.DBTX

// NewWorker returns a worker using db and logging to logger.
func NewWorker(db DBTX, logger *slog.Logger, cfg WorkerConfig) *Worker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.Engine == nil {
		cfg.Engine = backtest.Run
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Worker{
		db: db, q: store.New(db), logger: logger, engine: cfg.Engine, timeout: cfg.Timeout, faults: cfg.FaultInjection,
		progressEvery: cfg.ProgressEvery, now: cfg.Now,
	}
}

// Timeout bounds one attempt; River's default of one minute is too short
// for long series.
func (w *Worker) Timeout(*river.Job[BacktestArgs]) time.Duration { return w.timeout }

// Work runs the backtest of a job's run. Failures that another attempt
// cannot fix (a missing run, a strategy the engine rejects, too few bars) are
// returned as river.JobCancel; others are retried by River.
func (w *Worker) Work(ctx context.Context, job *river.Job[BacktestArgs]) error {
	runID := job.Args.RunID
	run, err := w.q.RunForWork(ctx, runID)
	if err != nil {
		return failure(err)
	}
	start, err := w.q.Strategy(ctx, run.UserID, run.StrategyID)
	if err != nil {
		return failure(err)
	}
	spec, err := backtest.ParseStrategy(start.Kind, start.Params)
	if err != nil {
		return failure(fmt.Errorf("strategy %s: %w", start.ID, err))
	}
	if err := w.q.StartRun(ctx, runID, job.Attempt); err != nil {
		return failure(err)
	}
	prices := backtest.SyntheticPrices(run.Symbol, backtest.TradingDays(run.Start, run.End))
	engine := w.engine
	if w.faults {
		engine = withFaults(run.Symbol, job.Attempt, engine)
	}
	saved := w.now()
	result, err := engine(ctx, spec, prices, run.InitialCash, func(pct int) {
		w.logger.InfoContext(ctx, obs.EventJobProgress, slog.Int(obs.KeyProgressPct, pct))
		if now := w.now(); now.Sub(saved) >= w.progressEvery {
			saved = now
		} else {
			return
		}
		if err := w.q.SetProgress(ctx, runID, pct); err != nil {
			// Progress is informative: losing one update must not fail the run.
			w.logger.WarnContext(ctx, obs.EventRunUpdateFailed, slog.String(obs.KeyError, err.Error()),
				slog.String(obs.KeyStatus, store.StatusRunning))
		}
	})
	if err != nil {
		return failure(fmt.Errorf("run backtest: %w", err))
	}
	body, err := json.Marshal(result)
	if err != nil {
		return failure(fmt.Errorf("encode result: %w", err))
	}
	// The result, the run's status and the job's completion commit together:
	// a run is never succeeded with its job still pending, nor the reverse.
	err = pgx.BeginFunc(ctx, w.db, func(tx pgx.Tx) error {
		if err := store.New(tx).CompleteRun(ctx, runID, body); err != nil {
			return err
		}
		if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
			return fmt.Errorf("complete job %d: %w", job.ID, err)
		}
		return nil
	})
	if err != nil {
		return failure(err)
	}
	setResult(ctx, result)
	return nil
}

// failure records where err was noticed and decides whether River should
// try again.
func failure(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // River reads these itself: shutdown, timeout
	}
	err = obs.WithStackSkip(err, 1) // from the line of Work that failed
	var (
		notEnough *backtest.InsufficientDataError
		invalid   *backtest.ValidationError
	)
	if errors.Is(err, store.ErrNotFound) || errors.As(err, &notEnough) || errors.As(err, &invalid) {
		return river.JobCancel(err)
	}
	return err
}
