package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/internal/tracecontext"
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
	if _, err := backtest.ParseStrategy(req.Kind, nil); err != nil {
		var ve *backtest.ValidationError
		if errors.As(err, &ve) && ve.Field == "kind" {
			refuse("kind", ve.Message)
		}
	}
	gridOK := true
	if req.ParamsGrid == nil {
		refuse("params_grid", "is required: an object of parameter names to lists of values ({} for none)")
		gridOK = false
	} else {
		for _, name := range sortedKeys(*req.ParamsGrid) {
			if len((*req.ParamsGrid)[name]) == 0 {
				refuse("params_grid."+name, "must be a list of at least one value")
				gridOK = false
			}
		}
	}
	symbols := make([]string, 0, len(req.Symbols))
	switch {
	case len(req.Symbols) == 0:
		refuse("symbols", "must be a list of 1 to 100 symbols")
	case len(req.Symbols) > maxSweepSymbols:
		refuse("symbols", fmt.Sprintf("must be a list of 1 to %d symbols", maxSweepSymbols))
	default:
		for _, s := range req.Symbols {
			if !symbolPattern.MatchString(s) {
				refuse("symbols", "each must be 1 to 16 letters, digits, '.' or '-'")
				break
			}
			s = strings.ToUpper(s) // as POST /backtests stores it
			if slices.Contains(symbols, s) {
				refuse("symbols", "must not name a symbol twice ("+s+")")
				break
			}
			symbols = append(symbols, s)
		}
	}
	start, startErr := time.Parse(time.DateOnly, req.Start)
	if startErr != nil {
		refuse("start", "must be a date, YYYY-MM-DD")
	}
	end, endErr := time.Parse(time.DateOnly, req.End)
	switch {
	case endErr != nil:
		refuse("end", "must be a date, YYYY-MM-DD")
	case startErr != nil:
	case !end.After(start):
		refuse("end", "must be after start")
	case end.After(start.AddDate(maxSpanYears, 0, 0)):
		refuse("end", "must be at most 100 years after start")
	}
	switch {
	case req.InitialCash == nil:
		refuse("initial_cash", "is required")
	case !(*req.InitialCash >= minInitialCash && *req.InitialCash <= maxInitialCash):
		refuse("initial_cash", "must be between 1 and 1e12")
	}
	if len(invalid) > 0 || !gridOK {
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
		var (
			many backtest.ValidationErrors
			one  *backtest.ValidationError
		)
		switch {
		case errors.As(exp.FirstRefusal, &many):
			reason += " (" + many[0].Field + " " + many[0].Message + ")"
		case errors.As(exp.FirstRefusal, &one):
			reason += " (" + one.Field + " " + one.Message + ")"
		case exp.FirstRefusal != nil:
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
		Symbols: symbols, Start: start, End: end, InitialCash: *req.InitialCash,
	}, nil, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
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
		ns.UserID = userFrom(ctx).ID
		ns.CorrelationID = obs.CorrelationID(ctx)
		if span, ok := tracecontext.From(ctx); ok {
			ns.Traceparent = span.String()
		}
		if idem != nil {
			ns.Hook = idempotentHook[store.Sweep]{idem: idem, render: sweepAccepted}
		}
		sweep, err := enq.EnqueueSweep(ctx, ns)
		if idem.answered(w, r, err) {
			return
		}
		var tooMany *enqueue.TooManyUnfinishedError
		switch {
		case errors.As(err, &tooMany):
			w.Header().Set("Retry-After", unfinishedRetryAfter)
			writeKindProblem(w, r, ProblemTooManyUnfinished, fmt.Sprintf(
				"You have %d backtests queued or running; this sweep's %d more would pass the most allowed, %d: "+
					"start it once some have finished, or make it smaller.", tooMany.Unfinished, tooMany.Requested, tooMany.Limit))
			return
		case errors.Is(err, store.ErrUserGone):
			userGone(w, r)
			return
		case err != nil:
			serverError(logger, w, r, err)
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
	unfinished := counts[store.StatusQueued] + counts[store.StatusRunning] + counts[store.StatusRetrying]
	switch {
	// Final once marked (finished_at, with its sweep_finished line), not
	// merely once the counts say so: the one who ended the last run marks
	// it just after, and the answer never has a final status without
	// finished_at.
	case s.FinishedAt != nil && s.CancelRequestedAt != nil:
		return store.StatusCancelled
	case s.FinishedAt != nil:
		return "finished"
	case unfinished == s.RunCount && counts[store.StatusQueued] == s.RunCount:
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

// sweepID reads the {id} of a sweep's path; an ID that cannot name a
// sweep is a 404.
func sweepID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, ok := parseID(mux.Vars(r)["id"])
	if !ok {
		writeProblem(w, r, http.StatusNotFound, "No such sweep.")
	}
	return id, ok
}

func handleGetSweep(logger *slog.Logger, q *store.Queries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query, ok := queryParams(w, r, "rank_by", "top")
		if !ok {
			return
		}
		qr := queryReader{query: query}
		rankBy, top := defaultRankBy, defaultTop
		if v, ok := qr.one("rank_by"); ok {
			if slices.Contains(rankMetrics, v) {
				rankBy = v
			} else {
				qr.fail("rank_by", "must be one of "+strings.Join(rankMetrics, ", "))
			}
		}
		if v, ok := qr.one("top"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxTop {
				qr.fail("top", fmt.Sprintf("must be a whole number from 1 to %d", maxTop))
			} else {
				top = n
			}
		}
		if qr.answered(w, r) {
			return
		}
		id, ok := sweepID(w, r)
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
		if _, ok := queryParams(w, r); !ok {
			return
		}
		id, ok := sweepID(w, r)
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

// maxSweepRuns is the bound of deps, or its default.
func maxSweepRuns(deps Deps) int {
	if deps.MaxSweepRuns > 0 {
		return deps.MaxSweepRuns
	}
	return config.DefaultMaxSweepRuns
}
