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

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// runWrites is what the lifecycle does to a run whose job did not complete.
type runWrites interface {
	FailRun(ctx context.Context, id uuid.UUID, attempt int, message, errorType string) error
	RequeueRun(ctx context.Context, id uuid.UUID) error
}

// Lifecycle is River worker middleware that binds a job's fields to its
// context, so every line logged while working it carries them, and logs the
// job's start and end. When a job will not be tried again it marks the run
// failed; when a shutdown interrupts it, it puts the run back in the queue.
//
// It must be the first middleware: it binds the fields before anything that
// might fail, and it recovers panics before River does, since River's own
// recovery happens outside all middleware and knows nothing of the run.
type Lifecycle struct {
	river.MiddlewareDefaults

	logger *slog.Logger
	runs   runWrites
}

var _ rivertype.WorkerMiddleware = (*Lifecycle)(nil)

// NewLifecycle returns the middleware, logging to logger and updating runs
// through db.
func NewLifecycle(logger *slog.Logger, db store.DBTX) *Lifecycle {
	return &Lifecycle{logger: logger, runs: store.New(db)}
}

// jobFields are the arguments every job kind of this service carries.
type jobFields struct {
	RunID         string `json:"run_id"`
	CorrelationID string `json:"correlation_id"`
	UserID        string `json:"user_id"`
	StrategyID    string `json:"strategy_id"`
}

// readJobFields reads the fields every backtest job carries. Args that do
// not decode leave them empty: River's own decoding reports those.
func readJobFields(args []byte) jobFields {
	var f jobFields
	_ = json.Unmarshal(args, &f)
	return f
}

// Work binds, logs and runs one attempt of job.
func (l *Lifecycle) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) (err error) {
	f := readJobFields(job.EncodedArgs)
	if f.CorrelationID == "" {
		// A job no request created (a periodic one) gets an ID of its own,
		// so its lines can be followed like any other.
		f.CorrelationID = obs.NewCorrelationID()
	}
	attrs := make([]slog.Attr, 0, 7) // room for all: no growing
	attrs = append(attrs, slog.String(obs.KeyCorrelationID, f.CorrelationID))
	if f.RunID != "" { // a backtest: the fields that say whose and what
		attrs = append(attrs,
			slog.String(obs.KeyUserID, f.UserID),
			slog.String(obs.KeyStrategyID, f.StrategyID),
			slog.String(obs.KeyRunID, f.RunID))
	}
	ctx = obs.WithAttrs(ctx, append(attrs,
		slog.Int64(obs.KeyJobID, job.ID),
		slog.String(obs.KeyJobKind, job.Kind),
		slog.Int(obs.KeyAttempt, job.Attempt))...)
	lifecycleLevel := slog.LevelInfo
	if maintenanceKinds[job.Kind] {
		lifecycleLevel = slog.LevelDebug
	}
	out := &outcome{}
	ctx = context.WithValue(ctx, outcomeKey{}, out)

	start := time.Now()
	var wait time.Duration
	if job.AttemptedAt != nil {
		wait = job.AttemptedAt.Sub(job.ScheduledAt)
	}
	l.logger.LogAttrs(ctx, lifecycleLevel, obs.EventJobStarted,
		slog.Int64(obs.KeyQueueWaitMS, max(wait.Milliseconds(), 0)),
		slog.Int(obs.KeyMaxAttempts, job.MaxAttempts))

	defer func() {
		if r := recover(); r != nil {
			tb := obs.PanicStack()
			l.failed(ctx, job, f, start, fmt.Sprintf("panic: %v", r), fmt.Sprintf("%T", r), tb, true, job.Attempt < job.MaxAttempts)
			panic(r) // River records the panic and schedules the retry
		}
	}()
	err = doInner(ctx)
	switch {
	case err == nil:
		l.logger.LogAttrs(ctx, lifecycleLevel, obs.EventJobCompleted, append([]slog.Attr{
			slog.Int64(obs.KeyDurationMS, time.Since(start).Milliseconds()),
		}, out.attrs...)...)
	case interrupted(ctx, err):
		l.logger.WarnContext(ctx, obs.EventJobInterrupted,
			slog.Int64(obs.KeyDurationMS, time.Since(start).Milliseconds()),
			slog.String(obs.KeyError, err.Error()))
		l.updateRun(ctx, f, store.StatusQueued, l.runs.RequeueRun)
	default:
		var cancel *rivertype.JobCancelError
		willRetry := !errors.As(err, &cancel) && job.Attempt < job.MaxAttempts
		tb, ok := obs.StackOf(err)
		if !ok {
			tb = obs.CaptureStack(0)
		}
		msg := err.Error()
		if cancel != nil && cancel.Unwrap() != nil {
			msg = cancel.Unwrap().Error() // without River's "JobCancelError: " prefix
		}
		l.failed(ctx, job, f, start, msg, obs.ErrorType(err), tb, false, willRetry)
	}
	return err
}

// failed logs job_failed and, when River will not try again, marks the run
// failed with the error (never its stack: that is for the logs).
func (l *Lifecycle) failed(ctx context.Context, job *rivertype.JobRow, f jobFields, start time.Time,
	msg, errType string, tb obs.Traceback, panicked, willRetry bool,
) {
	level := slog.LevelError
	if willRetry {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{
		slog.Int64(obs.KeyDurationMS, time.Since(start).Milliseconds()),
		slog.String(obs.KeyError, msg),
		slog.String(obs.KeyErrorType, errType),
		slog.Any(obs.KeyTraceback, tb),
		slog.Bool(obs.KeyWillRetry, willRetry),
	}
	if panicked {
		attrs = append(attrs, slog.Bool(obs.KeyPanic, true))
	}
	l.logger.LogAttrs(ctx, level, obs.EventJobFailed, attrs...)
	if !willRetry {
		l.updateRun(ctx, f, store.StatusFailed, func(ctx context.Context, id uuid.UUID) error {
			return l.runs.FailRun(ctx, id, job.Attempt, msg, errType)
		})
	}
}

// updateRun writes the job's run to status, on a context of its own: the
// job's may be cancelled already (a shutdown, a timeout), and the run must
// be updated all the same. A run that is gone or already finished is left
// as it is.
func (l *Lifecycle) updateRun(ctx context.Context, f jobFields, status string, write func(context.Context, uuid.UUID) error) {
	id, err := uuid.Parse(f.RunID)
	if err != nil {
		return // no run: the args were not a backtest's
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := write(wctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
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

// outcome carries what the worker wants on the job_completed line back to
// the middleware that writes it.
type outcome struct {
	attrs []slog.Attr
}

type outcomeKey struct{}

func setResult(ctx context.Context, r backtest.Result) {
	if out, ok := ctx.Value(outcomeKey{}).(*outcome); ok {
		out.attrs = append(out.attrs,
			slog.Int(obs.KeyBars, r.Bars),
			slog.Float64(obs.KeyFinalEquity, r.FinalEquity),
			slog.Float64(obs.KeyTotalReturn, r.TotalReturn),
			slog.Float64(obs.KeyCAGR, r.CAGR),
			slog.Float64(obs.KeyMaxDrawdown, r.MaxDrawdown),
			slog.Float64(obs.KeySharpe, r.Sharpe),
			slog.Int(obs.KeyTrades, r.Trades),
		)
	}
}
