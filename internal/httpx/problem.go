package httpx

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"

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

// ProblemKind names a kind of problem: a problem's type is
// ProblemTypePrefix followed by its kind, and a client branches on it.
type ProblemKind string

// ProblemTypePrefix starts every problem type; the server answers GET on
// each type with what the kind means.
const ProblemTypePrefix = "/problems/"

// The kinds of problem, each documented in docs/api.md and
// api/openapi.yaml.
const (
	ProblemValidation           ProblemKind = "validation"
	ProblemUnauthorized         ProblemKind = "unauthorized"
	ProblemForbidden            ProblemKind = "forbidden"
	ProblemNotFound             ProblemKind = "not_found"
	ProblemMethodNotAllowed     ProblemKind = "method_not_allowed"
	ProblemConflict             ProblemKind = "conflict"
	ProblemPayloadTooLarge      ProblemKind = "payload_too_large"
	ProblemUnsupportedMediaType ProblemKind = "unsupported_media_type"
	ProblemUnprocessable        ProblemKind = "unprocessable"
	ProblemIdempotencyKeyReused ProblemKind = "idempotency_key_reused"
	ProblemRateLimited          ProblemKind = "rate_limited"
	ProblemTooManyUnfinished    ProblemKind = "too_many_unfinished"
	ProblemInternal             ProblemKind = "internal"
	ProblemUnavailable          ProblemKind = "unavailable"
)

// Type is the kind's problem type URI.
func (k ProblemKind) Type() string { return ProblemTypePrefix + string(k) }

// ProblemKindInfo is what a kind of problem means: what GET on its type
// answers.
type ProblemKindInfo struct {
	Type        string      `json:"type"`
	Kind        ProblemKind `json:"kind"`
	Title       string      `json:"title"`
	Status      int         `json:"status"`
	Description string      `json:"description"`
}

// problemKinds is every kind of problem the API answers with, built once
// and never written after. Of kinds that share a status, the first listed
// is the one the status stands for (kindOfStatus).
var problemKinds = withTypes([]ProblemKindInfo{
	{
		Kind: ProblemValidation, Status: http.StatusBadRequest, Title: "Invalid request",
		Description: "The request does not follow the API's document: a body that is not the JSON object described, " +
			"an unknown field, a query parameter the path does not take or a bad value of one, two Authorization headers. " +
			"invalid_params names the query parameters refused.",
	},
	{
		Kind: ProblemUnauthorized, Status: http.StatusUnauthorized, Title: "Unauthorized",
		Description: "No API key, or one that is not valid (revoked, mistyped, or its user deleted): " +
			"send Authorization: Bearer <key>.",
	},
	{
		Kind: ProblemForbidden, Status: http.StatusForbidden, Title: "Forbidden",
		Description: "A cross-origin request that would change something in River UI.",
	},
	{
		Kind: ProblemNotFound, Status: http.StatusNotFound, Title: "Not found",
		Description: "No such resource, or it is not yours: the API does not tell the two apart.",
	},
	{
		Kind: ProblemMethodNotAllowed, Status: http.StatusMethodNotAllowed, Title: "Method not allowed",
		Description: "The path does not take this method; Allow lists those it takes.",
	},
	{
		Kind: ProblemConflict, Status: http.StatusConflict, Title: "Conflict",
		Description: "The resource's state does not allow the request: a finished run cannot be cancelled, " +
			"a strategy with unfinished runs cannot be deleted.",
	},
	{
		Kind: ProblemPayloadTooLarge, Status: http.StatusRequestEntityTooLarge, Title: "Payload too large",
		Description: "The body is larger than the API reads (1 MiB).",
	},
	{
		Kind: ProblemUnsupportedMediaType, Status: http.StatusUnsupportedMediaType, Title: "Unsupported media type",
		Description: "The body is not application/json.",
	},
	{
		Kind: ProblemUnprocessable, Status: http.StatusUnprocessableEntity, Title: "Unprocessable request",
		Description: "The body is well-formed but some of its values cannot be used, or the request could not succeed " +
			"(a date range with fewer bars than the strategy needs); invalid_params lists every one at once.",
	},
	{
		Kind: ProblemIdempotencyKeyReused, Status: http.StatusUnprocessableEntity, Title: "Idempotency key reused",
		Description: "The Idempotency-Key was first used with another request body: a key names one request.",
	},
	{
		Kind: ProblemRateLimited, Status: http.StatusTooManyRequests, Title: "Too many requests",
		Description: "Too many failed authentications from this address; Retry-After says when to try again.",
	},
	{
		Kind: ProblemTooManyUnfinished, Status: http.StatusTooManyRequests, Title: "Too many unfinished backtests",
		Description: "You have as many backtests queued, running or retrying as allowed; start more once some have finished " +
			"(Retry-After is a hint).",
	},
	{
		Kind: ProblemInternal, Status: http.StatusInternalServerError, Title: "Internal server error",
		Description: "A fault of the service. Nothing of it is shown; quote the correlation_id to its operators.",
	},
	{
		Kind: ProblemUnavailable, Status: http.StatusServiceUnavailable, Title: "Service unavailable",
		Description: "The database is out of reach, or not at the schema this server needs; try again after Retry-After.",
	},
})

func withTypes(kinds []ProblemKindInfo) []ProblemKindInfo {
	for i := range kinds {
		kinds[i].Type = kinds[i].Kind.Type()
	}
	return kinds
}

// problemKindsByName indexes problemKinds by kind; read only.
var problemKindsByName = func() map[ProblemKind]ProblemKindInfo {
	m := make(map[ProblemKind]ProblemKindInfo, len(problemKinds))
	for _, k := range problemKinds {
		m[k.Kind] = k
	}
	return m
}()

// problemKindsByStatus is the kind each status stands for, derived from
// problemKinds; read only.
var problemKindsByStatus = func() map[int]ProblemKind {
	m := make(map[int]ProblemKind, len(problemKinds))
	for _, k := range slices.Backward(problemKinds) { // the first listed wins
		m[k.Status] = k.Kind
	}
	return m
}()

// ProblemKinds returns every kind of problem the API answers with: a copy,
// the caller's to change.
func ProblemKinds() []ProblemKindInfo { return slices.Clone(problemKinds) }

// problemKindInfo returns what kind means, if it is one.
func problemKindInfo(kind ProblemKind) (ProblemKindInfo, bool) {
	info, ok := problemKindsByName[kind]
	return info, ok
}

// kindOfStatus is the kind of problem a status stands for: its only kind,
// or the first listed of its kinds (writeKindProblem answers the others).
func kindOfStatus(status int) (ProblemKind, bool) {
	kind, ok := problemKindsByStatus[status]
	return kind, ok
}

// writeProblem answers with a problem of the kind the status stands for.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string, invalid ...InvalidParam) {
	kind, ok := kindOfStatus(status)
	if !ok {
		// Never reached: every status the API answers has a kind, and a
		// test holds the document to it.
		writeProblemBody(w, r, "about:blank", http.StatusText(status), status, detail, invalid)
		return
	}
	writeKindProblem(w, r, kind, detail, invalid...)
}

// writeKindProblem answers with a problem of the given kind, at its status:
// for the kinds that share a status with another (idempotency_key_reused,
// too_many_unfinished).
func writeKindProblem(w http.ResponseWriter, r *http.Request, kind ProblemKind, detail string, invalid ...InvalidParam) {
	info, ok := problemKindInfo(kind)
	if !ok { // a constant of this file that the table lacks: a fault of ours
		info = ProblemKindInfo{Type: kind.Type(), Title: "Internal server error", Status: http.StatusInternalServerError}
	}
	writeProblemBody(w, r, info.Type, info.Title, info.Status, detail, invalid)
}

func writeProblemBody(w http.ResponseWriter, r *http.Request, typ, title string, status int, detail string, invalid []InvalidParam) {
	writeJSON(w, "application/problem+json", status, Problem{
		Type:          typ,
		Title:         title,
		Status:        status,
		Detail:        detail,
		Instance:      r.URL.Path,
		CorrelationID: obs.CorrelationID(r.Context()),
		InvalidParams: invalid,
	})
}

// writeInvalidParams answers 422 naming every refused input at once; the
// detail repeats them for a reader of the body alone.
func writeInvalidParams(w http.ResponseWriter, r *http.Request, invalid []InvalidParam) {
	parts := make([]string, len(invalid))
	for i, p := range invalid {
		parts[i] = p.Name + ": " + p.Reason
	}
	writeProblem(w, r, http.StatusUnprocessableEntity, strings.Join(parts, "; "), invalid...)
}

// writeJSON answers with v as JSON, a line of it.
func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // our own response types always marshal
		status, body = http.StatusInternalServerError, []byte(`{"title":"Internal Server Error","status":500}`)
	}
	writeBody(w, contentType, status, append(body, '\n'))
}

// writeBody answers with a body already encoded. It sets the headers
// before the status: once WriteHeader is called, later header changes are
// lost.
func writeBody(w http.ResponseWriter, contentType string, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// statusHandler answers with a problem: the router's 404.
func statusHandler(status int, detail string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, status, detail)
	})
}

// allowedMethods returns the methods router serves r's path with, OPTIONS
// last; none when no route has the path. It asks the router itself, so
// that Allow cannot disagree with the routes.
func allowedMethods(router *mux.Router, r *http.Request) []string {
	var allowed []string
	// The methods Allow may name, in the order it names them.
	for _, m := range [...]string{
		http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
	} {
		probe := r.Clone(r.Context())
		probe.Method = m
		var match mux.RouteMatch
		if router.Match(probe, &match) && match.MatchErr == nil && match.Route != nil {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		allowed = append(allowed, http.MethodOptions)
	}
	return allowed
}

// methodNotAllowed is the router's 405: a problem, with Allow (RFC 9110
// requires it).
func methodNotAllowed(router *mux.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", strings.Join(allowedMethods(router, r), ", "))
		writeProblem(w, r, http.StatusMethodNotAllowed, "This method is not allowed here; Allow lists those that are.")
	})
}

// options answers OPTIONS on any path the router has with 204 and Allow,
// without authentication: the methods of a path are no secret. It is not
// CORS, which the API does not do.
func options(router *mux.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		allowed := allowedMethods(router, r)
		if len(allowed) == 0 {
			writeProblem(w, r, http.StatusNotFound, "No such resource.")
			return
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleProblemKind answers GET on a problem type: what the kind means.
func handleProblemKind() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := queryParams(w, r); !ok {
			return
		}
		info, ok := problemKindInfo(ProblemKind(mux.Vars(r)["kind"]))
		if !ok {
			writeProblem(w, r, http.StatusNotFound, "No such kind of problem.")
			return
		}
		writeJSON(w, "application/json", http.StatusOK, info)
	})
}
