package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Run statuses, as stored in backtest_runs.status.
const (
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusRetrying  = "retrying"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Run is one backtest of a strategy over a symbol and a date range.
type Run struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	JobID         int64
	Symbol        string
	Start         time.Time
	End           time.Time
	InitialCash   float64
	Status        string
	ProgressPct   int
	Attempt       int
	Result        json.RawMessage // nil until the run succeeds
	ErrorMessage  string
	ErrorType     string
	// ErrorCode is the failure's code from the documented list, for API
	// clients; ErrorType is the Go type, for developers.
	ErrorCode string
	// NextAttemptAt is when River runs the next attempt of a retrying run.
	NextAttemptAt *time.Time
	// CancelRequestedAt is when a cancel was asked of a run that was running.
	CancelRequestedAt *time.Time
	CreatedAt         time.Time
	StartedAt         *time.Time
	FinishedAt        *time.Time
	UpdatedAt         time.Time
}

// NewRun is what InsertRun needs. The ID is chosen by the caller so that the
// River job, inserted first in the same transaction, can carry it.
type NewRun struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	JobID         int64
	Symbol        string
	Start         time.Time
	End           time.Time
	InitialCash   float64
}

// InsertRun inserts a queued run. It returns ErrNotFound, inserting nothing,
// when the strategy does not exist, was deleted, or belongs to another user.
func (q *Queries) InsertRun(ctx context.Context, nr NewRun) (Run, error) {
	row := q.db.QueryRow(ctx, `
		INSERT INTO backtest_runs
		    (id, user_id, strategy_id, correlation_id, river_job_id, symbol, start_date, end_date, initial_cash)
		SELECT $1, s.user_id, s.id, $4, $5, $6, $7, $8, $9
		FROM strategies s WHERE s.id = $3 AND s.user_id = $2 AND s.deleted_at IS NULL
		RETURNING `+runColumns,
		nr.ID, nr.UserID, nr.StrategyID, nr.CorrelationID, nr.JobID, nr.Symbol, nr.Start, nr.End, nr.InitialCash)
	r, err := scanRun(row)
	if err != nil {
		return Run{}, fmt.Errorf("insert run of strategy %s: %w", nr.StrategyID, notFound(err))
	}
	return r, nil
}

// Run returns userID's run id, or ErrNotFound.
func (q *Queries) Run(ctx context.Context, userID, id uuid.UUID) (Run, error) {
	r, err := scanRun(q.db.QueryRow(ctx,
		`SELECT `+runColumns+` FROM backtest_runs WHERE id = $1 AND user_id = $2`, id, userID))
	if err != nil {
		return Run{}, fmt.Errorf("load run %s: %w", id, notFound(err))
	}
	return r, nil
}

// RunForWork returns run id for the worker, whoever owns it.
func (q *Queries) RunForWork(ctx context.Context, id uuid.UUID) (Run, error) {
	r, err := scanRun(q.db.QueryRow(ctx, `SELECT `+runColumns+` FROM backtest_runs WHERE id = $1`, id))
	if err != nil {
		return Run{}, fmt.Errorf("load run %s: %w", id, notFound(err))
	}
	return r, nil
}

// StartRun marks a run running for this attempt, clearing the progress and
// error of an earlier one. It returns ErrNotFound when the run is missing or
// already finished, so that a stray job cannot reopen it.
func (q *Queries) StartRun(ctx context.Context, id uuid.UUID, attempt int) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs
		SET status = 'running', attempt = $2, progress_pct = 0, error_message = NULL, error_type = NULL,
		    started_at = COALESCE(started_at, now()), updated_at = now()
		WHERE id = $1 AND status IN ('queued', 'running')`, id, attempt)
	return affectedOne(tag, err, "start run %s", id)
}

// SetProgress records a checkpoint of a running run.
func (q *Queries) SetProgress(ctx context.Context, id uuid.UUID, pct int) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs SET progress_pct = $2, updated_at = now()
		WHERE id = $1 AND status = 'running'`, id, pct)
	return affectedOne(tag, err, "set progress of run %s", id)
}

// CompleteRun stores a running run's result and marks it succeeded.
func (q *Queries) CompleteRun(ctx context.Context, id uuid.UUID, result json.RawMessage) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs
		SET status = 'succeeded', progress_pct = 100, result = $2, finished_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'running'`, id, result)
	return affectedOne(tag, err, "complete run %s", id)
}

// RequeueRun puts a running run back to queued: its job was interrupted by
// a shutdown and River will run it again.
func (q *Queries) RequeueRun(ctx context.Context, id uuid.UUID) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs SET status = 'queued', progress_pct = 0, updated_at = now()
		WHERE id = $1 AND status = 'running'`, id)
	return affectedOne(tag, err, "requeue run %s", id)
}

// FailRun marks a queued or running run failed with its error. A finished
// run keeps its outcome: a success was committed with its result, and a
// failure keeps the error that ended it. It returns ErrNotFound then.
func (q *Queries) FailRun(ctx context.Context, id uuid.UUID, attempt int, message, errorType string) error {
	message = capText(message, MaxErrorBytes)
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs
		SET status = 'failed', attempt = GREATEST(attempt, $2), error_message = $3, error_type = $4,
		    finished_at = now(), updated_at = now()
		WHERE id = $1 AND status IN ('queued', 'running')`, id, attempt, message, errorType)
	return affectedOne(tag, err, "fail run %s", id)
}

// Reconciled is a run that Reconcile marked failed.
type Reconciled struct {
	RunID         uuid.UUID
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	JobID         int64
	Attempt       int
	Error         string
	ErrorType     string
}

// Reconcile marks failed the runs still queued or running whose River job
// will never finish them: discarded (attempts used up, say by a worker that
// kept crashing: River's rescuer works around the job's middleware, so
// nothing else marks the run), cancelled, or gone. The error is the job's
// last one.
func (q *Queries) Reconcile(ctx context.Context) ([]Reconciled, error) {
	rows, err := q.db.Query(ctx, `
		WITH ended AS (
		    SELECT r.id, COALESCE(j.attempt, r.attempt) AS attempt,
		           'job_' || COALESCE(j.state::text, 'lost') AS error_type,
		           COALESCE(j.errors[array_length(j.errors, 1)]->>'error',
		                    CASE WHEN j.id IS NULL THEN 'the job was lost' ELSE 'the job was ' || j.state END) AS message
		    FROM backtest_runs r
		    LEFT JOIN river_job j ON j.id = r.river_job_id
		    WHERE r.status IN ('queued', 'running')
		      AND (j.id IS NULL OR j.state IN ('discarded', 'cancelled'))
		    FOR UPDATE OF r SKIP LOCKED
		)
		UPDATE backtest_runs r
		SET status = 'failed', attempt = ended.attempt, error_message = ended.message, error_type = ended.error_type,
		    finished_at = now(), updated_at = now()
		FROM ended WHERE r.id = ended.id
		RETURNING r.id, r.user_id, r.strategy_id, r.correlation_id, r.river_job_id, r.attempt, r.error_message, r.error_type`)
	if err != nil {
		return nil, fmt.Errorf("reconcile runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reconciled, error) {
		var rec Reconciled
		err := row.Scan(&rec.RunID, &rec.UserID, &rec.StrategyID, &rec.CorrelationID, &rec.JobID, &rec.Attempt,
			&rec.Error, &rec.ErrorType)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile runs: %w", err)
	}
	return out, nil
}

// MaxErrorBytes bounds the error text kept on a run: the full text, if it
// is longer, is in the log line of the failure.
const MaxErrorBytes = 4096

// capText cuts s to at most n bytes on a character boundary, marking the cut.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const marker = "...[truncated]"
	cut := n - len(marker)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker
}

const runColumns = `id, user_id, strategy_id, correlation_id, river_job_id, symbol, start_date, end_date,
	initial_cash, status, progress_pct, attempt, result, COALESCE(error_message, ''), COALESCE(error_type, ''),
	COALESCE(error_code, ''), next_attempt_at, cancel_requested_at, created_at, started_at, finished_at, updated_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.UserID, &r.StrategyID, &r.CorrelationID, &r.JobID, &r.Symbol, &r.Start, &r.End,
		&r.InitialCash, &r.Status, &r.ProgressPct, &r.Attempt, &r.Result, &r.ErrorMessage, &r.ErrorType,
		&r.ErrorCode, &r.NextAttemptAt, &r.CancelRequestedAt, &r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.UpdatedAt)
	return r, err
}
