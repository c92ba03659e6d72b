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
	"github.com/riverqueue/river"

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

// DBTX is store's: the handle the worker's queries run on.
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
		q: store.New(db), logger: logger, engine: cfg.Engine, timeout: cfg.Timeout, faults: cfg.FaultInjection,
		progressEvery: cfg.ProgressEvery, now: cfg.Now,
	}
}

// Timeout bounds one attempt; River's default of one minute is too short
// for long series.
func (w *Worker) Timeout(*river.Job[jobargs.Backtest]) time.Duration { return w.timeout }

// Work runs the backtest of a job's run and, once the result is committed,
// logs job_completed with it: the lifecycle middleware logs how an attempt
// began and how it failed, but only the worker holds the result. Failures
// that another attempt cannot fix (a strategy the engine rejects, too few
// bars) are returned as river.JobCancel; others are retried by River. Every
// write is conditional on the run still being at this attempt: once it is
// not (River rescued the job from this worker and another attempt owns the
// run), the attempt stops with an error wrapping store.ErrStaleAttempt,
// never nil, so that River does not record it as the job's success.
func (w *Worker) Work(ctx context.Context, job *river.Job[jobargs.Backtest]) error {
	began := w.now()
	run, strategy, err := w.q.StartWork(ctx, job.Args.RunID, job.Attempt)
	if err != nil {
		return fail(startFailure(err))
	}
	in, err := w.input(run, strategy)
	if err != nil {
		return err
	}
	// The engine stops when a progress write finds the attempt stale:
	// whatever it computes after that is nobody's.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	in.Progress = w.progress(ctx, stop, run.ID, job.Attempt)
	engine := w.engine
	if w.faults {
		engine = withFaults(job.Attempt, engine)
	}
	result, err := engine(ctx, in)
	if stale := context.Cause(ctx); err != nil && errors.Is(stale, store.ErrStaleAttempt) {
		return stale
	}
	if err != nil {
		return fail(engineFailure(fmt.Errorf("run backtest: %w", err)))
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

// startFailure classifies a failure to start the attempt.
func startFailure(err error) (code string, permanent bool, _ error) {
	switch {
	case errors.Is(err, store.ErrStaleAttempt):
		return "", false, staleWrite(store.StatusRunning, err)
	case errors.Is(err, store.ErrRunCancelled):
		return store.ErrorCodeCancelled, true, err
	case errors.Is(err, store.ErrNotFound):
		return store.ErrorCodeInternal, true, err // the run is gone: no attempt can run it
	default:
		return store.ErrorCodeInternal, false, err
	}
}

// input is the engine's input for run, whose strategy StartWork loaded
// with it (nil: deleted, or not the run's user's).
func (w *Worker) input(run store.Run, strategy *store.Strategy) (backtest.Input, error) {
	if strategy == nil {
		return backtest.Input{}, fail(store.ErrorCodeStrategyNotFound, true,
			fmt.Errorf("load strategy %s: %w", run.StrategyID, store.ErrNotFound))
	}
	spec, err := backtest.ParseStrategy(strategy.Kind, strategy.Params)
	if err != nil {
		return backtest.Input{}, fail(store.ErrorCodeInvalidStrategy, true, fmt.Errorf("strategy %s: %w", strategy.ID, err))
	}
	return backtest.Input{
		Symbol:      run.Symbol,
		Strategy:    spec,
		Prices:      backtest.SyntheticPrices(run.Symbol, backtest.TradingDays(run.Start, run.End)),
		InitialCash: run.InitialCash,
	}, nil
}

// engineFailure classifies the engine's error.
func engineFailure(err error) (code string, permanent bool, _ error) {
	var (
		notEnough *backtest.InsufficientDataError
		invalid   *backtest.ValidationError
	)
	switch {
	case errors.As(err, &notEnough):
		return store.ErrorCodeInsufficientData, true, err
	case errors.As(err, &invalid):
		return store.ErrorCodeInvalidStrategy, true, err
	default:
		return store.ErrorCodeInternal, false, err
	}
}

// progress logs every checkpoint of attempt and saves the run's progress
// at most once every progressEvery. A save that finds the attempt stale
// stops the attempt, through stop.
func (w *Worker) progress(ctx context.Context, stop context.CancelCauseFunc, runID uuid.UUID, attempt int) backtest.Progress {
	saved := w.now()
	return func(pct int) {
		w.logger.InfoContext(ctx, obs.EventJobProgress, slog.Int(obs.KeyProgressPct, pct))
		if now := w.now(); now.Sub(saved) >= w.progressEvery {
			saved = now
		} else {
			return
		}
		err := w.q.SetProgress(ctx, runID, attempt, pct)
		switch {
		case err == nil:
		case errors.Is(err, store.ErrStaleAttempt):
			stop(staleWrite(store.StatusRunning, err))
		default:
			// Progress is informative: losing one update must not fail the run.
			w.logger.WarnContext(ctx, obs.EventRunUpdateFailed, slog.String(obs.KeyError, err.Error()),
				slog.String(obs.KeyStatus, store.StatusRunning))
		}
	}
}

// complete commits the result, the run's status, the attempt's row and the
// job's completion together, in one statement: a run is never succeeded
// with its job still pending, nor the reverse. A job River no longer has
// running at this attempt (it rescued it) is not this attempt's to
// complete: nothing is committed.
func (w *Worker) complete(ctx context.Context, job *river.Job[jobargs.Backtest], result backtest.Result) error {
	body, err := json.Marshal(result)
	if err != nil {
		return fail(store.ErrorCodeInternal, false, fmt.Errorf("encode result: %w", err))
	}
	err = w.q.CompleteWork(ctx, job.Args.RunID, job.Attempt, job.ID, body)
	switch {
	case errors.Is(err, store.ErrStaleAttempt):
		return staleWrite(store.StatusSucceeded, err)
	case err != nil:
		return fail(store.ErrorCodeInternal, false, err)
	}
	return nil
}

// failure is an attempt's error with the code its run records: decided
// where the error is known, since its Go type says nothing to API clients.
type failure struct {
	code string
	err  error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// fail records where err was noticed (the caller's line) and its code; a
// permanent failure is a river.JobCancel, which River does not retry. The
// context's errors and stale writes go back as they are: River and the
// lifecycle read them themselves (a shutdown, a timeout, a remote cancel).
func fail(code string, permanent bool, err error) error {
	var stale *staleAttemptError
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &stale) {
		return err
	}
	err = &failure{code: code, err: obs.WithStackSkip(err, 1)}
	if permanent {
		return river.JobCancel(err)
	}
	return err
}

// errorCode is the code of an attempt's error: the worker's, or what the
// context says.
func errorCode(err error) string {
	var f *failure
	switch {
	case errors.As(err, &f):
		return f.code
	case errors.Is(err, context.DeadlineExceeded):
		return store.ErrorCodeTimeout
	default:
		return store.ErrorCodeInternal
	}
}

// staleAttemptError is a write of an attempt that the store refused because
// the run has moved on to another (store.ErrStaleAttempt).
type staleAttemptError struct {
	// status is what the write would have made the run.
	status string
	err    error
}

func (e *staleAttemptError) Error() string { return e.err.Error() }
func (e *staleAttemptError) Unwrap() error { return e.err }

func staleWrite(status string, err error) error {
	return &staleAttemptError{status: status, err: err}
}
