package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// SweepEnqueuer creates sweeps and cancels them: an *enqueue.Enqueuer.
type SweepEnqueuer interface {
	EnqueueSweep(ctx context.Context, ns enqueue.NewSweep) (store.Sweep, error)
	CancelSweep(ctx context.Context, userID, id uuid.UUID) (enqueue.SweepCancellation, error)
}

// Bounds on a sweep's request besides MAX_SWEEP_RUNS.
const (
	// maxSweepSymbols bounds the symbols of one sweep.
	maxSweepSymbols = 100
	// candidateFactor is how many combinations, refused ones included, a
	// grid may have per run allowed: room for the combinations a strategy
	// refuses (fast ≥ slow is half a square grid) without expanding grids
	// of any size.
	candidateFactor = 4
)

type createSweepRequest struct {
	Kind        string        `json:"kind"`
	ParamsGrid  *enqueue.Grid `json:"params_grid"`
	Symbols     []string      `json:"symbols"`
	Start       string        `json:"start"`
	End         string        `json:"end"`
	InitialCash *float64      `json:"initial_cash"`
}

// validate checks every field of a sweep request and expands its grid. It
// returns the sweep, or every refused field and why. maxRuns bounds the
// runs.
func (req createSweepRequest) validate(maxRuns int) (enqueue.NewSweep, []InvalidParam, error) {
	var (
		ns      enqueue.NewSweep
		invalid []InvalidParam
	)
	refuse := func(name, reason string) { invalid = append(invalid, InvalidParam{Name: name, Reason: reason}) }
	// The kind alone: the grid's values are checked by combination.
	if _, err := backtest.ParseStrategy(req.Kind, nil); err != nil {
		refused, _ := invalidParamsOf(err)
		for _, p := range refused {
			if p.Name == "kind" {
				refuse(p.Name, p.Reason)
			}
		}
	}
	if req.ParamsGrid == nil {
		refuse("params_grid", "is required: an object of parameter names to lists of values ({} for none)")
	} else {
		for _, name := range slices.Sorted(maps.Keys(*req.ParamsGrid)) {
			if len((*req.ParamsGrid)[name]) == 0 {
				refuse("params_grid."+name, "must be a list of at least one value")
			}
		}
	}
	symbols := make([]string, 0, len(req.Symbols))
	if len(req.Symbols) == 0 || len(req.Symbols) > maxSweepSymbols {
		refuse("symbols", fmt.Sprintf("must be a list of 1 to %d symbols", maxSweepSymbols))
	} else {
		for _, s := range req.Symbols {
			s, ok := parseSymbol(s)
			if !ok {
				refuse("symbols", "each "+symbolReason)
				break
			}
			if slices.Contains(symbols, s) {
				refuse("symbols", "must not name a symbol twice ("+s+")")
				break
			}
			symbols = append(symbols, s)
		}
	}
	start, end, _ := validateRange(refuse, req.Start, req.End)
	cash := validateCash(refuse, req.InitialCash)
	if len(invalid) > 0 {
		return ns, invalid, nil
	}
	tooMany := fmt.Sprintf("must make at most %d runs (the grid's combinations times the symbols)", maxRuns)
	perSymbol := max(candidateFactor*maxRuns/len(symbols), 1)
	if enqueue.Candidates(*req.ParamsGrid, perSymbol) > perSymbol {
		return ns, []InvalidParam{{Name: "params_grid", Reason: tooMany}}, nil
	}
	exp, err := enqueue.Expand(req.Kind, *req.ParamsGrid, backtest.TradingDays(start, end))
	if err != nil {
		return ns, nil, err
	}
	if len(exp.Combinations) == 0 {
		reason := "every combination is refused by the strategy"
		if refused, ok := invalidParamsOf(exp.FirstRefusal); ok {
			reason += " (" + refused[0].Name + " " + refused[0].Reason + ")"
		} else if exp.FirstRefusal != nil {
			reason += " (" + exp.FirstRefusal.Error() + ")"
		}
		return ns, []InvalidParam{{Name: "params_grid", Reason: reason}}, nil
	}
	if len(exp.Combinations)*len(symbols) > maxRuns {
		return ns, []InvalidParam{{Name: "params_grid", Reason: tooMany}}, nil
	}
	grid, err := json.Marshal(req.ParamsGrid)
	if err != nil {
		return ns, nil, fmt.Errorf("encode the grid: %w", err)
	}
	return enqueue.NewSweep{
		Kind: req.Kind, ParamsGrid: grid, Combinations: exp.Combinations, Skipped: exp.Skipped,
		Symbols: symbols, Start: start, End: end, InitialCash: cash,
	}, nil, nil
}

// sweepEnqueuedJSON is the answer to POST /sweeps.
type sweepEnqueuedJSON struct {
	SweepID       uuid.UUID `json:"sweep_id"`
	RunCount      int       `json:"run_count"`
	SkippedCount  int       `json:"skipped_count"`
	CorrelationID string    `json:"correlation_id"`
	Status        string    `json:"status"`
}

// sweepAccepted is the answer to a POST /sweeps that enqueued sweep.
func sweepAccepted(s store.Sweep) (status int, location string, body any) {
	return http.StatusAccepted, "/sweeps/" + s.ID.String(), sweepEnqueuedJSON{
		SweepID: s.ID, RunCount: s.RunCount, SkippedCount: s.SkippedCount,
		CorrelationID: s.CorrelationID, Status: store.StatusQueued,
	}
}

func handleCreateSweep(logger *slog.Logger, enq SweepEnqueuer, keyTTL time.Duration, maxRuns int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := queryParams(w, r); !ok {
			return
		}
		req, ok := decode[createSweepRequest](w, r)
		if !ok {
			return
		}
		idem, ok := newIdempotency(w, r, logger, keyTTL, req)
		if !ok {
			return
		}
		ns, invalid, err := req.validate(maxRuns)
		if err != nil {
			serverError(logger, w, r, err)
			return
		}
		if len(invalid) > 0 {
			writeInvalidParams(w, r, invalid)
			return
		}
		ctx := r.Context()
		ns.UserID, ns.CorrelationID, ns.Traceparent = origin(ctx)
		ns.Hook = txHook(idem, sweepAccepted)
		sweep, err := enq.EnqueueSweep(ctx, ns)
		if answeredCreate(logger, w, r, idem, err, func(e *enqueue.TooManyUnfinishedError) string {
			return fmt.Sprintf("You have %d backtests queued or running; this sweep's %d more would pass the most allowed, %d: "+
				"start it once some have finished, or make it smaller.", e.Unfinished, e.Requested, e.Limit)
		}) {
			return
		}
		logger.InfoContext(ctx, obs.EventSweepEnqueued,
			slog.String(obs.KeySweepID, sweep.ID.String()),
			slog.Int(obs.KeyRunCount, sweep.RunCount),
			slog.Int(obs.KeySkippedCount, sweep.SkippedCount))
		status, location, body := sweepAccepted(sweep)
		writeCreated(w, idem, status, location, body)
	})
}

// Ranking of GET /sweeps/{id}: rank_by and top.
const (
	defaultRankBy = store.MetricSharpe
	defaultTop    = 10
	maxTop        = 100
)

var rankMetrics = []string{
	store.MetricSharpe, store.MetricTotalReturn, store.MetricCAGR, store.MetricMaxDrawdown, store.MetricFinalEquity,
}

// sweepJSON is a sweep as the API shows it.
type sweepJSON struct {
	ID                uuid.UUID       `json:"id"`
	Status            string          `json:"status"`
	Kind              string          `json:"kind"`
	ParamsGrid        json.RawMessage `json:"params_grid"`
	Symbols           []string        `json:"symbols"`
	Start             string          `json:"start"`
	End               string          `json:"end"`
	InitialCash       float64         `json:"initial_cash"`
	RunCount          int             `json:"run_count"`
	SkippedCount      int             `json:"skipped_count"`
	Counts            map[string]int  `json:"counts"`
	ProgressPct       int             `json:"progress_pct"`
	RankBy            string          `json:"rank_by"`
	Best              []rankedJSON    `json:"best"`
	CorrelationID     string          `json:"correlation_id"`
	CreatedAt         time.Time       `json:"created_at"`
	CancelRequestedAt *time.Time      `json:"cancel_requested_at"`
	FinishedAt        *time.Time      `json:"finished_at"`
}

// rankedJSON is one of a sweep's best runs.
type rankedJSON struct {
	RunID  uuid.UUID       `json:"run_id"`
	Symbol string          `json:"symbol"`
	Params json.RawMessage `json:"params"`
	Value  float64         `json:"value"`
}

// sweepStatus is a sweep's status: queued until a run starts, running until
// it is marked finished (every run final, finished_at set), then finished,
// or cancelled when a cancel was asked of it.
func sweepStatus(s store.Sweep, counts map[string]int) string {
	switch {
	// Final once marked (finished_at, with its sweep_finished line), not
	// merely once the counts say so: the one who ended the last run marks
	// it just after, and the answer never has a final status without
	// finished_at.
	case s.FinishedAt != nil && s.CancelRequestedAt != nil:
		return store.StatusCancelled
	case s.FinishedAt != nil:
		return "finished"
	case counts[store.StatusQueued] == s.RunCount:
		return store.StatusQueued
	default:
		return store.StatusRunning
	}
}

// writeSweep answers with the sweep, its counts and its best runs.
func writeSweep(logger *slog.Logger, w http.ResponseWriter, r *http.Request, q *store.Queries, s store.Sweep, rankBy string, top int) {
	ctx := r.Context()
	counts, err := q.SweepCounts(ctx, s.ID)
	if err != nil {
		serverError(logger, w, r, err)
		return
	}
	best, err := q.BestRuns(ctx, s.ID, rankBy, top)
	if err != nil {
		serverError(logger, w, r, err)
		return
	}
	finished := counts[store.StatusSucceeded] + counts[store.StatusFailed] + counts[store.StatusCancelled]
	out := sweepJSON{
		ID: s.ID, Status: sweepStatus(s, counts), Kind: s.Kind, ParamsGrid: s.ParamsGrid, Symbols: s.Symbols,
		Start: s.Start.Format(time.DateOnly), End: s.End.Format(time.DateOnly), InitialCash: s.InitialCash,
		RunCount: s.RunCount, SkippedCount: s.SkippedCount, Counts: counts,
		ProgressPct: finished * 100 / max(s.RunCount, 1), RankBy: rankBy, Best: make([]rankedJSON, len(best)),
		CorrelationID: s.CorrelationID, CreatedAt: s.CreatedAt,
		CancelRequestedAt: s.CancelRequestedAt, FinishedAt: s.FinishedAt,
	}
	for i, b := range best {
		out.Best[i] = rankedJSON{RunID: b.RunID, Symbol: b.Symbol, Params: b.Params, Value: b.Value}
	}
	writeJSON(w, "application/json", http.StatusOK, out)
}

func handleGetSweep(logger *slog.Logger, q *store.Queries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query, ok := queryParams(w, r, "rank_by", "top")
		if !ok {
			return
		}
		qr := queryReader{query: query}
		rankBy := qr.oneOf("rank_by", rankMetrics, defaultRankBy)
		top := qr.intIn("top", 1, maxTop, defaultTop)
		if qr.answered(w, r) {
			return
		}
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		s, err := q.Sweep(r.Context(), userFrom(r.Context()).ID, id)
		if errors.Is(err, store.ErrNotFound) {
			writeProblem(w, r, http.StatusNotFound, "No such sweep.")
			return
		}
		if err != nil {
			serverError(logger, w, r, err)
			return
		}
		writeSweep(logger, w, r, q, s, rankBy, top)
	})
}

// handleCancelSweep answers POST /sweeps/{id}/cancel with the sweep as the
// cancel left it. A sweep whose runs have all finished, with no cancel
// asked of it before, is past cancelling (409).
func handleCancelSweep(logger *slog.Logger, q *store.Queries, c SweepEnqueuer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := resourceID(w, r)
		if !ok {
			return
		}
		ctx := r.Context()
		res, err := c.CancelSweep(ctx, userFrom(ctx).ID, id)
		var finished *enqueue.FinishedError
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeProblem(w, r, http.StatusNotFound, "No such sweep.")
			return
		case errors.As(err, &finished):
			writeProblem(w, r, http.StatusConflict, "Every run of this sweep has already finished.")
			return
		case err != nil:
			serverError(logger, w, r, err)
			return
		}
		if f := res.Finished; f != nil { // this cancel ended its last run
			f.Log(ctx, logger)
		}
		writeSweep(logger, w, r, q, res.Sweep, defaultRankBy, defaultTop)
	})
}
