package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// AttemptsOfRuns returns the attempts of the runs ids, first first, by run:
// a page of runs is rendered with one query rather than one per run. A run
// with no attempt yet has no entry. The caller has checked that the runs are
// the user's.
func (q *Queries) AttemptsOfRuns(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID][]RunAttempt, error) {
	out := make(map[uuid.UUID][]RunAttempt, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.db.Query(ctx, `
		SELECT run_id, attempt, started_at, finished_at, COALESCE(outcome, ''), COALESCE(error_code, ''),
		       COALESCE(error_message, '')
		FROM backtest_run_attempts WHERE run_id = ANY($1) ORDER BY run_id, attempt`, ids)
	if err != nil {
		return nil, fmt.Errorf("list attempts of %d runs: %w", len(ids), err)
	}
	type attemptOfRun struct {
		runID uuid.UUID
		RunAttempt
	}
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (attemptOfRun, error) {
		var a attemptOfRun
		err := row.Scan(&a.runID, &a.Attempt, &a.StartedAt, &a.FinishedAt, &a.Outcome, &a.ErrorCode, &a.ErrorMessage)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list attempts of %d runs: %w", len(ids), err)
	}
	for _, a := range all {
		out[a.runID] = append(out[a.runID], a.RunAttempt)
	}
	return out, nil
}
