package store

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/backtestd/backtestd/internal/obs"
)

// SweepFinished is a sweep that FinishSweep or FinishSettledSweeps marked
// finished: what its sweep_finished line says.
type SweepFinished struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	CorrelationID string
	// Succeeded, Failed and Cancelled count its runs by final status; they
	// add up to its run count.
	Succeeded, Failed, Cancelled int
	CreatedAt                    time.Time
	FinishedAt                   time.Time
}

// Log writes the sweep's sweep_finished line (EventSweepFinished) to
// logger: once per sweep, by whoever marked it (FinishSweep,
// FinishSettledSweeps).
func (f SweepFinished) Log(ctx context.Context, logger *slog.Logger) {
	logger.LogAttrs(f.logContext(ctx), slog.LevelInfo, obs.EventSweepFinished,
		slog.Int(obs.KeySucceededCount, f.Succeeded),
		slog.Int(obs.KeyFailedCount, f.Failed),
		slog.Int(obs.KeyCancelledCount, f.Cancelled),
		slog.Int64(obs.KeyDurationMS, max(f.FinishedAt.Sub(f.CreatedAt).Milliseconds(), 0)))
}

// logContext returns ctx with the sweep's fields bound instead of ctx's own:
// the line is the sweep's, whoever writes it (the worker that ended its
// last run, the reconciliation, the server's cancel with a correlation ID
// of its own), and is found by the sweep's correlation ID like its runs'
// lines.
func (f SweepFinished) logContext(ctx context.Context) context.Context {
	return obs.WithAttrs(obs.ResetAttrs(ctx),
		slog.String(obs.KeyCorrelationID, f.CorrelationID),
		slog.String(obs.KeyUserID, f.UserID.String()),
		slog.String(obs.KeySweepID, f.ID.String()))
}

// finishSweepSQL marks finished the sweeps of ids (one, or the candidates
// of FinishSettledSweeps) whose runs are all final, and counts them.
//
// Exactly once: it runs after the write that made a run final has
// committed, so whichever run commits last finds no unfinished run (two
// finishing together may both find none); the row lock that the UPDATE
// takes, and PostgreSQL's recheck of finished_at IS NULL on the locked row,
// let only the first of those mark it, and only a marked sweep is logged.
// A sweep with no run never finishes (it cannot exist: run_count > 0, and
// its runs are inserted with it).
const finishSweepSQL = `
	WITH marked AS (
	    UPDATE sweeps s SET finished_at = now()
	    WHERE s.id = ANY($1::uuid[]) AND s.finished_at IS NULL
	      AND EXISTS (SELECT 1 FROM backtest_runs r WHERE r.sweep_id = s.id)
	      AND NOT EXISTS (
	          SELECT 1 FROM backtest_runs r
	          WHERE r.sweep_id = s.id AND r.status IN ('queued', 'running', 'retrying'))
	    RETURNING s.id, s.user_id, s.correlation_id, s.created_at, s.finished_at
	)
	SELECT m.id, m.user_id, m.correlation_id, m.created_at, m.finished_at,
	       count(*) FILTER (WHERE r.status = 'succeeded'),
	       count(*) FILTER (WHERE r.status = 'failed'),
	       count(*) FILTER (WHERE r.status = 'cancelled')
	FROM marked m JOIN backtest_runs r ON r.sweep_id = m.id
	GROUP BY m.id, m.user_id, m.correlation_id, m.created_at, m.finished_at
	ORDER BY m.created_at, m.id`

// FinishSweep marks sweep id finished if all its runs are final and no one
// marked it before, and returns it with ok true: the caller then logs its
// sweep_finished line (SweepFinished.Log), once for the sweep. Call it
// after the write that made one of its runs final has committed (a
// worker's end of an attempt, the API's cancel): before, the run would
// still count as unfinished. ok is false when the sweep has runs still to
// finish, was already marked, or does not exist.
func (q *Queries) FinishSweep(ctx context.Context, id uuid.UUID) (SweepFinished, bool, error) {
	got, err := q.finishSweeps(ctx, []uuid.UUID{id})
	if err != nil {
		return SweepFinished{}, false, fmt.Errorf("finish sweep %s: %w", id, err)
	}
	if len(got) == 0 {
		return SweepFinished{}, false, nil
	}
	return got[0], true, nil
}

// FinishSettledSweeps marks finished every sweep whose runs are all final
// but which no one marked (its last run's finisher crashed before, or the
// reconciliation ended its last run), and returns them: the
// reconciliation's catch-all, so that no sweep stays unfinished for good.
func (q *Queries) FinishSettledSweeps(ctx context.Context) ([]SweepFinished, error) {
	rows, err := q.db.Query(ctx, `SELECT id FROM sweeps WHERE finished_at IS NULL`)
	if err != nil {
		return nil, fmt.Errorf("list unfinished sweeps: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("list unfinished sweeps: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	got, err := q.finishSweeps(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("finish settled sweeps: %w", err)
	}
	return got, nil
}

func (q *Queries) finishSweeps(ctx context.Context, ids []uuid.UUID) ([]SweepFinished, error) {
	rows, err := q.db.Query(ctx, finishSweepSQL, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (SweepFinished, error) {
		var f SweepFinished
		err := row.Scan(&f.ID, &f.UserID, &f.CorrelationID, &f.CreatedAt, &f.FinishedAt, &f.Succeeded, &f.Failed, &f.Cancelled)
		return f, err
	})
}
