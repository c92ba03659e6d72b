package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// MaintenanceQueue runs the service's own periodic jobs.
const MaintenanceQueue = "maintenance"

// ReconcileArgs are the arguments of the periodic reconciliation job.
type ReconcileArgs struct{}

// Kind is the River job kind of reconciliations.
func (ReconcileArgs) Kind() string { return "reconcile_runs" }

// InsertOpts puts reconciliations on the maintenance queue; one attempt is
// enough, the next period tries again.
func (ReconcileArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: MaintenanceQueue, MaxAttempts: 1}
}

// lifecycleLevel is the level of a job's job_started and job_completed:
// debug for the maintenance kinds, which run every minute and of which only
// what they find is news.
func lifecycleLevel(kind string) slog.Level {
	if kind == (ReconcileArgs{}).Kind() || kind == (SweepIdempotencyKeysArgs{}).Kind() {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// ReconcileWorker brings runs in step with what River did to their jobs
// without a worker to report it (store.Reconcile): River rescues the jobs
// of crashed workers and discards them when their attempts are used up,
// and River UI, River's client or an operator's SQL cancel, delete and
// retry jobs, all outside any middleware.
type ReconcileWorker struct {
	river.WorkerDefaults[ReconcileArgs]

	q      *store.Queries
	logger *slog.Logger
}

// NewReconcileWorker returns the worker, using db and logging to logger.
func NewReconcileWorker(db store.DBTX, logger *slog.Logger) *ReconcileWorker {
	return &ReconcileWorker{q: store.New(db), logger: logger}
}

// Timeout bounds one reconciliation.
func (w *ReconcileWorker) Timeout(*river.Job[ReconcileArgs]) time.Duration { return time.Minute }

// Work reconciles once, logging each run it changed with that run's own
// fields, so that it is found by its correlation ID: run_failed (error)
// for a run failed, which no one saw fail; run_reconciled for the others,
// at warn for a worker lost, at info for what a person did in River. Then
// job_completed.
func (w *ReconcileWorker) Work(ctx context.Context, job *river.Job[ReconcileArgs]) error {
	began := time.Now()
	runs, err := w.q.Reconcile(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	for _, r := range runs {
		bound := []slog.Attr{
			slog.String(obs.KeyCorrelationID, r.CorrelationID),
			slog.String(obs.KeyUserID, r.UserID.String()),
			slog.String(obs.KeyStrategyID, r.StrategyID.String()),
			slog.String(obs.KeyRunID, r.RunID.String()),
			slog.Int64(obs.KeyJobID, r.JobID),
		}
		if r.SweepID != uuid.Nil { // found by the sweep too, like its worker's lines
			bound = append(bound, slog.String(obs.KeySweepID, r.SweepID.String()))
		}
		rctx := obs.WithAttrs(obs.ResetAttrs(ctx), bound...)
		if r.Status == store.StatusFailed {
			w.logger.ErrorContext(rctx, obs.EventRunFailed,
				slog.Int(obs.KeyAttempt, r.Attempt),
				slog.String(obs.KeyError, r.Error),
				slog.String(obs.KeyErrorType, r.ErrorType),
				slog.String(obs.KeyErrorCode, r.ErrorCode))
			continue
		}
		level := slog.LevelInfo
		if r.Reason == store.ReasonJobRescued {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{
			slog.Int(obs.KeyAttempt, r.Attempt),
			slog.String(obs.KeyStatus, r.Status),
			slog.String(obs.KeyRiverAction, r.Reason),
		}
		if r.ErrorCode != "" {
			attrs = append(attrs, slog.String(obs.KeyErrorCode, r.ErrorCode), slog.String(obs.KeyError, r.Error))
		}
		w.logger.LogAttrs(rctx, level, obs.EventRunReconciled, attrs...)
	}
	// After the runs' changes committed: a sweep whose last run the
	// reconciliation ended is finished here, as is one whose finisher
	// crashed before marking it.
	if err := finishSettledSweeps(ctx, w.logger, w.q); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	w.logger.LogAttrs(ctx, lifecycleLevel(job.Kind), obs.EventJobCompleted,
		slog.Int64(obs.KeyDurationMS, time.Since(began).Milliseconds()))
	return nil
}
