package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/backtestd/backtestd/internal/store"
)

// createStrategy saves a strategy; for a request with an Idempotency-Key,
// in a transaction its hook opens and closes, as an enqueue's does: the key
// claimed first, the response stored last.
func createStrategy(ctx context.Context, q *store.Queries, idem *idempotency, ns store.NewStrategy) (store.Strategy, error) {
	hook := txHook(idem, strategyCreated)
	if hook == nil {
		return q.CreateStrategy(ctx, ns)
	}
	var s store.Strategy
	err := q.InTx(ctx, func(tx pgx.Tx) error {
		if err := hook.Before(ctx, tx); err != nil {
			return err
		}
		var err error
		if s, err = store.New(tx).CreateStrategy(ctx, ns); err != nil {
			return err
		}
		return hook.After(ctx, tx, s)
	})
	return s, err
}

// strategyCreated is the answer to a POST /strategies that saved s.
func strategyCreated(s store.Strategy) (status int, location string, body any) {
	return http.StatusCreated, "/strategies/" + s.ID.String(), toStrategyJSON(s)
}

// strategyList is a page of GET /strategies.
type strategyList struct {
	Strategies []strategyJSON `json:"strategies"`
	NextCursor *string        `json:"next_cursor"`
}

// handleListStrategies answers a page of the user's strategies, newest
// first; deleted ones are left out.
func handleListStrategies(logger *slog.Logger, q *store.Queries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query, ok := queryParams(w, r, "limit", "cursor")
		if !ok {
			return
		}
		qr := queryReader{query: query}
		page := qr.page(cursorStrategies)
		if qr.answered(w, r) {
			return
		}
		strategies, more, err := q.ListStrategies(r.Context(), userFrom(r.Context()).ID, page)
		if err != nil {
			serverError(logger, w, r, err)
			return
		}
		out := strategyList{Strategies: make([]strategyJSON, len(strategies))}
		for i, s := range strategies {
			out.Strategies[i] = toStrategyJSON(s)
		}
		if len(strategies) > 0 {
			last := strategies[len(strategies)-1]
			out.NextCursor = nextPage(w, r, query, cursorStrategies, more, store.Position{CreatedAt: last.CreatedAt, ID: last.ID})
		}
		writeJSON(w, "application/json", http.StatusOK, out)
	})
}

// handleDeleteStrategy deletes a strategy that has no unfinished runs:
// 204, or 409 while some are queued, running or retrying. The strategy's
// finished runs stay, and stay readable (store.DeleteStrategy).
func handleDeleteStrategy(logger *slog.Logger, q *store.Queries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := resourceID(w, r)
		if !ok {
			return
		}
		err := q.DeleteStrategy(r.Context(), userFrom(r.Context()).ID, id)
		var inUse *store.StrategyInUseError
		switch {
		case err == nil:
			w.WriteHeader(http.StatusNoContent)
		case errors.As(err, &inUse):
			writeProblem(w, r, http.StatusConflict, fmt.Sprintf(
				"The strategy has %d backtests queued, running or retrying: cancel them or wait for them to finish, "+
					"then delete it.", inUse.Unfinished))
		case errors.Is(err, store.ErrNotFound):
			writeProblem(w, r, http.StatusNotFound, "No such strategy.")
		case errors.Is(err, store.ErrUserGone):
			userGone(w, r)
		default:
			serverError(logger, w, r, err)
		}
	})
}
