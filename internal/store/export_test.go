package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"
)

// The queries of the lists and of a strategy's deletion, for the test that
// shows which index serves each.
var (
	ListRunsQuery       = listRunsQuery
	ListStrategiesQuery = listStrategiesQuery
	LockStrategySQL     = lockStrategySQL
)

// CompleteAttempt stores attempt's result and marks the run succeeded, if
// it is still running at that attempt: CompleteWork without River's job,
// for the tests of a run's states that have no job running at the attempt.
func (q *Queries) CompleteAttempt(ctx context.Context, id uuid.UUID, attempt int, result json.RawMessage) error {
	_, err := q.endAttempt(ctx, "complete", id, attempt, OutcomeSucceeded, AttemptFailure{},
		`status = 'succeeded', progress_pct = 100, result = $6, finished_at = now()`, result)
	return err
}

// RunForWork returns run id, whoever owns it, as the tests read a run back.
func (q *Queries) RunForWork(ctx context.Context, id uuid.UUID) (Run, error) {
	r, err := scanRun(q.db.QueryRow(ctx, `SELECT `+runColumns+` FROM backtest_runs WHERE id = $1`, id))
	if err != nil {
		return Run{}, fmt.Errorf("load run %s: %w", id, notFound(err))
	}
	return r, nil
}
