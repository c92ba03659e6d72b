package httpx

import (
	"encoding/json"
	"net/http"

	"github.com/backtestd/backtestd/internal/obs"
)

// Problem is an RFC 9457 problem body, with the request's correlation ID so
// that a client can quote it in a bug report.
type Problem struct {
	Type          string         `json:"type"`
	Title         string         `json:"title"`
	Status        int            `json:"status"`
	Detail        string         `json:"detail,omitempty"`
	Instance      string         `json:"instance,omitempty"`
	CorrelationID string         `json:"correlation_id"`
	InvalidParams []InvalidParam `json:"invalid_params,omitempty"`
}

// InvalidParam names one input that was rejected, and why.
type InvalidParam struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string, invalid ...InvalidParam) {
	writeJSON(w, "application/problem+json", status, Problem{
		Type:          "about:blank",
		Title:         http.StatusText(status),
		Status:        status,
		Detail:        detail,
		Instance:      r.URL.Path,
		CorrelationID: obs.CorrelationID(r.Context()),
		InvalidParams: invalid,
	})
}

// writeInvalid answers 422 for input that is well-formed but wrong.
func writeInvalid(w http.ResponseWriter, r *http.Request, name, reason string) {
	writeProblem(w, r, http.StatusUnprocessableEntity, name+": "+reason, InvalidParam{Name: name, Reason: reason})
}

// writeJSON sets the headers before the status: once WriteHeader is called,
// later header changes are lost.
func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // our own response types always marshal
		status, body = http.StatusInternalServerError, []byte(`{"title":"Internal Server Error","status":500}`)
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// statusHandler answers with a problem: the router's 404 and 405.
func statusHandler(status int, detail string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, status, detail)
	})
}
