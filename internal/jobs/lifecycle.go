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
	"github.com/riverqueue/river/rivertype"

	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/internal/tracecontext"
)

// runWrites is what the lifecycle does to a run whose job did not complete.
type runWrites interface {
	FailRun(ctx context.Context, id uuid.UUID, attempt int, message, errorType string) error
	RequeueRun(ctx context.Context, id uuid.UUID) error
}

// Lifecycle is River worker middleware that binds a job's fields to its
// context, so every line logged while working it carries them, and logs the
// job's start and how it failed. When a job will not be tried again it
// marks the run failed; when a shutdown interrupts it, it puts the run back
// in the queue. A success is logged (job_completed) by the worker, which
// holds the result.
//
// It must be the first middleware: it binds the fields before anything that
// might fail, and it recovers panics before River does, since River's own
// recovery happens outside all middleware and knows nothing of the run.
type Lifecycle struct {
	river.MiddlewareDefaults

	logger *slog.Logger
	runs   runWrites
	// jobs, if set, learns each job's fields and whether its failure was
	// logged, for the handler of River's own lines.
	jobs *jobTracker
}

var _ rivertype.WorkerMiddleware = (*Lifecycle)(nil)

// NewLifecycle returns the middleware, logging to logger and updating runs
// through db.
func NewLifecycle(logger *slog.Logger, db store.DBTX) *Lifecycle {
	return &Lifecycle{logger: logger, runs: store.New(db)}
}

// failedAttempt is how an attempt failed: what job_failed says, and the
// run keeps when there is no retry.
type failedAttempt struct {
	began     time.Time
	message   string
	errorType string
	traceback obs.Traceback
	panicked  bool
	willRetry bool
}

// Work binds, logs and runs one attempt of job.
func (l *Lifecycle) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) (err error) {
	args := readArgs(job)
	attrs := jobAttrs(job, args)
	ctx = continueTrace(obs.WithAttrs(ctx, attrs...), args.Traceparent)
	l.jobs.working(job.ID, attrs)
	began := time.Now()
	l.logStarted(ctx, job)

	defer func() {
		if r := recover(); r != nil {
			l.failed(ctx, job, args.RunID, failedAttempt{
				began: began, message: fmt.Sprintf("panic: %v", r), errorType: fmt.Sprintf("%T", r),
				traceback: obs.PanicStack(), panicked: true, willRetry: job.Attempt < job.MaxAttempts,
			})
			l.jobs.finished(job.ID, true)
			panic(r) // River records the panic and schedules the retry
		}
	}()
	err = doInner(ctx)
	defer l.jobs.finished(job.ID, err != nil) // after the lines below: River's come later still
	switch {
	case err == nil: // the worker logged job_completed, with its result
	case interrupted(ctx, err):
		l.logger.WarnContext(ctx, obs.EventJobInterrupted,
			slog.Int64(obs.KeyDurationMS, time.Since(began).Milliseconds()),
			slog.String(obs.KeyError, err.Error()))
		l.updateRun(ctx, args.RunID, store.StatusQueued, l.runs.RequeueRun)
	default:
		l.failed(ctx, job, args.RunID, returnedFailure(job, began, err))
	}
	return err
}

// readArgs reads a backtest's arguments. Other kinds, and args that do not
// decode, leave them empty: River's own decoding reports the latter.
func readArgs(job *rivertype.JobRow) jobargs.Backtest {
	var args jobargs.Backtest
	if job.Kind == jobargs.KindBacktest {
		_ = json.Unmarshal(job.EncodedArgs, &args)
	}
	return args
}

// jobAttrs are the fields every line of the job carries.
func jobAttrs(job *rivertype.JobRow, args jobargs.Backtest) []slog.Attr {
	cid := args.CorrelationID
	if cid == "" {
		// A job no request created (a periodic one) gets an ID of its own,
		// so its lines can be followed like any other.
		cid = obs.NewCorrelationID()
	}
	attrs := make([]slog.Attr, 0, 7) // room for all: no growing
	attrs = append(attrs, slog.String(obs.KeyCorrelationID, cid))
	if args.RunID != uuid.Nil { // a backtest: the fields that say whose and what
		attrs = append(attrs,
			slog.String(obs.KeyUserID, args.UserID.String()),
			slog.String(obs.KeyStrategyID, args.StrategyID.String()),
			slog.String(obs.KeyRunID, args.RunID.String()))
	}
	return append(attrs,
		slog.Int64(obs.KeyJobID, job.ID),
		slog.String(obs.KeyJobKind, job.Kind),
		slog.Int(obs.KeyAttempt, job.Attempt))
}

func (l *Lifecycle) logStarted(ctx context.Context, job *rivertype.JobRow) {
	var wait time.Duration
	if job.AttemptedAt != nil {
		wait = job.AttemptedAt.Sub(job.ScheduledAt)
	}
	l.logger.LogAttrs(ctx, lifecycleLevel(job.Kind), obs.EventJobStarted,
		slog.Int64(obs.KeyQueueWaitMS, max(wait.Milliseconds(), 0)),
		slog.Int(obs.KeyMaxAttempts, job.MaxAttempts))
}

// returnedFailure describes the error an attempt returned.
func returnedFailure(job *rivertype.JobRow, began time.Time, err error) failedAttempt {
	var cancel *rivertype.JobCancelError
	f := failedAttempt{
		began: began, message: err.Error(), errorType: obs.ErrorType(err),
		willRetry: !errors.As(err, &cancel) && job.Attempt < job.MaxAttempts,
	}
	if cancel != nil && cancel.Unwrap() != nil {
		f.message = cancel.Unwrap().Error() // without River's "JobCancelError: " prefix
	}
	tb, ok := obs.StackOf(err)
	if !ok {
		tb = obs.CaptureStack(1) // from the middleware's Work
	}
	f.traceback = tb
	return f
}

// failed logs job_failed and, when River will not try again, marks the run
// failed with the error (never its stack: that is for the logs).
func (l *Lifecycle) failed(ctx context.Context, job *rivertype.JobRow, runID uuid.UUID, f failedAttempt) {
	level := slog.LevelError
	if f.willRetry {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.Int64(obs.KeyDurationMS, time.Since(f.began).Milliseconds()),
		slog.String(obs.KeyError, f.message),
		slog.String(obs.KeyErrorType, f.errorType),
		slog.Any(obs.KeyTraceback, f.traceback),
		slog.Bool(obs.KeyWillRetry, f.willRetry),
	}
	if f.panicked {
		attrs = append(attrs, slog.Bool(obs.KeyPanic, true))
	}
	l.logger.LogAttrs(ctx, level, obs.EventJobFailed, attrs...)
	if !f.willRetry {
		l.updateRun(ctx, runID, store.StatusFailed, func(ctx context.Context, id uuid.UUID) error {
			return l.runs.FailRun(ctx, id, job.Attempt, f.message, f.errorType)
		})
	}
}

// updateRun writes the job's run to status, on a context of its own: the
// job's may be cancelled already (a shutdown, a timeout), and the run must
// be updated all the same. A run that is gone or already finished is left
// as it is.
func (l *Lifecycle) updateRun(ctx context.Context, runID uuid.UUID, status string, write func(context.Context, uuid.UUID) error) {
	if runID == uuid.Nil {
		return // no run: the job is not a backtest
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := write(wctx, runID); err != nil && !errors.Is(err, store.ErrNotFound) {
		l.logger.ErrorContext(ctx, obs.EventRunUpdateFailed, slog.String(obs.KeyError, err.Error()),
			slog.String(obs.KeyStatus, status))
	}
}

// interrupted reports whether the attempt stopped because its context was
// cancelled by the client shutting down: River puts such a job back in the
// queue without counting the attempt. A remote cancel is a real end.
func interrupted(ctx context.Context, err error) bool {
	return errors.Is(err, context.Canceled) && ctx.Err() != nil &&
		!errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely)
}

// continueTrace puts the attempt in the trace of the request that created
// the job: a span of its own, a child of the request's. The traceparent was
// checked by the server; one that no longer parses (written by hand into
// the job's row) leaves the job outside any trace, as does none.
func continueTrace(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	parent, reason := tracecontext.Parse(traceparent)
	if reason != "" {
		return ctx
	}
	return tracecontext.With(ctx, parent.Child())
}
