package httpx

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/internal/store"
)

// runJSON is a run as the API shows it: the resource docs/api.md describes.
type runJSON struct {
	ID          uuid.UUID `json:"id"`
	StrategyID  uuid.UUID `json:"strategy_id"`
	Symbol      string    `json:"symbol"`
	Start       string    `json:"start"`
	End         string    `json:"end"`
	InitialCash float64   `json:"initial_cash"`
	Status      string    `json:"status"`
	ProgressPct int       `json:"progress_pct"`
	Attempt     int       `json:"attempt"`
	// Attempts is never null: a run not yet started has [].
	Attempts          []attemptJSON    `json:"attempts"`
	NextAttemptAt     *time.Time       `json:"next_attempt_at"`
	CancelRequestedAt *time.Time       `json:"cancel_requested_at"`
	Result            *json.RawMessage `json:"result"`
	Error             *errorJSON       `json:"error"`
	CorrelationID     string           `json:"correlation_id"`
	CreatedAt         time.Time        `json:"created_at"`
	StartedAt         *time.Time       `json:"started_at"`
	FinishedAt        *time.Time       `json:"finished_at"`
	UpdatedAt         time.Time        `json:"updated_at"`
}

// attemptJSON is one attempt of a run.
type attemptJSON struct {
	Attempt    int        `json:"attempt"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Outcome    *string    `json:"outcome"`
	Error      *errorJSON `json:"error"`
}

// errorJSON is why a run or an attempt failed or was cancelled: a code
// from the documented list, which clients branch on, and a message for
// people. The error's Go type is for developers, in the logs only.
type errorJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorOf is the error of a run or attempt, nil if it has none. A message
// stored without a code (written before codes existed, or by a path that
// knew none) is a fault of the service as far as a client can tell.
func errorOf(code, message string) *errorJSON {
	if code == "" && message == "" {
		return nil
	}
	if code == "" {
		code = store.ErrorCodeInternal
	}
	return &errorJSON{Code: code, Message: message}
}

func toRunJSON(r store.Run, attempts []store.RunAttempt) runJSON {
	out := runJSON{
		ID: r.ID, StrategyID: r.StrategyID, Symbol: r.Symbol,
		Start: r.Start.Format(time.DateOnly), End: r.End.Format(time.DateOnly), InitialCash: r.InitialCash,
		Status: r.Status, ProgressPct: r.ProgressPct, Attempt: r.Attempt,
		Attempts:      make([]attemptJSON, len(attempts)),
		NextAttemptAt: r.NextAttemptAt, CancelRequestedAt: r.CancelRequestedAt,
		Error:         errorOf(r.ErrorCode, r.ErrorMessage),
		CorrelationID: r.CorrelationID,
		CreatedAt:     r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, UpdatedAt: r.UpdatedAt,
	}
	if len(r.Result) > 0 {
		out.Result = &r.Result
	}
	for i, a := range attempts {
		out.Attempts[i] = attemptJSON{
			Attempt: a.Attempt, StartedAt: a.StartedAt, FinishedAt: a.FinishedAt,
			Error: errorOf(a.ErrorCode, a.ErrorMessage),
		}
		if a.Outcome != "" {
			out.Attempts[i].Outcome = &a.Outcome
		}
	}
	return out
}

// writeRun answers with run and its attempts.
func writeRun(logger *slog.Logger, w http.ResponseWriter, r *http.Request, q *store.Queries, status int, run store.Run) {
	attempts, err := q.RunAttempts(r.Context(), run.ID)
	if err != nil {
		serverError(logger, w, r, err)
		return
	}
	writeJSON(w, "application/json", status, toRunJSON(run, attempts))
}

// renderRuns renders a page of runs, loading their attempts in one query.
func renderRuns(ctx context.Context, q *store.Queries, runs []store.Run) ([]runJSON, error) {
	ids := make([]uuid.UUID, len(runs))
	for i, run := range runs {
		ids[i] = run.ID
	}
	attempts, err := q.AttemptsOfRuns(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]runJSON, len(runs))
	for i, run := range runs {
		out[i] = toRunJSON(run, attempts[run.ID])
	}
	return out, nil
}
