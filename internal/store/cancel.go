package store

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// LockRun returns userID's run id, locked until the transaction ends, or
// ErrNotFound. A cancel holds the lock while it asks River about the job, so
// that no worker write to the run lands between the two.
func (q *Queries) LockRun(ctx context.Context, userID, id uuid.UUID) (Run, error) {
	r, err := scanRun(q.db.QueryRow(ctx,
		`SELECT `+runColumns+` FROM backtest_runs WHERE id = $1 AND user_id = $2 FOR UPDATE`, id, userID))
	if err != nil {
		return Run{}, fmt.Errorf("lock run %s: %w", id, notFound(err))
	}
	return r, nil
}

// cancelledSet is the SET clause of a run cancelled at once, with error
// code $2 and message $3: the time of a retry still to come no longer
// means anything.
const cancelledSet = `status = 'cancelled', error_code = $2, error_message = $3, error_type = NULL,
	next_attempt_at = NULL, finished_at = now(), updated_at = now()`

// cancelRunsSQL cancels at once those of the runs $1 (an array of IDs) that
// are unfinished, with error code $2 and message $3.
const cancelRunsSQL = `UPDATE backtest_runs SET ` + cancelledSet + `
	WHERE id = ANY($1) AND status IN ('queued', 'running', 'retrying')`

// requestCancelSQL records that a cancel was asked of those of the runs $1
// (an array of IDs) that are unfinished, keeping the time of a first
// request.
const requestCancelSQL = `UPDATE backtest_runs
	SET cancel_requested_at = COALESCE(cancel_requested_at, now()), updated_at = now()
	WHERE id = ANY($1) AND status IN ('queued', 'running', 'retrying')`

// CancelRun marks an unfinished run cancelled at once, with error code
// cancelled and message: its job will not run again (cancelled in River, or
// gone). An attempt still open is left to the worker that holds it. It
// returns the run and the ID of its sweep (uuid.Nil for a run of no sweep),
// whose end the caller checks once this commits (FinishSweep), or
// ErrNotFound when the run is missing or already finished.
func (q *Queries) CancelRun(ctx context.Context, id uuid.UUID, message string) (Run, uuid.UUID, error) {
	var sweepID *uuid.UUID
	r, err := scanRun(withExtra(q.db.QueryRow(ctx, cancelRunsSQL+` RETURNING `+runColumns+`, sweep_id`,
		[]uuid.UUID{id}, ErrorCodeCancelled, capText(message, MaxErrorBytes)), &sweepID))
	if err != nil {
		return Run{}, uuid.Nil, fmt.Errorf("cancel run %s: %w", id, notFound(err))
	}
	if sweepID == nil {
		return r, uuid.Nil, nil
	}
	return r, *sweepID, nil
}

// RequestRunCancel records that a cancel was asked of an unfinished run whose
// job is running, keeping the status: the run ends when its attempt does. A
// second request keeps the time of the first. It returns ErrNotFound when
// the run is missing or already finished.
func (q *Queries) RequestRunCancel(ctx context.Context, id uuid.UUID) (Run, error) {
	r, err := scanRun(q.db.QueryRow(ctx, requestCancelSQL+` RETURNING `+runColumns, []uuid.UUID{id}))
	if err != nil {
		return Run{}, fmt.Errorf("request cancel of run %s: %w", id, notFound(err))
	}
	return r, nil
}

// extraRow is a row with more columns than its scanner reads: the extra
// ones go to extra.
type extraRow struct {
	row   pgx.Row
	extra []any
}

func withExtra(row pgx.Row, extra ...any) pgx.Row { return extraRow{row: row, extra: extra} }

func (r extraRow) Scan(dest ...any) error { return r.row.Scan(append(dest, r.extra...)...) }
