package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// StrategyInUseError is returned by DeleteStrategy, having changed nothing,
// when the strategy still has runs queued, running or retrying.
type StrategyInUseError struct {
	// Unfinished counts those runs.
	Unfinished int
}

func (e *StrategyInUseError) Error() string {
	return fmt.Sprintf("the strategy has %d unfinished runs", e.Unfinished)
}

// lockStrategySQL locks a live strategy of the user and counts its
// unfinished runs, from the index that holds only those.
const lockStrategySQL = `
	SELECT (SELECT count(*) FROM backtest_runs
	        WHERE strategy_id = s.id AND status IN ('queued', 'running', 'retrying'))
	FROM strategies s WHERE s.id = $1 AND s.user_id = $2 AND s.deleted_at IS NULL
	FOR UPDATE OF s`

// DeleteStrategy deletes userID's strategy id, or returns ErrNotFound (an
// unknown, another user's or an already deleted strategy), a
// *StrategyInUseError, or ErrUserGone.
//
// The strategy is only marked deleted: it leaves the API, and new runs can
// no longer use it, but its finished runs keep their strategy and stay
// readable, as the lasting record they are.
//
// The user's row is locked first, as an enqueue locks it before inserting
// a run: a backtest enqueued concurrently either commits before, and its run
// is counted here, or after, and finds the strategy gone.
func (q *Queries) DeleteStrategy(ctx context.Context, userID, id uuid.UUID) error {
	err := q.InTx(ctx, func(tx pgx.Tx) error {
		qtx := New(tx)
		if err := qtx.LockUser(ctx, userID); err != nil {
			return err
		}
		var unfinished int
		err := tx.QueryRow(ctx, lockStrategySQL, id, userID).Scan(&unfinished)
		if err != nil {
			return notFound(err)
		}
		if unfinished > 0 {
			return &StrategyInUseError{Unfinished: unfinished}
		}
		_, err = tx.Exec(ctx, `UPDATE strategies SET deleted_at = now() WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete strategy %s: %w", id, err)
	}
	return nil
}
