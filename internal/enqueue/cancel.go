package enqueue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/rivertype"

	"github.com/backtestd/backtestd/internal/store"
)

// CancelledMessage is the error message of a run cancelled over the API.
const CancelledMessage = "The backtest was cancelled on request."

// FinishedError is returned by Cancel, having changed nothing, when the run
// has already succeeded or failed: there is nothing left to cancel.
type FinishedError struct {
	Status string
}

func (e *FinishedError) Error() string {
	return "the backtest has already finished (" + e.Status + ")"
}

// Cancellation is what Cancel did.
type Cancellation struct {
	// Run is the run as the cancel left it: cancelled, or still running (or
	// queued, when its job was fetched meanwhile) with CancelRequestedAt set.
	Run store.Run
	// Asked is whether this call asked River to cancel the job; a run that
	// was already cancelled is returned as it is.
	Asked bool
	// Finished is the run's sweep, when this cancel ended its last run:
	// the caller logs sweep_finished with it. Nil otherwise.
	Finished *store.SweepFinished
}

// Cancel cancels userID's run id in one transaction with its River job.
//
// A run waiting for an attempt (queued or retrying) is cancelled at once, its
// job cancelled with it. A run whose job is running, which includes a queued
// run whose job a worker fetched meanwhile, keeps its status and gets
// CancelRequestedAt: River tells the worker, and the run becomes cancelled
// when the attempt ends. A run whose job is gone, or was already cancelled in
// River, is cancelled at once: nothing would ever end it otherwise. A
// cancelled run is returned as it is. A run of a sweep cancelled at once
// may have been the sweep's last unfinished run: the sweep is then marked
// finished, and returned as Finished; an error doing so is returned,
// though the run's cancel has committed (the reconciliation finishes such
// a sweep).
//
// It returns an error wrapping store.ErrNotFound when the run is not the
// user's, and a *FinishedError when it has succeeded or failed.
func (e *Enqueuer) Cancel(ctx context.Context, userID, id uuid.UUID) (Cancellation, error) {
	var c Cancellation
	var sweepID uuid.UUID
	err := pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		q := store.New(tx)
		run, err := q.LockRun(ctx, userID, id)
		if err != nil {
			return err
		}
		switch run.Status {
		case store.StatusCancelled:
			c.Run = run
			return nil
		case store.StatusSucceeded, store.StatusFailed:
			return &FinishedError{Status: run.Status}
		}
		c.Asked = true
		now, err := e.cancelJob(ctx, tx, run.JobID)
		switch {
		case err != nil:
			return err
		case now:
			c.Run, sweepID, err = q.CancelRun(ctx, id, CancelledMessage)
		default:
			c.Run, err = q.RequestRunCancel(ctx, id)
		}
		return err
	})
	if err != nil {
		return Cancellation{}, fmt.Errorf("cancel backtest %s: %w", id, err)
	}
	if sweepID != uuid.Nil {
		if c.Finished, err = e.finishSweep(ctx, sweepID); err != nil {
			return Cancellation{}, fmt.Errorf("cancel backtest %s: %w", id, err)
		}
	}
	return c, nil
}

// finishSweep marks sweep id finished if the run a cancel just committed
// was its last unfinished one, and returns it then; nil otherwise.
//
// Not in the cancel's transaction, which locks only its own run: another
// run of the sweep that a worker makes final meanwhile would be unfinished
// to each of the two checks, and the sweep left to the reconciliation.
// After the commit, whichever check comes last sees both runs final. It
// runs to its end even if the request is over: the cancel has committed.
func (e *Enqueuer) finishSweep(ctx context.Context, id uuid.UUID) (*store.SweepFinished, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var f store.SweepFinished
	var done bool
	err := pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		var err error
		f, done, err = store.New(tx).FinishSweep(ctx, id)
		return err
	})
	if err != nil || !done {
		return nil, err
	}
	return &f, nil
}

// cancelJob cancels jobID in River, in tx, and says whether its run is to
// be cancelled now: the job is gone, or River cancelled it, which it does
// at once to a job waiting for an attempt. Otherwise the run is asked to
// stop and ends with its attempt: a running job's worker gets River's
// cancel once tx commits; a job that completed or was discarded meanwhile
// has a worker (or the reconciliation) writing how its run ended.
func (e *Enqueuer) cancelJob(ctx context.Context, tx pgx.Tx, jobID int64) (bool, error) {
	job, err := e.river.JobCancelTx(ctx, tx, jobID)
	switch {
	case errors.Is(err, rivertype.ErrNotFound):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("cancel job %d: %w", jobID, err)
	default:
		return job.State == rivertype.JobStateCancelled, nil
	}
}
