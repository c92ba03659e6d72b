package store

import (
	"context"
	"encoding/json"
	"errors"
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

// ErrStaleAttempt is returned for a worker's write to a run that is no
// longer at the worker's attempt: River rescued the job from a worker it
// presumed dead (frozen, say) and another attempt owns the run now, or the
// reconciliation found the attempt's worker gone. The write changed nothing.
var ErrStaleAttempt = errors.New("stale attempt: the run is no longer at this attempt")

// ErrAttemptNotStarted is returned for a worker's write that ends an
// attempt which never started its run (it failed before StartWork): the
// run is left as it was.
var ErrAttemptNotStarted = errors.New("the attempt did not start the run")

// ErrRunCancelled is returned by StartWork for a run cancelled while its
// job was being fetched: the job is being cancelled too, and the attempt
// must not run.
var ErrRunCancelled = errors.New("the run was cancelled")

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

// RunAttempts returns the attempts of run id, first first, as
// AttemptsOfRuns lists them. The caller has checked that the run is the
// user's.
func (q *Queries) RunAttempts(ctx context.Context, id uuid.UUID) ([]RunAttempt, error) {
	byRun, err := q.AttemptsOfRuns(ctx, []uuid.UUID{id})
	if err != nil {
		return nil, err
	}
	return byRun[id], nil
}

// AttemptsOfRuns returns the attempts of the runs ids, first first, by run:
// a page of runs is rendered with one query rather than one per run. A run
// with no attempt yet has no entry. An attempt that a shutdown interrupted
// is not counted by River, so the next one has the same number: both are
// listed, in the order they started. The caller has checked that the runs
// are the user's.
func (q *Queries) AttemptsOfRuns(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID][]RunAttempt, error) {
	out := make(map[uuid.UUID][]RunAttempt, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.db.Query(ctx, `
		SELECT run_id, attempt, started_at, finished_at, COALESCE(outcome, ''), COALESCE(error_code, ''),
		       COALESCE(error_message, '')
		FROM backtest_run_attempts WHERE run_id = ANY($1) ORDER BY run_id, attempt, started_at`, ids)
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

// AttemptFailure is how an attempt failed, as its run and its attempt row
// keep it.
type AttemptFailure struct {
	// Code is from the list in codes.go, for API clients.
	Code string
	// Message is the error's text, cut to MaxErrorBytes.
	Message string
	// ErrorType is the error's Go type, for developers.
	ErrorType string
}

// workerLostMessage is the error of an attempt closed because its worker
// was lost: River rescued its job, and a later attempt or the
// reconciliation found it still open.
const workerLostMessage = "the worker running this attempt stopped answering; River rescued the job"

// startWorkSQL is StartWork's writes and the strategy's read in one
// statement, one round trip and one commit. closed is read before the
// insert so that the earlier attempt's row is closed first: only one row of
// a run may be open (backtest_run_attempts_open_idx). It returns run.*, the
// run's columns (runColumns), then s.*, the strategy's (strategyColumns),
// all NULL when there is none to read.
const startWorkSQL = `
	WITH run AS (
	    UPDATE backtest_runs r
	    SET status = 'running', attempt = $2, progress_pct = 0, result = NULL, error_message = NULL,
	        error_type = NULL, error_code = NULL, next_attempt_at = NULL, cancel_requested_at = NULL,
	        finished_at = NULL, started_at = COALESCE(r.started_at, now()), updated_at = now()
	    WHERE r.id = $1 AND r.attempt < $2
	      AND NOT (r.status = 'cancelled' AND EXISTS (
	          SELECT 1 FROM river_job j WHERE j.id = r.river_job_id AND j.metadata ? 'cancel_attempted_at'))
	    RETURNING ` + runColumns + `
	), closed AS (
	    UPDATE backtest_run_attempts a
	    SET finished_at = now(), outcome = 'interrupted', error_code = $3, error_message = $4
	    WHERE a.run_id = $1 AND a.outcome IS NULL AND EXISTS (SELECT 1 FROM run)
	    RETURNING 1
	), opened AS (
	    INSERT INTO backtest_run_attempts (run_id, attempt, started_at)
	    SELECT $1, $2, now() FROM run WHERE (SELECT count(*) FROM closed) >= 0
	)
	SELECT run.*, s.*
	FROM run LEFT JOIN LATERAL (
	    SELECT ` + strategyColumns + ` FROM strategies
	    WHERE id = run.strategy_id AND user_id = run.user_id AND deleted_at IS NULL
	) s ON true`

// StartWork marks run id running at River's attempt number attempt and
// opens the attempt's row, closing an earlier one still open (its worker
// was lost and River rescued the job) as interrupted. It clears what an
// earlier attempt left: progress, result, error, next_attempt_at and
// cancel_requested_at. It returns the run with its strategy, read in the
// same statement: what a worker needs to begin a backtest. The strategy is
// nil when it was deleted or is not the run's user's; the attempt has
// started all the same, for the caller to end.
//
// Only an attempt newer than the run's starts, whatever the run's status:
// a job retried in River UI runs its finished run again. It returns
// ErrStaleAttempt for an attempt not newer, ErrRunCancelled for a run
// cancelled whose job is being cancelled (a cancel that met the fetch), and
// ErrNotFound for a run that does not exist.
func (q *Queries) StartWork(ctx context.Context, id uuid.UUID, attempt int) (Run, *Strategy, error) {
	var (
		r Run
		s maybeStrategy
	)
	err := q.db.QueryRow(ctx, startWorkSQL, id, attempt, ErrorCodeWorkerLost, workerLostMessage).Scan(
		append(r.scanDest(), s.scanDest()...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		// Rare, so the reason costs a second round trip rather than the
		// statement a second read of the run.
		return Run{}, nil, q.refusedStart(ctx, id, attempt)
	}
	if err != nil {
		return Run{}, nil, fmt.Errorf("start attempt %d of run %s: %w", attempt, id, err)
	}
	return r, s.strategy(), nil
}

// maybeStrategy reads strategyColumns from the side of an outer join that
// may be missing: every column NULL.
type maybeStrategy struct {
	id, userID *uuid.UUID
	name, kind *string
	params     json.RawMessage
	createdAt  *time.Time
}

// scanDest returns the destinations of strategyColumns, in their order.
func (m *maybeStrategy) scanDest() []any {
	return []any{&m.id, &m.userID, &m.name, &m.kind, &m.params, &m.createdAt}
}

// strategy is the strategy read, or nil when the join found none.
func (m *maybeStrategy) strategy() *Strategy {
	if m.id == nil {
		return nil
	}
	return &Strategy{ID: *m.id, UserID: *m.userID, Name: *m.name, Kind: *m.kind, Params: m.params, CreatedAt: *m.createdAt}
}

// refusedStart says why StartWork changed nothing: what refused says,
// except that a run not yet at the attempt was held back by its cancel
// (startWorkSQL starts any other run older than the attempt).
func (q *Queries) refusedStart(ctx context.Context, id uuid.UUID, attempt int) error {
	err := q.refused(ctx, "start", id, attempt)
	if errors.Is(err, ErrAttemptNotStarted) {
		return fmt.Errorf("start attempt %d of run %s: %w", attempt, id, ErrRunCancelled)
	}
	return err
}

// SetProgress records a checkpoint of attempt, if the run is still running
// at that attempt (ErrStaleAttempt otherwise).
func (q *Queries) SetProgress(ctx context.Context, id uuid.UUID, attempt, pct int) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs SET progress_pct = $3, updated_at = now()
		WHERE id = $1 AND attempt = $2 AND status = 'running'`, id, attempt, pct)
	if err != nil {
		return fmt.Errorf("set progress of run %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return q.refused(ctx, "set progress", id, attempt)
	}
	return nil
}

// completeWorkSQL completes a run, its attempt's row and its River job in
// one statement: one round trip, one commit. The run's row is locked before
// the job's, in the order a cancel takes them. The job is completed as
// River's JobCompleteTx completes it (state, finalized_at); River's own
// completion after Work then finds it no longer running and leaves it.
// Nothing is written unless the run is running at the attempt and River
// has the job running at the same attempt.
const completeWorkSQL = `
	WITH run AS (
	    SELECT r.id FROM backtest_runs r WHERE r.id = $1 AND r.attempt = $2 AND r.status = 'running'
	    FOR UPDATE
	), job AS (
	    SELECT j.state::text AS state, j.attempt FROM river_job j WHERE j.id = $3 AND EXISTS (SELECT 1 FROM run)
	    FOR UPDATE
	), ok AS (
	    SELECT 1 FROM job WHERE job.state = 'running' AND job.attempt = $2
	), done_job AS (
	    UPDATE river_job j SET state = 'completed', finalized_at = now()
	    WHERE j.id = $3 AND EXISTS (SELECT 1 FROM ok)
	), done_run AS (
	    UPDATE backtest_runs r
	    SET status = 'succeeded', progress_pct = 100, result = $4, finished_at = now(), updated_at = now()
	    WHERE r.id = $1 AND EXISTS (SELECT 1 FROM ok)
	), closed AS (
	    UPDATE backtest_run_attempts a
	    SET finished_at = now(), outcome = 'succeeded', error_code = NULL, error_message = NULL
	    WHERE a.run_id = $1 AND a.attempt = $2 AND a.outcome IS NULL AND EXISTS (SELECT 1 FROM ok)
	)
	SELECT EXISTS (SELECT 1 FROM run), (SELECT state FROM job), EXISTS (SELECT 1 FROM ok)`

// ErrJobGone is returned by CompleteWork for a run whose River job no
// longer exists: nothing was written.
var ErrJobGone = errors.New("the run's job is gone from River's table")

// CompleteWork stores attempt's result, marks the run succeeded, closes
// the attempt's row and completes River's job jobID, all in one statement,
// or nothing: a run is never succeeded with its job still running, nor the
// reverse. For a run no longer running at the attempt it returns what
// refused says (ErrNotFound, ErrAttemptNotStarted or ErrStaleAttempt);
// ErrStaleAttempt too for a job River no longer has running at the attempt
// (it rescued it, or a cancel ended it), and ErrJobGone.
func (q *Queries) CompleteWork(ctx context.Context, id uuid.UUID, attempt int, jobID int64, result json.RawMessage) error {
	var (
		runOK, done bool
		jobState    *string
	)
	err := q.db.QueryRow(ctx, completeWorkSQL, id, attempt, jobID, result).Scan(&runOK, &jobState, &done)
	switch {
	case err != nil:
		return fmt.Errorf("complete attempt %d of run %s: %w", attempt, id, err)
	case done:
		return nil
	case !runOK:
		return q.refused(ctx, "complete", id, attempt)
	case jobState == nil:
		return fmt.Errorf("complete attempt %d of run %s, job %d: %w", attempt, id, jobID, ErrJobGone)
	default:
		return fmt.Errorf("complete attempt %d of run %s: River has job %d %s, not running at attempt %d: %w",
			attempt, id, jobID, *jobState, attempt, ErrStaleAttempt)
	}
}

// RetryAttempt records attempt's failure, with another attempt to come at
// next: the run is retrying, with the failure's error. A run whose job has
// been asked to cancel (River cancels such a job rather than retry it) is
// cancelled instead; the status returned says which.
func (q *Queries) RetryAttempt(ctx context.Context, id uuid.UUID, attempt int, next time.Time, f AttemptFailure) (string, error) {
	return q.endAttempt(ctx, "retry", id, attempt, OutcomeFailed, f, `
		status = CASE WHEN cancelling.job THEN 'cancelled' ELSE 'retrying' END,
		progress_pct = 0,
		error_code = CASE WHEN cancelling.job THEN 'cancelled' ELSE $4 END,
		error_message = CASE WHEN cancelling.job THEN 'cancelled; its last attempt failed: ' || $5 ELSE $5 END,
		error_type = $7,
		next_attempt_at = CASE WHEN cancelling.job THEN NULL ELSE $6::timestamptz END,
		finished_at = CASE WHEN cancelling.job THEN now() END`, next, f.ErrorType)
}

// FailAttempt records attempt's failure, with no attempt to come: the run
// is failed with the failure's error.
func (q *Queries) FailAttempt(ctx context.Context, id uuid.UUID, attempt int, f AttemptFailure) error {
	_, err := q.endAttempt(ctx, "fail", id, attempt, OutcomeFailed, f,
		`status = 'failed', error_code = $4, error_message = $5, error_type = $6, finished_at = now()`, f.ErrorType)
	return err
}

// CancelAttempt records that attempt ended by a cancel (River's JobCancel,
// from the API or River UI): the run is cancelled. A cancel can also meet
// the attempt before it started the run (River had fetched the job, the
// start had not committed): River ends the job cancelled all the same, so
// the run, still waiting for that attempt, is cancelled too, rather than
// left queued until the reconciliation sees the job.
func (q *Queries) CancelAttempt(ctx context.Context, id uuid.UUID, attempt int, message string) error {
	_, err := q.endAttempt(ctx, "cancel", id, attempt, OutcomeCancelled,
		AttemptFailure{Code: ErrorCodeCancelled, Message: message},
		`status = 'cancelled', error_code = $4, error_message = $5, error_type = NULL, finished_at = now()`)
	if !errors.Is(err, ErrAttemptNotStarted) {
		return err
	}
	tag, uerr := q.db.Exec(ctx, `UPDATE backtest_runs SET `+cancelledSet+`
		WHERE id = $1 AND attempt < $4 AND status IN ('queued', 'retrying')`,
		id, ErrorCodeCancelled, capText(message, MaxErrorBytes), attempt)
	switch {
	case uerr != nil:
		return fmt.Errorf("cancel run %s before attempt %d started: %w", id, attempt, uerr)
	case tag.RowsAffected() == 0:
		return err
	}
	return nil
}

// InterruptAttempt records that a shutdown interrupted attempt: River puts
// the job back in the queue without counting the attempt, so the run is
// queued at the attempt before, and the next one has the same number.
func (q *Queries) InterruptAttempt(ctx context.Context, id uuid.UUID, attempt int) error {
	_, err := q.endAttempt(ctx, "interrupt", id, attempt, OutcomeInterrupted, AttemptFailure{},
		`status = 'queued', attempt = $2 - 1, progress_pct = 0`)
	return err
}

// endAttempt closes attempt's row with outcome and f, and applies set to the
// run, both only if the run is still running at that attempt; it returns
// the run's new status. set may use $1 (the run), $2 (the attempt), $4 and
// $5 (f's code and message), $6 on (extra) and cancelling.job (whether the
// run's job has been asked to cancel).
func (q *Queries) endAttempt(ctx context.Context, what string, id uuid.UUID, attempt int, outcome string,
	f AttemptFailure, set string, extra ...any,
) (string, error) {
	args := append([]any{id, attempt, outcome, f.Code, capText(f.Message, MaxErrorBytes)}, extra...)
	var status string
	err := q.db.QueryRow(ctx, `
		WITH cancelling AS (
		    SELECT EXISTS (
		        SELECT 1 FROM backtest_runs r JOIN river_job j ON j.id = r.river_job_id
		        WHERE r.id = $1 AND j.metadata ? 'cancel_attempted_at') AS job
		), run AS (
		    UPDATE backtest_runs r SET `+set+`, updated_at = now()
		    FROM cancelling
		    WHERE r.id = $1 AND r.attempt = $2 AND r.status = 'running'
		    RETURNING r.status
		), closed AS (
		    UPDATE backtest_run_attempts a
		    SET finished_at = now(), outcome = $3::text, error_code = NULLIF($4::text, ''), error_message = NULLIF($5::text, '')
		    WHERE a.run_id = $1 AND a.attempt = $2 AND a.outcome IS NULL AND EXISTS (SELECT 1 FROM run)
		)
		SELECT status FROM run`, args...).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", q.refused(ctx, what, id, attempt)
	}
	if err != nil {
		return "", fmt.Errorf("%s attempt %d of run %s: %w", what, attempt, id, err)
	}
	return status, nil
}

// refused says why a write of attempt to run id changed nothing: the run
// is gone (ErrNotFound), the attempt never started it
// (ErrAttemptNotStarted), or it has moved on (ErrStaleAttempt).
func (q *Queries) refused(ctx context.Context, what string, id uuid.UUID, attempt int) error {
	var (
		current int
		status  string
	)
	err := q.db.QueryRow(ctx, `SELECT attempt, status FROM backtest_runs WHERE id = $1`, id).Scan(&current, &status)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s attempt %d of run %s: %w", what, attempt, id, ErrNotFound)
	case err != nil:
		return fmt.Errorf("%s attempt %d of run %s: %w", what, attempt, id, err)
	case current < attempt:
		return fmt.Errorf("%s attempt %d of run %s, %s at attempt %d: %w", what, attempt, id, status, current,
			ErrAttemptNotStarted)
	default:
		return fmt.Errorf("%s attempt %d of run %s, %s at attempt %d: %w", what, attempt, id, status, current,
			ErrStaleAttempt)
	}
}
