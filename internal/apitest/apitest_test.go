package apitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/apitest"
)

const (
	runID = "01a2175f-386b-7761-8b43-c03581273143"
	cid   = "cid-1"
)

// A run as the document has it; drift() changes one thing of it.
const goodRun = `{"id":"` + runID + `","strategy_id":"` + runID + `","symbol":"ACME","start":"2020-01-01",
"end":"2020-06-01","initial_cash":100,"status":"queued","progress_pct":0,"attempt":0,"attempts":[],
"next_attempt_at":null,"cancel_requested_at":null,"result":null,"error":null,"correlation_id":"cid-1",
"created_at":"2026-01-02T03:04:05.123456Z","started_at":null,"finished_at":null,
"updated_at":"2026-01-02T03:04:05.123456Z"}`

// reporter records what a Contract reports.
type reporter struct {
	mu   sync.Mutex
	errs []string
}

func (r *reporter) Helper() {}

func (r *reporter) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

type testBundle struct {
	contract *apitest.Contract
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	c, err := apitest.New(t.Context())
	require.NoError(t, err)
	return &testBundle{contract: c}
}

// answer is a handler that answers every request with the same response.
func answer(status int, contentType, body string, headers ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Correlation-ID", cid)
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func problem(status int, extra string) string {
	return fmt.Sprintf(`{"type":"/problems/x","title":"t","status":%d,"correlation_id":"cid-1"%s}`, status, extra)
}

// A handler that drifts from the document fails the test that calls it:
// each case feeds the checked handler an exchange the document does not
// allow, and one that it does.
func TestContractCatchesDrift(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const key = "Bearer bt_x"
	tests := []struct {
		name          string
		method, path  string
		auth          string
		contentType   string
		body          string
		handler       http.Handler
		wantViolation string // "" when the exchange follows the document
	}{
		{
			name: "a run as documented", method: http.MethodGet, path: "/backtests/" + runID, auth: key,
			handler: answer(http.StatusOK, "application/json", goodRun),
		},
		{
			name: "a run without attempts", method: http.MethodGet, path: "/backtests/" + runID, auth: key,
			handler:       answer(http.StatusOK, "application/json", strings.Replace(goodRun, `"attempts":[],`, "", 1)),
			wantViolation: "attempts",
		},
		{
			name: "an error as a Go type", method: http.MethodGet, path: "/backtests/" + runID, auth: key,
			handler: answer(http.StatusOK, "application/json", strings.Replace(goodRun,
				`"error":null`, `"error":{"type":"*backtest.InsufficientDataError","message":"m"}`, 1)),
			wantViolation: "response body doesn't match",
		},
		{
			name: "a status of its own", method: http.MethodGet, path: "/backtests/" + runID, auth: key,
			handler:       answer(http.StatusTeapot, "application/problem+json", problem(http.StatusTeapot, "")),
			wantViolation: "status is not supported",
		},
		{
			name: "a problem as plain JSON", method: http.MethodGet, path: "/backtests/" + runID, auth: key,
			handler:       answer(http.StatusNotFound, "application/json", problem(http.StatusNotFound, "")),
			wantViolation: "Content-Type",
		},
		{
			name: "a problem without correlation ID", method: http.MethodGet, path: "/backtests/" + runID, auth: key,
			handler: answer(http.StatusNotFound, "application/problem+json",
				`{"type":"/problems/not_found","title":"t","status":404}`),
			wantViolation: "correlation_id",
		},
		{
			name: "a problem whose status is not the response's", method: http.MethodGet, path: "/backtests/" + runID, auth: key,
			handler:       answer(http.StatusNotFound, "application/problem+json", problem(http.StatusBadRequest, "")),
			wantViolation: "the problem's status is 400",
		},
		{
			name: "an input named twice", method: http.MethodPost, path: "/backtests", auth: key, contentType: "application/json",
			body: `{}`,
			handler: answer(http.StatusUnprocessableEntity, "application/problem+json", problem(http.StatusUnprocessableEntity,
				`,"invalid_params":[{"name":"end","reason":"a"},{"name":"end","reason":"b"}]`)),
			wantViolation: `names "end" twice`,
		},
		{
			name: "an unknown parameter taken", method: http.MethodGet, path: "/backtests?colour=red", auth: key,
			handler:       answer(http.StatusOK, "application/json", `{"runs":[],"next_cursor":null}`),
			wantViolation: "the document refuses the request",
		},
		{
			name: "a bad limit taken", method: http.MethodGet, path: "/backtests?limit=500", auth: key,
			handler:       answer(http.StatusOK, "application/json", `{"runs":[],"next_cursor":null}`),
			wantViolation: "the document refuses the request",
		},
		{
			name: "a bad limit refused", method: http.MethodGet, path: "/backtests?limit=500", auth: key,
			handler: answer(http.StatusBadRequest, "application/problem+json", problem(http.StatusBadRequest, "")),
		},
		{
			name: "no key, yet answered", method: http.MethodGet, path: "/backtests",
			handler:       answer(http.StatusOK, "application/json", `{"runs":[],"next_cursor":null}`),
			wantViolation: "the document refuses the request",
		},
		{
			name: "a body that is not the document's, accepted", method: http.MethodPost, path: "/strategies", auth: key,
			contentType: "application/json", body: `{"kind":"martingale"}`,
			handler: answer(http.StatusCreated, "application/json",
				`{"id":"`+runID+`","name":"m","kind":"martingale","params":{},"created_at":"2026-01-02T03:04:05Z"}`,
				"Location", "/strategies/"+runID),
			wantViolation: "the document refuses the request",
		},
		{
			name: "a 201 without Location", method: http.MethodPost, path: "/strategies", auth: key,
			contentType: "application/json", body: `{"kind":"buy_and_hold"}`,
			handler: answer(http.StatusCreated, "application/json",
				`{"id":"`+runID+`","name":"b","kind":"buy_and_hold","params":{},"created_at":"2026-01-02T03:04:05Z"}`),
			wantViolation: `"Location"`,
		},
		{
			name: "an unknown path answered 404", method: http.MethodGet, path: "/nowhere",
			handler: answer(http.StatusNotFound, "application/problem+json", problem(http.StatusNotFound, "")),
		},
		{
			name: "an unknown path answered 200", method: http.MethodGet, path: "/nowhere",
			handler:       answer(http.StatusOK, "application/json", `{}`),
			wantViolation: "not 404",
		},
		{
			name: "a 405 with Allow", method: http.MethodPut, path: "/backtests",
			handler: answer(http.StatusMethodNotAllowed, "application/problem+json", problem(http.StatusMethodNotAllowed, ""),
				"Allow", "GET, POST, OPTIONS"),
		},
		{
			name: "a 405 without Allow", method: http.MethodPut, path: "/backtests",
			handler:       answer(http.StatusMethodNotAllowed, "application/problem+json", problem(http.StatusMethodNotAllowed, "")),
			wantViolation: "the document's methods are GET, OPTIONS, POST",
		},
		{
			name: "OPTIONS with a wrong Allow", method: http.MethodOptions, path: "/healthz",
			handler:       answer(http.StatusNoContent, "", "", "Allow", "GET, OPTIONS"),
			wantViolation: "the document's methods are GET, HEAD, OPTIONS",
		},
		{
			name: "OPTIONS with a body", method: http.MethodOptions, path: "/healthz",
			handler:       answer(http.StatusNoContent, "", "hello", "Allow", "GET, HEAD, OPTIONS"),
			wantViolation: "no body",
		},
		{
			name: "River UI is not the document's", method: http.MethodGet, path: "/riverui/api/jobs",
			handler: answer(http.StatusOK, "text/html", "<html>"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep := &reporter{}
			req := httptest.NewRequestWithContext(t.Context(), tt.method, tt.path, strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			b.contract.Handler(rep, tt.handler).ServeHTTP(rec, req)

			if tt.wantViolation == "" {
				require.Empty(t, rep.errs)
				return
			}
			require.Len(t, rep.errs, 1)
			require.Contains(t, rep.errs[0], tt.wantViolation)
			require.Contains(t, rep.errs[0], "does not follow api/openapi.yaml")
		})
	}
}

// The client side checks the same: a server that drifts fails the test
// whose client talks to it.
func TestTransportChecksTheServer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := httptest.NewServer(answer(http.StatusOK, "application/json", `{"status":"fine"}`))
	t.Cleanup(srv.Close)
	rep := &reporter{}
	client := &http.Client{Transport: b.contract.Transport(rep, nil)}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/healthz", nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.JSONEq(t, `{"status":"fine"}`, string(body), "the caller still reads the body")
	require.Len(t, rep.errs, 1)
	require.Contains(t, rep.errs[0], "GET /healthz -> 200 does not follow")
}
