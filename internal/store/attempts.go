package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Outcomes of an attempt, as stored in backtest_run_attempts.outcome; an
// attempt still going has none.
const (
	OutcomeSucceeded   = "succeeded"
	OutcomeFailed      = "failed"
	OutcomeInterrupted = "interrupted"
	OutcomeCancelled   = "cancelled"
)

// RunAttempt is one attempt of a run: when River's attempt number began and
// ended, and how.
type RunAttempt struct {
	Attempt      int
	StartedAt    time.Time
	FinishedAt   *time.Time
	Outcome      string // empty while the attempt is going
	ErrorCode    string
	ErrorMessage string
}

// RunAttempts returns the attempts of run id, first first. The caller has
// checked that the run is the user's.
func (q *Queries) RunAttempts(ctx context.Context, id uuid.UUID) ([]RunAttempt, error) {
	rows, err := q.db.Query(ctx, `
		SELECT attempt, started_at, finished_at, COALESCE(outcome, ''), COALESCE(error_code, ''),
		       COALESCE(error_message, '')
		FROM backtest_run_attempts WHERE run_id = $1 ORDER BY attempt`, id)
	if err != nil {
		return nil, fmt.Errorf("list attempts of run %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunAttempt, error) {
		var a RunAttempt
		err := row.Scan(&a.Attempt, &a.StartedAt, &a.FinishedAt, &a.Outcome, &a.ErrorCode, &a.ErrorMessage)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list attempts of run %s: %w", id, err)
	}
	return out, nil
}
