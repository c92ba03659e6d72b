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

// MaxErrorBytes bounds the error text kept on a run: the full text, if it
// is longer, is in the log line of the failure.
const MaxErrorBytes = 4096

// CapError cuts an error's text as a run keeps it: to MaxErrorBytes, the
// cut marked.
func CapError(s string) string { return capText(s, MaxErrorBytes) }

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

// scanDest returns the destinations of runColumns in r, in their order: a
// statement that selects more than a run's columns appends its own.
func (r *Run) scanDest() []any {
	return []any{
		&r.ID, &r.UserID, &r.StrategyID, &r.CorrelationID, &r.JobID, &r.Symbol, &r.Start, &r.End,
		&r.InitialCash, &r.Status, &r.ProgressPct, &r.Attempt, &r.Result, &r.ErrorMessage, &r.ErrorType,
		&r.ErrorCode, &r.NextAttemptAt, &r.CancelRequestedAt, &r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.UpdatedAt,
	}
}

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(r.scanDest()...)
	return r, err
}
