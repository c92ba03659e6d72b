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

// attemptWrites are the lifecycle's writes to a run: how an attempt ended,
// if not by its worker's success.
type attemptWrites interface {
	RetryAttempt(ctx context.Context, id uuid.UUID, attempt int, next time.Time, f store.AttemptFailure) (string, error)
	FailAttempt(ctx context.Context, id uuid.UUID, attempt int, f store.AttemptFailure) error
	CancelAttempt(ctx context.Context, id uuid.UUID, attempt int, message string) error
	InterruptAttempt(ctx context.Context, id uuid.UUID, attempt int) error
}

// Lifecycle is River worker middleware that binds a job's fields to its
// context, so every line logged while working it carries them, logs the
// job's start and how it ended, and records on the run how an attempt
// ended when its worker could not: failed with another attempt to come
// (retrying, with the instant River will retry), failed for good,
// cancelled, or interrupted by a shutdown (queued). A success is logged
// (job_completed) and written by the worker, which holds the result.
//
// Every write is conditional on the run still being at the job's attempt.
// A stale attempt (River rescued its job from a worker it presumed dead,
// and another attempt owns the run) changes nothing: it logs stale_attempt
// and ends with an error, never nil, which River records with the stale
// attempt's number, so that the database refuses to let it move the live
// attempt's job (migration 00013).
//
// It must be the first middleware: it binds the fields before anything that
// might fail, and it recovers panics before River does, since River's own
// recovery happens outside all middleware and knows nothing of the run.
type Lifecycle struct {
	river.MiddlewareDefaults

	logger *slog.Logger
	runs   attemptWrites
	// sweeps finishes the sweep of a run whose attempt ended, if it was
	// the sweep's last run to become final.
	sweeps sweepFinisher
	// jobs, if set, learns each job's fields and whether its failure was
	// logged, for the handler of River's own lines.
	jobs *jobTracker
	// retries plans when River retries a failed attempt: the client's retry
	// policy (NewWorkerClient), which gives River the instant the run was
	// told. NewLifecycle's own follows River's default policy, which is
	// what a client without one uses.
	retries *retrySchedule
}

var _ rivertype.WorkerMiddleware = (*Lifecycle)(nil)

// NewLifecycle returns the middleware, logging to logger and updating runs
// through db.
func NewLifecycle(logger *slog.Logger, db store.DBTX) *Lifecycle {
	q := store.New(db)
	return &Lifecycle{logger: logger, runs: q, sweeps: q, retries: newRetrySchedule(nil)}
}

// failedAttempt is how an attempt failed: what job_failed says, and the
// run keeps.
type failedAttempt struct {
	began     time.Time
	code      string
	message   string
	errorType string
	traceback obs.Traceback
	panicked  bool
	willRetry bool
	// retryAfter, if positive, is how long River waits before the next
	// attempt instead of what its retry policy says: only faults ask.
	retryAfter time.Duration
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
			final, _ := l.failed(ctx, job, args.RunID, failedAttempt{ // stale or not, the panic goes on to River
				began: began, code: store.ErrorCodePanic, message: fmt.Sprintf("panic: %v", r),
				errorType: fmt.Sprintf("%T", r), traceback: obs.PanicStack(), panicked: true,
				willRetry: job.Attempt < job.MaxAttempts,
			})
			if final {
				endOfSweepRun(ctx, l.logger, l.sweeps, args.SweepID)
			}
			l.jobs.finished(job.ID, true)
			panic(r) // River records the panic and schedules the retry
		}
	}()
	err = doInner(ctx)
	defer l.jobs.finished(job.ID, err != nil) // after the lines below: River's come later still
	var final bool
	final, err = l.ended(ctx, job, args.RunID, began, err)
	if final {
		// Once the run's end is written and logged (job_completed by the
		// worker, the others by ended).
		endOfSweepRun(ctx, l.logger, l.sweeps, args.SweepID)
	}
	return err
}

// ended records how an attempt that returned err ended, unless its worker
// succeeded, and returns the error for River and whether the attempt left
// its run final (succeeded, failed or cancelled): only such an end can
// finish the run's sweep. A retrying, interrupted or stale attempt cannot.
func (l *Lifecycle) ended(ctx context.Context, job *rivertype.JobRow, runID uuid.UUID, began time.Time, err error) (bool, error) {
	var stale *staleAttemptError
	switch {
	case err == nil: // the worker wrote the success and logged job_completed, with its result
		return true, nil
	case errors.As(err, &stale):
		l.logStale(ctx, stale)
		return false, err
	case cancelled(ctx, err):
		err = l.cancelled(ctx, job, runID, began, err)
		return !errors.As(err, &stale), err
	case interrupted(ctx, err):
		return false, l.interrupted(ctx, job, runID, began, err)
	default:
		final, staleErr := l.failed(ctx, job, runID, returnedFailure(job, began, err))
		if staleErr != nil {
			return false, staleErr
		}
		return final, err
	}
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
	attrs := make([]slog.Attr, 0, 8) // room for all: no growing
	attrs = append(attrs, slog.String(obs.KeyCorrelationID, cid))
	if args.RunID != uuid.Nil { // a backtest: the fields that say whose and what
		attrs = append(attrs,
			slog.String(obs.KeyUserID, args.UserID.String()),
			slog.String(obs.KeyStrategyID, args.StrategyID.String()),
			slog.String(obs.KeyRunID, args.RunID.String()))
	}
	if args.SweepID != uuid.Nil { // a run of a sweep: its lines are found by the sweep too
		attrs = append(attrs, slog.String(obs.KeySweepID, args.SweepID.String()))
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
		began: began, code: errorCode(err), message: err.Error(), errorType: obs.ErrorType(err),
		willRetry: !errors.As(err, &cancel) && job.Attempt < job.MaxAttempts,
	}
	if cancel != nil && cancel.Unwrap() != nil {
		f.message = cancel.Unwrap().Error() // without River's "JobCancelError: " prefix
	}
	f.retryAfter = faultRetryDelay(err)
	tb, ok := obs.StackOf(err)
	if !ok {
		tb = obs.CaptureStack(1) // from the middleware's Work
	}
	f.traceback = tb
	return f
}

// failed records a failed attempt on its run, retrying (with the instant
// River will retry) or failed, then logs job_failed; when River will not
// try again, it also records why as the job's output, which River UI shows:
// River marks a permanent failure cancelled, and it must not read as a
// person's cancel. It reports whether the run is final now: failed, or
// cancelled by a cancel its retry met. A stale attempt changes nothing and
// logs stale_attempt instead; its error is returned.
func (l *Lifecycle) failed(ctx context.Context, job *rivertype.JobRow, runID uuid.UUID, f failedAttempt) (bool, error) {
	failure := store.AttemptFailure{Code: f.code, Message: f.message, ErrorType: f.errorType}
	status := store.StatusFailed
	var stale error
	if f.willRetry {
		next := l.retries.plan(job, f.retryAfter)
		stale = l.write(ctx, runID, store.StatusRetrying, func(ctx context.Context) error {
			var err error
			status, err = l.runs.RetryAttempt(ctx, runID, job.Attempt, next, failure)
			return err
		})
		// A cancel asked meanwhile: River cancels the job rather than retry it.
		f.willRetry = status != store.StatusCancelled
	} else {
		stale = l.write(ctx, runID, store.StatusFailed, func(ctx context.Context) error {
			return l.runs.FailAttempt(ctx, runID, job.Attempt, failure)
		})
	}
	if stale != nil {
		return false, stale
	}
	level := slog.LevelError
	if f.willRetry || status == store.StatusCancelled {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.Int64(obs.KeyDurationMS, time.Since(f.began).Milliseconds()),
		slog.String(obs.KeyError, f.message),
		slog.String(obs.KeyErrorType, f.errorType),
		slog.String(obs.KeyErrorCode, f.code),
		slog.Any(obs.KeyTraceback, f.traceback),
		slog.Bool(obs.KeyWillRetry, f.willRetry),
	}
	if f.panicked {
		attrs = append(attrs, slog.Bool(obs.KeyPanic, true))
	}
	l.logger.LogAttrs(ctx, level, obs.EventJobFailed, attrs...)
	if status == store.StatusCancelled {
		recordOutput(ctx, status, store.ErrorCodeCancelled, "cancelled; its last attempt failed: "+f.message)
	} else if !f.willRetry {
		recordOutput(ctx, status, f.code, f.message)
	}
	return !f.willRetry, nil
}

// cancelled records an attempt ended by a cancel: River's JobCancel of the
// running job (the API's cancel, River UI's), or a run cancelled just as
// its job was fetched.
func (l *Lifecycle) cancelled(ctx context.Context, job *rivertype.JobRow, runID uuid.UUID, began time.Time, err error) error {
	if stale := l.write(ctx, runID, store.StatusCancelled, func(ctx context.Context) error {
		return l.runs.CancelAttempt(ctx, runID, job.Attempt, "cancelled while its attempt ran")
	}); stale != nil {
		return stale
	}
	l.logger.LogAttrs(ctx, slog.LevelInfo, obs.EventJobCancelled,
		slog.Int64(obs.KeyDurationMS, time.Since(began).Milliseconds()),
		slog.String(obs.KeyError, err.Error()))
	recordOutput(ctx, store.StatusCancelled, store.ErrorCodeCancelled, "cancelled")
	return err
}

// interrupted records an attempt a shutdown interrupted: River puts the job
// back in the queue, and the run goes back with it.
func (l *Lifecycle) interrupted(ctx context.Context, job *rivertype.JobRow, runID uuid.UUID, began time.Time, err error) error {
	if stale := l.write(ctx, runID, store.StatusQueued, func(ctx context.Context) error {
		return l.runs.InterruptAttempt(ctx, runID, job.Attempt)
	}); stale != nil {
		// Not the context's error: River would give the job back an
		// attempt number, the live attempt's job included.
		return stale
	}
	l.logger.WarnContext(ctx, obs.EventJobInterrupted,
		slog.Int64(obs.KeyDurationMS, time.Since(began).Milliseconds()),
		slog.String(obs.KeyError, err.Error()))
	return err
}

// write makes one of the lifecycle's writes to the job's run, which would
// make it status, on a context of its own: the job's may be cancelled
// already (a shutdown, a timeout), and the run must be updated all the
// same. A run that is gone, or that the attempt never started, is left as
// it is. A write refused as stale is logged (stale_attempt) and its error
// returned; other failures are logged (run_update_failed) and the attempt
// goes on as River decides.
func (l *Lifecycle) write(ctx context.Context, runID uuid.UUID, status string, write func(context.Context) error) error {
	if runID == uuid.Nil {
		return nil // no run: the job is not a backtest
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := write(wctx)
	switch {
	case err == nil, errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrAttemptNotStarted):
		return nil
	case errors.Is(err, store.ErrStaleAttempt):
		stale := &staleAttemptError{status: status, err: err}
		l.logStale(ctx, stale)
		return stale
	default:
		l.logger.ErrorContext(ctx, obs.EventRunUpdateFailed, slog.String(obs.KeyError, err.Error()),
			slog.String(obs.KeyStatus, status))
		return nil
	}
}

// logStale logs a write the store refused because the attempt is stale.
func (l *Lifecycle) logStale(ctx context.Context, stale *staleAttemptError) {
	l.logger.LogAttrs(ctx, slog.LevelWarn, obs.EventStaleAttempt,
		slog.String(obs.KeyStatus, stale.status),
		slog.String(obs.KeyError, stale.Error()))
}

// recordOutput records the run's end as the job's output.
func recordOutput(ctx context.Context, status, code, message string) {
	// It fails only outside a River worker (ctx without River's metadata),
	// or for an output over River's 32 MB, which a capped message is not.
	_ = river.RecordOutput(ctx, store.JobOutput{RunStatus: status, ErrorCode: code, Message: store.CapError(message)})
}

// cancelled reports whether the attempt ended by a cancel: River's remote
// cancel of the running job, or the worker's finding that the run was
// cancelled before it started.
func cancelled(ctx context.Context, err error) bool {
	return errors.Is(context.Cause(ctx), rivertype.ErrJobCancelledRemotely) ||
		errorCode(err) == store.ErrorCodeCancelled
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
