package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// Canceller cancels a user's run together with its River job: an
// *enqueue.Enqueuer.
type Canceller interface {
	Cancel(ctx context.Context, userID, id uuid.UUID) (enqueue.Cancellation, error)
}

// handleCancelBacktest answers POST /backtests/{id}/cancel with the run as
// the cancel left it: cancelled, or still running with cancel_requested_at
// until its attempt ends. Cancelling a cancelled run is not an error; a run
// that succeeded or failed is past cancelling (409). A cancel that ends the
// last run of a sweep logs the sweep's sweep_finished. The request has no
// body: one sent anyway is not read.
func handleCancelBacktest(logger *slog.Logger, q *store.Queries, c Canceller) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := resourceID(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		res, err := c.Cancel(ctx, userFrom(ctx).ID, id)
		var finished *enqueue.FinishedError
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeProblem(w, r, http.StatusNotFound, "No such backtest.")
			return
		case errors.As(err, &finished):
			writeProblem(w, r, http.StatusConflict, fmt.Sprintf("This backtest has already finished (%s).", finished.Status))
			return
		case err != nil:
			serverError(logger, w, r, err)
			return
		}
		if res.Asked {
			logger.InfoContext(ctx, obs.EventBacktestCancelled,
				slog.String(obs.KeyRunID, res.Run.ID.String()),
				slog.Int64(obs.KeyJobID, res.Run.JobID),
				slog.String(obs.KeyStatus, res.Run.Status))
		}
		if f := res.Finished; f != nil { // this cancel ended its sweep's last run
			f.Log(ctx, logger)
		}
		writeRun(logger, w, r, q, http.StatusOK, res.Run)
	})
}
