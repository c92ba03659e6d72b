// Package jobs runs backtests on River, on the worker's side: the River
// client that works the queue, the backtest worker, the lifecycle middleware
// that binds each job's fields to its log lines and records how its
// attempts end, and the periodic reconciliation of runs with their jobs.
// Enqueueing is the API server's (internal/enqueue); the job's arguments
// are shared by both (internal/jobargs).
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
	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// Engine runs a backtest: backtest.Run, or a stand-in in tests.
type Engine func(ctx context.Context, in backtest.Input) (backtest.Result, error)

// Worker works backtest jobs.
type Worker struct {
	river.WorkerDefaults[jobargs.Backtest]

	db      DBTX
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
	// Timeout bounds one attempt. Defaults to config.DefaultJobTimeout.
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
	// Now tells the time for spacing the progress writes and timing the
	// attempt. Defaults to time.Now; tests set their own clock.
	Now func() time.Time
}

// DBTX is store's: queries, and transactions for completing jobs.
type DBTX = store.DBTX

// NewWorker returns a worker using db and logging to logger.
func NewWorker(db DBTX, logger *slog.Logger, cfg WorkerConfig) *Worker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = config.DefaultJobTimeout
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
func (w *Worker) Timeout(*river.Job[jobargs.Backtest]) time.Duration { return w.timeout }

// Work runs the backtest of a job's run and, once the result is committed,
// logs job_completed with it: the lifecycle middleware logs how an attempt
// began and how it failed, but only the worker holds the result. Failures
// that another attempt cannot fix (a missing run, a strategy the engine
// rejects, too few bars) are returned as river.JobCancel; others are
// retried by River.
func (w *Worker) Work(ctx context.Context, job *river.Job[jobargs.Backtest]) error {
	began := w.now()
	in, err := w.prepare(ctx, job)
	if err != nil {
		return err
	}
	engine := w.engine
	if w.faults {
		engine = withFaults(job.Attempt, engine)
	}
	result, err := engine(ctx, in)
	if err != nil {
		return failure(fmt.Errorf("run backtest: %w", err))
	}
	if err := w.complete(ctx, job, result); err != nil {
		return err
	}
	w.logger.LogAttrs(ctx, slog.LevelInfo, obs.EventJobCompleted,
		slog.Int64(obs.KeyDurationMS, w.now().Sub(began).Milliseconds()),
		slog.Int(obs.KeyBars, result.Bars),
		slog.Float64(obs.KeyFinalEquity, result.FinalEquity),
		slog.Float64(obs.KeyTotalReturn, result.TotalReturn),
		slog.Float64(obs.KeyCAGR, result.CAGR),
		slog.Float64(obs.KeyMaxDrawdown, result.MaxDrawdown),
		slog.Float64(obs.KeySharpe, result.Sharpe),
		slog.Int(obs.KeyTrades, result.Trades))
	return nil
}

// prepare loads the job's run and strategy, marks the run running, and
// returns the engine's input.
func (w *Worker) prepare(ctx context.Context, job *river.Job[jobargs.Backtest]) (backtest.Input, error) {
	runID := job.Args.RunID
	run, err := w.q.RunForWork(ctx, runID)
	if err != nil {
		return backtest.Input{}, failure(err)
	}
	strategy, err := w.q.Strategy(ctx, run.UserID, run.StrategyID)
	if err != nil {
		return backtest.Input{}, failure(err)
	}
	spec, err := backtest.ParseStrategy(strategy.Kind, strategy.Params)
	if err != nil {
		return backtest.Input{}, failure(fmt.Errorf("strategy %s: %w", strategy.ID, err))
	}
	if err := w.q.StartRun(ctx, runID, job.Attempt); err != nil {
		return backtest.Input{}, failure(err)
	}
	return backtest.Input{
		Symbol:      run.Symbol,
		Strategy:    spec,
		Prices:      backtest.SyntheticPrices(run.Symbol, backtest.TradingDays(run.Start, run.End)),
		InitialCash: run.InitialCash,
		Progress:    w.progress(ctx, run.ID),
	}, nil
}

// progress logs every checkpoint and saves the run's progress at most once
// every progressEvery.
func (w *Worker) progress(ctx context.Context, runID uuid.UUID) backtest.Progress {
	saved := w.now()
	return func(pct int) {
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
	}
}

// complete commits the result, the run's status and the job's completion
// together: a run is never succeeded with its job still pending, nor the
// reverse.
func (w *Worker) complete(ctx context.Context, job *river.Job[jobargs.Backtest], result backtest.Result) error {
	body, err := json.Marshal(result)
	if err != nil {
		return failure(fmt.Errorf("encode result: %w", err))
	}
	err = pgx.BeginFunc(ctx, w.db, func(tx pgx.Tx) error {
		if err := store.New(tx).CompleteRun(ctx, job.Args.RunID, body); err != nil {
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
	return nil
}

// failure records where err was noticed and decides whether River should
// try again.
func failure(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // River reads these itself: shutdown, timeout
	}
	err = obs.WithStackSkip(err, 1) // from the line that failed
	var (
		notEnough *backtest.InsufficientDataError
		invalid   *backtest.ValidationError
	)
	if errors.Is(err, store.ErrNotFound) || errors.As(err, &notEnough) || errors.As(err, &invalid) {
		return river.JobCancel(err)
	}
	return err
}
