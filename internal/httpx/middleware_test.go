package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// testRouter is a router like NewServer's, with routes that exercise the
// middleware, including one that panics.
func testRouter(logger *slog.Logger) http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = statusHandler(http.StatusNotFound, "No such resource.")
	r.MethodNotAllowedHandler = statusHandler(http.StatusMethodNotAllowed, "This method is not allowed here.")
	r.HandleFunc("/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		logger.InfoContext(r.Context(), "handler_ran")
		writeJSON(w, "application/json", http.StatusOK, map[string]string{"id": mux.Vars(r)["id"]})
	}).Methods(http.MethodGet)
	r.HandleFunc("/panic", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", "/half-made")
		panic("handler exploded")
	})
	r.HandleFunc("/db", func(w http.ResponseWriter, r *http.Request) {
		// A query that failed because the request's context ended.
		serverError(logger, w, r, fmt.Errorf("select runs: %w", r.Context().Err()))
	})
	r.HandleFunc("/panic-after-write", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		panic("too late for a 500")
	})
	r.Use(routeTemplate)
	return observe(logger, nil, r)
}

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func TestObserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		method     string
		path       string
		header     []string // X-Correlation-ID values
		wantStatus int
		wantReuse  bool
		wantReject string
		wantRoute  string
		wantEvents []string
		wantLevel  string
		// The request's context: cancelled as net/http does when the client
		// goes away, or past a deadline of the server's own.
		cancelled, pastDeadline bool
		wantLogged              int // the access line's status_code, when not wantStatus
	}{
		{
			name: "matched route, id reused", method: "GET", path: "/items/7", header: []string{"abc-123"},
			wantStatus: 200, wantReuse: true, wantRoute: "/items/{id}",
			wantEvents: []string{"handler_ran", obs.EventRequestFinished}, wantLevel: "info",
		},
		{
			name: "router 404", method: "GET", path: "/nowhere", wantStatus: 404,
			wantEvents: []string{obs.EventRequestFinished}, wantLevel: "info",
		},
		{
			name: "router 405", method: "DELETE", path: "/items/7", wantStatus: 405,
			wantEvents: []string{obs.EventRequestFinished}, wantLevel: "info",
		},
		{
			name: "bad id replaced and logged once", method: "GET", path: "/items/7", header: []string{"has space"},
			wantStatus: 200, wantReject: obs.RejectInvalid, wantRoute: "/items/{id}",
			wantEvents: []string{obs.EventCorrelationIDRejected, "handler_ran", obs.EventRequestFinished}, wantLevel: "info",
		},
		{
			name: "duplicate header replaced", method: "GET", path: "/items/7", header: []string{"first-value", "second-value"},
			wantStatus: 200, wantReject: obs.RejectMultiple, wantRoute: "/items/{id}",
			wantEvents: []string{obs.EventCorrelationIDRejected, "handler_ran", obs.EventRequestFinished}, wantLevel: "info",
		},
		{
			name: "panic becomes a 500 problem", method: "GET", path: "/panic", header: []string{"p-1"},
			wantStatus: 500, wantReuse: true, wantRoute: "/panic",
			wantEvents: []string{obs.EventRequestPanicked, obs.EventRequestFinished}, wantLevel: "error",
		},
		{
			name: "client gone before the answer", method: "GET", path: "/items/7", cancelled: true,
			wantStatus: 200, wantLogged: 499, wantRoute: "/items/{id}",
			wantEvents: []string{"handler_ran", obs.EventRequestFinished}, wantLevel: "info",
		},
		{
			name: "query cancelled by a departed client is not a server error", method: "GET", path: "/db", cancelled: true,
			wantStatus: 200, wantLogged: 499, wantRoute: "/db",
			wantEvents: []string{obs.EventRequestFinished}, wantLevel: "info",
		},
		{
			name: "our own deadline passing is a server error", method: "GET", path: "/db", pastDeadline: true,
			wantStatus: 503, wantRoute: "/db",
			wantEvents: []string{obs.EventRequestFailed, obs.EventRequestFinished}, wantLevel: "error",
		},
		{
			name: "panic after the header keeps the status", method: "GET", path: "/panic-after-write",
			wantStatus: 200, wantRoute: "/panic-after-write",
			wantEvents: []string{obs.EventRequestPanicked, obs.EventRequestFinished}, wantLevel: "info",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			h := testRouter(obs.NewLogger(&buf, obs.Options{Service: "server"}))
			ctx := t.Context()
			if tt.cancelled {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			if tt.pastDeadline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, time.Unix(0, 0))
				defer cancel()
			}
			req := httptest.NewRequestWithContext(ctx, tt.method, tt.path, nil)
			for _, v := range tt.header {
				req.Header.Add(HeaderCorrelationID, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			require.Equal(t, tt.wantStatus, rec.Code)
			id := rec.Header().Get(HeaderCorrelationID)
			require.Len(t, rec.Header().Values(HeaderCorrelationID), 1, "set, not appended")
			if tt.wantReuse {
				require.Equal(t, tt.header[0], id)
			} else {
				require.Len(t, id, 36, "a new UUID")
			}
			if tt.wantStatus >= 400 {
				require.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
				var p Problem
				require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
				require.Equal(t, id, p.CorrelationID)
				require.Equal(t, tt.wantStatus, p.Status)
				require.NotContains(t, rec.Body.String(), "exploded", "no internals in the body")
				require.Empty(t, rec.Header().Get("Location"), "a failed handler's headers are dropped")
			}

			lines := decodeLines(t, &buf)
			var events []string
			for _, l := range lines {
				events = append(events, l[obs.KeyEvent].(string))
				require.Equal(t, id, l[obs.KeyCorrelationID], "every line carries the id: %v", l)
				for _, v := range tt.header {
					if v != id {
						require.NotContains(t, buf.String(), v, "the rejected value is never logged")
					}
				}
			}
			require.Equal(t, tt.wantEvents, events)
			last := lines[len(lines)-1]
			require.Equal(t, tt.method, last[obs.KeyMethod])
			require.Equal(t, tt.path, last[obs.KeyPath])
			require.Equal(t, tt.wantRoute, last[obs.KeyRoute])
			wantLogged := tt.wantStatus
			if tt.wantLogged != 0 {
				wantLogged = tt.wantLogged
			}
			require.InDelta(t, wantLogged, last[obs.KeyStatusCode], 0)
			if wantLogged == StatusClientClosedRequest {
				require.NotContains(t, buf.String(), obs.KeyTraceback, "a departed client is no fault to trace")
			}
			require.Contains(t, last, obs.KeyDurationMS)
			require.Equal(t, tt.wantLevel, last[obs.KeyLevel])
			if tt.wantReject != "" {
				require.Equal(t, tt.wantReject, lines[0][obs.KeyReason])
				require.Contains(t, lines[0], obs.KeyHeaderLength)
			}
			if tt.wantEvents[0] == obs.EventRequestPanicked {
				require.Equal(t, true, lines[0][obs.KeyPanic])
				frames, _ := lines[0][obs.KeyTraceback].([]any)
				require.NotEmpty(t, frames)
				first, _ := frames[0].(map[string]any)
				require.Contains(t, first["function"], "testRouter", "the first frame is the panicking handler")
			}
		})
	}
}
