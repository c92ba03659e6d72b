package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/internal/tracecontext"
	"github.com/backtestd/backtestd/migrations"
)

func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, "application/json", http.StatusOK, map[string]string{"status": "ok"})
	})
}

// handleReadyz answers 200 only when the database answers and its schema
// is the one this binary embeds, behind or ahead being as unready as
// unreachable: the API would answer 500s. One query per probe, uncached: a
// probe every few seconds costs the database nothing, and an answer is never
// stale.
func handleReadyz(logger *slog.Logger, db Database) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err := migrations.CheckCurrent(ctx, db)
		if err == nil {
			writeJSON(w, "application/json", http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		if clientGone(r.Context()) {
			return // the prober left: there is nobody to answer, nothing to report
		}
		logger.WarnContext(r.Context(), obs.EventRequestFailed, slog.String(obs.KeyError, err.Error()),
			slog.String(obs.KeyErrorType, obs.ErrorType(err)))
		detail := "The database is not reachable."
		var schema *migrations.SchemaError
		if errors.As(err, &schema) {
			detail = fmt.Sprintf("The database schema is at version %d; this server needs version %d.", schema.Found, schema.Want)
		}
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusServiceUnavailable, detail)
	})
}

// strategyJSON is a strategy as the API shows it.
type strategyJSON struct {
	ID        uuid.UUID       `json:"id"`
	Name      string          `json:"name"`
	Kind      string          `json:"kind"`
	Params    json.RawMessage `json:"params"`
	CreatedAt time.Time       `json:"created_at"`
}

func toStrategyJSON(s store.Strategy) strategyJSON {
	return strategyJSON{ID: s.ID, Name: s.Name, Kind: s.Kind, Params: s.Params, CreatedAt: s.CreatedAt}
}

type createStrategyRequest struct {
	Name   string          `json:"name"`
	Kind   string          `json:"kind"`
	Params json.RawMessage `json:"params"`
}

func handleCreateStrategy(logger *slog.Logger, q *store.Queries, keyTTL time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := queryParams(w, r); !ok {
			return
		}
		req, ok := decode[createStrategyRequest](w, r)
		if !ok {
			return
		}
		idem, ok := newIdempotency(w, r, logger, keyTTL, req)
		if !ok {
			return
		}
		var invalid []InvalidParam
		name := strings.TrimSpace(req.Name)
		if !validName(name) {
			invalid = append(invalid, InvalidParam{Name: "name", Reason: fmt.Sprintf(
				"must be text of at most %d characters without control characters, "+
					"line separators or bidirectional formatting characters", store.MaxNameLength)})
		}
		spec, err := backtest.ParseStrategy(req.Kind, req.Params)
		if err != nil {
			more, ok := strategyInvalid(logger, w, r, err)
			if !ok {
				return
			}
			invalid = append(invalid, more...)
		}
		if len(invalid) > 0 {
			writeInvalidParams(w, r, invalid)
			return
		}
		if name == "" {
			name = spec.Kind
		}
		user := userFrom(r.Context())
		s, err := createStrategy(r.Context(), q, idem, store.NewStrategy{UserID: user.ID, Name: name, Kind: spec.Kind, Params: spec.Params()})
		if answeredCreate(logger, w, r, idem, err, nil) {
			return
		}
		logger.InfoContext(r.Context(), obs.EventStrategyCreated, slog.String(obs.KeyStrategyID, s.ID.String()))
		status, location, body := strategyCreated(s)
		writeCreated(w, idem, status, location, body)
	})
}

// strategyInvalid returns the refused fields of an error of
// backtest.ParseStrategy. A *backtest.ValidationError, or several, all it
// returns for any input, is the client's mistake: a 422 to answer. Anything
// else would be a fault of ours, not a reason to go on with an empty
// strategy: it answers 500, logged, and returns false.
func strategyInvalid(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) ([]InvalidParam, bool) {
	invalid, ok := invalidParamsOf(err)
	if !ok {
		serverError(logger, w, r, fmt.Errorf("parse strategy: %w", err))
	}
	return invalid, ok
}

// invalidParamsOf returns the refused fields err names, in order, when it
// is a strategy's refusal: a *backtest.ValidationError, or several
// (backtest.ValidationErrors). It returns false for any other error.
func invalidParamsOf(err error) ([]InvalidParam, bool) {
	var many backtest.ValidationErrors
	if errors.As(err, &many) && len(many) > 0 {
		out := make([]InvalidParam, len(many))
		for i, ve := range many {
			out[i] = InvalidParam{Name: ve.Field, Reason: ve.Message}
		}
		return out, true
	}
	var one *backtest.ValidationError
	if errors.As(err, &one) {
		return []InvalidParam{{Name: one.Field, Reason: one.Message}}, true
	}
	return nil, false
}

func handleGetStrategy(logger *slog.Logger, q *store.Queries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := resourceID(w, r)
		if !ok {
			return
		}
		s, err := q.Strategy(r.Context(), userFrom(r.Context()).ID, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			writeProblem(w, r, http.StatusNotFound, "No such strategy.")
		case err != nil:
			serverError(logger, w, r, err)
		default:
			writeJSON(w, "application/json", http.StatusOK, toStrategyJSON(s))
		}
	})
}

// resourceID reads the request on one resource: no query parameters, and
// the resource's pathID.
func resourceID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	if _, ok := queryParams(w, r); !ok {
		return uuid.UUID{}, false
	}
	return pathID(w, r)
}

// pathID reads the resource's {id} in the path. An ID that is not a UUID in
// the form the API writes (parseID) cannot name anything, so it is a 404
// like any unknown ID.
func pathID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, ok := parseID(mux.Vars(r)["id"])
	if !ok {
		writeProblem(w, r, http.StatusNotFound, "No such resource.")
		return uuid.UUID{}, false
	}
	return id, true
}

type createBacktestRequest struct {
	StrategyID  string   `json:"strategy_id"`
	Symbol      string   `json:"symbol"`
	Start       string   `json:"start"`
	End         string   `json:"end"`
	InitialCash *float64 `json:"initial_cash"`
}

// strategyGone refuses a strategy_id that names none of the user's
// strategies: an answer of the database's, which the stored response of an
// Idempotency-Key wins over.
var strategyGone = InvalidParam{Name: "strategy_id", Reason: "no such strategy"}

// strategyLookup returns the caller's strategy id, parsed, or an error
// wrapping store.ErrNotFound when the caller has none of that ID.
type strategyLookup func(ctx context.Context, id uuid.UUID) (backtest.Strategy, error)

// validate checks every field of a backtest request at once: it returns the
// backtest, or every refused field and why, in the order of the fields. A
// range with fewer bars than the strategy needs is refused here, by the
// engine's own rule (Strategy.CheckBars), rather than failing in the
// worker. An error is a fault of the server's (the lookup failed).
func (req createBacktestRequest) validate(ctx context.Context, lookup strategyLookup) (enqueue.NewBacktest, []InvalidParam, error) {
	var (
		nb       enqueue.NewBacktest
		invalid  []InvalidParam
		strategy *backtest.Strategy
	)
	refuse := func(name, reason string) { invalid = append(invalid, InvalidParam{Name: name, Reason: reason}) }
	if id, ok := parseID(req.StrategyID); !ok {
		refuse("strategy_id", idReason("strategy"))
	} else {
		s, err := lookup(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			invalid = append(invalid, strategyGone)
		case err != nil:
			return nb, nil, err
		default:
			strategy, nb.StrategyID = &s, id
		}
	}
	symbol, ok := parseSymbol(req.Symbol)
	if !ok {
		refuse("symbol", symbolReason)
	}
	start, end, ok := validateRange(refuse, req.Start, req.End)
	if ok && strategy != nil {
		if err := strategy.CheckBars(backtest.TradingDays(start, end)); err != nil {
			refuse("end", err.Error()+" (weekdays from start to end): move end later or start earlier")
		}
	}
	cash := validateCash(refuse, req.InitialCash)
	if len(invalid) > 0 {
		return enqueue.NewBacktest{}, invalid, nil
	}
	nb.Symbol, nb.Start, nb.End, nb.InitialCash = symbol, start, end, cash
	return nb, nil, nil
}

// lookupStrategy is the strategyLookup of userID's strategies in q.
func lookupStrategy(q *store.Queries, userID uuid.UUID) strategyLookup {
	return func(ctx context.Context, id uuid.UUID) (backtest.Strategy, error) {
		s, err := q.Strategy(ctx, userID, id)
		if errors.Is(err, store.ErrNotFound) {
			// A user deleted while their key is cached has no strategies
			// either: that is a 401, as for any write of theirs. LockUser
			// outside a transaction is an existence check.
			if err := q.LockUser(ctx, userID); err != nil {
				return backtest.Strategy{}, err
			}
		}
		if err != nil {
			return backtest.Strategy{}, err
		}
		spec, err := backtest.ParseStrategy(s.Kind, s.Params)
		if err != nil { // it was checked when saved
			return backtest.Strategy{}, fmt.Errorf("parse stored strategy %s: %w", id, err)
		}
		return spec, nil
	}
}

// unfinishedRetryAfter is the Retry-After of a 429 at the bound of
// unfinished runs, in seconds: when some of a full queue may have finished.
const unfinishedRetryAfter = "60"

// origin is who asked for what a request creates, and where: the user, the
// request's correlation ID, and its span's traceparent, if it has one.
func origin(ctx context.Context) (userID uuid.UUID, correlationID, traceparent string) {
	if span, ok := tracecontext.From(ctx); ok {
		traceparent = span.String()
	}
	return userFrom(ctx).ID, obs.CorrelationID(ctx), traceparent
}

// answeredCreate answers a creating request that failed, and reports
// whether err was a failure: a replay or a reused key of the request's
// Idempotency-Key, the bound of unfinished runs (429, with Retry-After and
// the detail tooMany writes), a user deleted since the key was cached, or a
// fault of ours. tooMany is nil where the bound cannot be met.
func answeredCreate(logger *slog.Logger, w http.ResponseWriter, r *http.Request, idem *idempotency, err error,
	tooMany func(*enqueue.TooManyUnfinishedError) string,
) bool {
	var limit *enqueue.TooManyUnfinishedError
	switch {
	case err == nil:
		return false
	case idem.answered(w, r, err):
	case tooMany != nil && errors.As(err, &limit):
		w.Header().Set("Retry-After", unfinishedRetryAfter)
		writeKindProblem(w, r, ProblemTooManyUnfinished, tooMany(limit))
	case errors.Is(err, store.ErrUserGone):
		userGone(w, r)
	default:
		serverError(logger, w, r, err)
	}
	return true
}

type enqueuedJSON struct {
	RunID         uuid.UUID `json:"run_id"`
	Status        string    `json:"status"`
	CorrelationID string    `json:"correlation_id"`
}

func handleCreateBacktest(logger *slog.Logger, q *store.Queries, enq Enqueuer, keyTTL time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := queryParams(w, r); !ok {
			return
		}
		req, ok := decode[createBacktestRequest](w, r)
		if !ok {
			return
		}
		idem, ok := newIdempotency(w, r, logger, keyTTL, req)
		if !ok {
			return
		}
		ctx := r.Context()
		nb, invalid, err := req.validate(ctx, lookupStrategy(q, userFrom(ctx).ID))
		if answeredCreate(logger, w, r, nil, err, nil) { // a lookup of the strategy's that failed
			return
		}
		if len(invalid) > 0 {
			if slices.Contains(invalid, strategyGone) && answeredCreate(logger, w, r, idem, idem.held(ctx, q), nil) {
				return
			}
			writeInvalidParams(w, r, invalid)
			return
		}
		nb.UserID, nb.CorrelationID, nb.Traceparent = origin(ctx)
		nb.Hook = txHook(idem, backtestAccepted)
		run, err := enq.Enqueue(ctx, nb)
		if errors.Is(err, store.ErrNotFound) { // deleted since validate
			writeInvalidParams(w, r, []InvalidParam{strategyGone})
			return
		}
		if answeredCreate(logger, w, r, idem, err, func(e *enqueue.TooManyUnfinishedError) string {
			return fmt.Sprintf("You have %d backtests queued or running, the most allowed: start more once some have finished.", e.Limit)
		}) {
			return
		}
		logger.InfoContext(ctx, obs.EventBacktestEnqueued,
			slog.String(obs.KeyRunID, run.ID.String()),
			slog.Int64(obs.KeyJobID, run.JobID),
			slog.String(obs.KeyStrategyID, run.StrategyID.String()))
		status, location, body := backtestAccepted(run)
		writeCreated(w, idem, status, location, body)
	})
}

// backtestAccepted is the answer to a POST /backtests that enqueued run.
func backtestAccepted(run store.Run) (status int, location string, body any) {
	return http.StatusAccepted, "/backtests/" + run.ID.String(),
		enqueuedJSON{RunID: run.ID, Status: run.Status, CorrelationID: run.CorrelationID}
}

func handleGetBacktest(logger *slog.Logger, q *store.Queries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := resourceID(w, r)
		if !ok {
			return
		}
		run, err := q.Run(r.Context(), userFrom(r.Context()).ID, id)
		if errors.Is(err, store.ErrNotFound) {
			writeProblem(w, r, http.StatusNotFound, "No such backtest.")
			return
		}
		if err != nil {
			serverError(logger, w, r, err)
			return
		}
		writeRun(logger, w, r, q, http.StatusOK, run)
	})
}
