package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// sweepFinisher marks a sweep finished once its last run is final
// (store.FinishSweep).
type sweepFinisher interface {
	FinishSweep(ctx context.Context, id uuid.UUID) (store.SweepFinished, bool, error)
}

// endOfSweepRun is called when an attempt of a run of sweep sweepID has
// left the run final and what it wrote has committed: if the run was the
// sweep's last to become final, it marks the sweep finished and logs
// sweep_finished. The store finishes the sweep only when none of its runs
// is left unfinished, and once: two runs ending together may both call
// it. A failure is logged and otherwise ignored: the reconciliation
// finishes the sweeps that such a failure, or a crash, left unmarked.
func endOfSweepRun(ctx context.Context, logger *slog.Logger, sweeps sweepFinisher, sweepID uuid.UUID) {
	if sweepID == uuid.Nil {
		return // a single run
	}
	// The job's context may be over (a timeout, a shutdown): the sweep's
	// end is written all the same.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	f, ok, err := sweeps.FinishSweep(wctx, sweepID)
	switch {
	case err != nil:
		logger.LogAttrs(ctx, slog.LevelWarn, obs.EventSweepFinishFailed,
			slog.String(obs.KeyError, err.Error()), slog.String(obs.KeyErrorType, obs.ErrorType(err)))
	case ok:
		f.Log(ctx, logger)
	}
}

// finishSettledSweeps is the reconciliation's part for sweeps: it finishes
// those whose runs are all final but which no one marked, and logs each.
func finishSettledSweeps(ctx context.Context, logger *slog.Logger, q *store.Queries) error {
	done, err := q.FinishSettledSweeps(ctx)
	if err != nil {
		return err
	}
	for _, f := range done {
		f.Log(ctx, logger)
	}
	return nil
}
