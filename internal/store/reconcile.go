package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Why Reconcile changed a run: what River did to its job that no worker
// reported.
const (
	// ReasonJobCancelled: the job was cancelled in River (River UI, the
	// client's JobCancel, SQL) while it was not running.
	ReasonJobCancelled = "job_cancelled"
	// ReasonJobDeleted: the job was deleted.
	ReasonJobDeleted = "job_deleted"
	// ReasonJobDiscarded: River discarded the job, its attempts used up by
	// a worker that did not report the last one (a crash).
	ReasonJobDiscarded = "job_discarded"
	// ReasonJobRescued: River rescued the job of a worker it presumed dead;
	// the attempt left open is interrupted.
	ReasonJobRescued = "job_rescued"
	// ReasonJobRetried: the job of a finished run was retried (River UI's
	// Retry, the client's JobRetry): the run goes back to the queue.
	ReasonJobRetried = "job_retried"
)

// Reconciled is a run that Reconcile brought in step with its job.
type Reconciled struct {
	RunID         uuid.UUID
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	JobID         int64
	Attempt       int
	// SweepID is the run's sweep, uuid.Nil for a run of no sweep.
	SweepID uuid.UUID
	// Status is the run's status now.
	Status string
	// Reason is one of the Reason constants.
	Reason string
	// ErrorCode, Error and ErrorType are the run's error now, if it has one:
	// its ErrorType is the Reason.
	ErrorCode string
	Error     string
	ErrorType string
}

// JobOutput is what the worker records as a job's output
// (river.RecordOutput) when its attempt ended for good without completing:
// why, in the run's words, which River UI shows. River records a permanent
// failure as a cancel, and the output tells an operator it was not a
// person's. Reconcile reads it back (reconcileCandidates) for a run whose
// worker could not write it: the JSON names here and in that SQL go
// together.
type JobOutput struct {
	RunStatus string `json:"run_status"`
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

// reconcileRow is a run whose job may have moved without it, with what
// River says of the job.
type reconcileRow struct {
	Reconciled

	runStatus   string
	jobState    string // empty when the job is gone
	jobAttempt  int
	scheduledAt time.Time
	lastError   string
	// lastErrorAttempt is the attempt of the job's last error.
	lastErrorAttempt int
	// output is the job's JobOutput: the run's status and error, in case
	// the worker could not write them to the run.
	outputStatus, outputCode, outputMessage string
}

// Reconcile brings runs in step with what River did to their jobs without
// a worker to report it, and returns the runs it changed:
//
//   - an unfinished run whose job was cancelled is cancelled (failed if
//     the worker recorded a permanent failure as the job's output);
//   - an unfinished run whose job was deleted is cancelled (job_deleted);
//   - an unfinished run whose job was discarded (a worker crashed on the
//     last attempt, outside any middleware) is failed (job_discarded);
//   - a running run whose job waits for its next attempt (River rescued
//     it from a worker presumed dead) is retrying, its attempt
//     interrupted (worker_lost);
//   - a finished run whose job waits again (retried in River UI) is queued.
//
// A run whose job is being worked is left to its worker. Rows locked by
// others are skipped until the next time.
func (q *Queries) Reconcile(ctx context.Context) ([]Reconciled, error) {
	var out []Reconciled
	err := pgx.BeginFunc(ctx, q.db, func(tx pgx.Tx) error {
		rows, err := reconcileCandidates(ctx, tx)
		if err != nil {
			return err
		}
		for _, row := range rows {
			rec, open, ok := decide(row)
			if !ok {
				continue
			}
			if err := applyReconciled(ctx, tx, rec, open, row.scheduledAt); err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile runs: %w", err)
	}
	return out, nil
}

// reconcileCandidates locks the runs that may need reconciling, with their
// jobs: unfinished runs whose job is final or gone (read through the index
// of unfinished runs), and runs running or finished whose job waits to be
// worked (read through River's index on the job's state).
func reconcileCandidates(ctx context.Context, tx pgx.Tx) ([]reconcileRow, error) {
	const fields = `r.id, r.user_id, r.strategy_id, r.correlation_id, r.river_job_id, r.attempt, r.sweep_id, r.status`
	// The job's JobOutput is in its metadata's output.
	const jobFields = `j.state::text, j.attempt, j.scheduled_at,
		COALESCE(j.errors[array_length(j.errors, 1)]->>'error', ''),
		COALESCE((j.errors[array_length(j.errors, 1)]->>'attempt')::int, 0),
		COALESCE(j.metadata->'output'->>'run_status', ''), COALESCE(j.metadata->'output'->>'error_code', ''),
		COALESCE(j.metadata->'output'->>'message', '')`
	var out []reconcileRow
	collect := func(withJob bool, sql string) error {
		rows, err := tx.Query(ctx, sql)
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (reconcileRow, error) {
			var r reconcileRow
			var sweepID *uuid.UUID
			dest := []any{&r.RunID, &r.UserID, &r.StrategyID, &r.CorrelationID, &r.JobID, &r.Attempt, &sweepID, &r.runStatus}
			if withJob {
				dest = append(dest, &r.jobState, &r.jobAttempt, &r.scheduledAt, &r.lastError, &r.lastErrorAttempt,
					&r.outputStatus, &r.outputCode, &r.outputMessage)
			}
			if err := row.Scan(dest...); err != nil {
				return r, err
			}
			if sweepID != nil {
				r.SweepID = *sweepID
			}
			return r, nil
		})
		out = append(out, got...)
		return err
	}
	if err := collect(false, `
		SELECT `+fields+` FROM backtest_runs r
		WHERE r.status IN ('queued', 'running', 'retrying')
		  AND NOT EXISTS (SELECT 1 FROM river_job j WHERE j.id = r.river_job_id)
		FOR UPDATE OF r SKIP LOCKED`); err != nil {
		return nil, fmt.Errorf("runs whose job is gone: %w", err)
	}
	if err := collect(true, `
		SELECT `+fields+`, `+jobFields+` FROM backtest_runs r
		JOIN river_job j ON j.id = r.river_job_id
		WHERE r.status IN ('queued', 'running', 'retrying') AND j.state IN ('cancelled', 'discarded')
		FOR UPDATE OF r, j SKIP LOCKED`); err != nil {
		return nil, fmt.Errorf("runs whose job ended: %w", err)
	}
	if err := collect(true, `
		SELECT `+fields+`, `+jobFields+` FROM river_job j
		JOIN backtest_runs r ON r.river_job_id = j.id
		WHERE j.state IN ('available', 'scheduled', 'retryable') AND j.kind = 'backtest'
		  AND r.status IN ('running', 'succeeded', 'failed', 'cancelled')
		FOR UPDATE OF r, j SKIP LOCKED`); err != nil {
		return nil, fmt.Errorf("runs whose job waits: %w", err)
	}
	return out, nil
}

// openAttempt is how an attempt left open by its worker is closed.
type openAttempt struct {
	outcome, code, message string
}

// decide says what becomes of a candidate run and of the attempt its
// worker left open, and whether anything changes.
func decide(row reconcileRow) (Reconciled, openAttempt, bool) {
	lost := openAttempt{outcome: OutcomeInterrupted, code: ErrorCodeWorkerLost, message: workerLostMessage}
	rec := row.Reconciled
	failedByWorker := row.outputStatus == StatusFailed && row.outputCode != ""
	switch {
	case row.jobState == "":
		rec.Status, rec.Reason = StatusCancelled, ReasonJobDeleted
		rec.ErrorCode, rec.Error = ErrorCodeJobDeleted, "its River job was deleted"
	case row.jobState == "cancelled" && failedByWorker:
		rec.Status, rec.Reason = StatusFailed, ReasonJobCancelled
		rec.ErrorCode, rec.Error = row.outputCode, row.outputMessage
		lost = openAttempt{outcome: OutcomeFailed, code: row.outputCode, message: row.outputMessage}
	case row.jobState == "cancelled":
		rec.Status, rec.Reason = StatusCancelled, ReasonJobCancelled
		rec.ErrorCode, rec.Error = ErrorCodeCancelled, "its River job was cancelled"
	case row.jobState == "discarded":
		rec.Status, rec.Reason = StatusFailed, ReasonJobDiscarded
		rec.ErrorCode, rec.Error = ErrorCodeJobDiscarded, row.lastError
		if failedByWorker {
			rec.ErrorCode, rec.Error = row.outputCode, row.outputMessage
			lost = openAttempt{outcome: OutcomeFailed, code: row.outputCode, message: row.outputMessage}
		}
		if rec.Error == "" {
			rec.Error = "its River job was discarded"
		}
	case row.runStatus == StatusRunning && row.lastErrorAttempt >= row.Attempt && row.Attempt > 0:
		// The attempt's error is on the job, not on the run: its worker
		// never reported it.
		rec.Status, rec.Reason = StatusRetrying, ReasonJobRescued
		rec.ErrorCode, rec.Error = ErrorCodeWorkerLost, row.lastError
	case row.runStatus == StatusRunning:
		// A shutdown's interruption that the worker could not write: River
		// took the attempt back.
		rec.Status, rec.Reason, rec.Attempt = StatusQueued, ReasonJobRescued, row.jobAttempt
	case row.runStatus == StatusSucceeded || row.runStatus == StatusFailed || row.runStatus == StatusCancelled:
		rec.Status, rec.Reason = StatusQueued, ReasonJobRetried
	default:
		return Reconciled{}, openAttempt{}, false
	}
	if rec.ErrorCode != "" {
		// What River did is the error's type, which no Go error has here.
		rec.ErrorType = rec.Reason
	}
	return rec, lost, true
}

// applyReconciled writes rec to its run, and closes the attempt the run's
// worker left open as open says. A run waiting for its job gets the
// instant River scheduled it, when it is to come.
func applyReconciled(ctx context.Context, tx pgx.Tx, rec Reconciled, open openAttempt, scheduledAt time.Time) error {
	var next *time.Time
	if rec.Status == StatusRetrying || rec.Status == StatusQueued && scheduledAt.After(time.Now()) {
		next = &scheduledAt
	}
	tag, err := tx.Exec(ctx, `
		UPDATE backtest_runs
		SET status = $2, attempt = $3, error_code = NULLIF($4, ''), error_message = NULLIF($5, ''),
		    error_type = NULLIF($6, ''), next_attempt_at = $7, result = NULL,
		    progress_pct = CASE WHEN $2 IN ('queued', 'retrying') THEN 0 ELSE progress_pct END,
		    finished_at = CASE WHEN $2 IN ('failed', 'cancelled') THEN now() END,
		    cancel_requested_at = CASE WHEN $2 = 'queued' THEN NULL ELSE cancel_requested_at END,
		    updated_at = now()
		WHERE id = $1`,
		rec.RunID, rec.Status, rec.Attempt, rec.ErrorCode, capText(rec.Error, MaxErrorBytes), rec.ErrorType, next)
	if err := affectedOne(tag, err, "reconcile run %s", rec.RunID); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE backtest_run_attempts
		SET finished_at = now(), outcome = $2, error_code = NULLIF($3, ''), error_message = NULLIF($4, '')
		WHERE run_id = $1 AND outcome IS NULL`, rec.RunID, open.outcome, open.code, capText(open.message, MaxErrorBytes)); err != nil {
		return fmt.Errorf("close the open attempt of run %s: %w", rec.RunID, err)
	}
	return nil
}
