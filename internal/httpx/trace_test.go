package httpx

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/tracecontext"
)

func TestObserveContinuesTheClientsTrace(t *testing.T) {
	t.Parallel()
	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientID = "00f067aa0ba902b7"
		valid    = "00-" + traceID + "-" + clientID + "-01"
	)
	tests := []struct {
		name       string
		path       string
		header     []string // traceparent values
		wantTrace  bool
		wantReason string
		wantEvents []string
	}{
		{
			name: "valid: every line carries the trace", path: "/items/7", header: []string{valid}, wantTrace: true,
			wantEvents: []string{"handler_ran", obs.EventRequestFinished},
		},
		{
			name: "valid, and the handler panics", path: "/panic", header: []string{valid}, wantTrace: true,
			wantEvents: []string{obs.EventRequestPanicked, obs.EventRequestFinished},
		},
		{
			name: "valid, and no route matches", path: "/nowhere", header: []string{valid}, wantTrace: true,
			wantEvents: []string{obs.EventRequestFinished},
		},
		{
			name: "absent", path: "/items/7",
			wantEvents: []string{"handler_ran", obs.EventRequestFinished},
		},
		{
			name: "malformed: ignored once", path: "/items/7", header: []string{"00-" + strings.ToUpper(traceID) + "-" + clientID + "-01"},
			wantReason: tracecontext.RejectMalformed,
			wantEvents: []string{obs.EventTraceparentRejected, "handler_ran", obs.EventRequestFinished},
		},
		{
			name: "all-zero trace id", path: "/items/7", header: []string{"00-00000000000000000000000000000000-" + clientID + "-01"},
			wantReason: tracecontext.RejectZeroTraceID,
			wantEvents: []string{obs.EventTraceparentRejected, "handler_ran", obs.EventRequestFinished},
		},
		{
			name: "two headers", path: "/items/7", header: []string{valid, valid},
			wantReason: tracecontext.RejectMultiple,
			wantEvents: []string{obs.EventTraceparentRejected, "handler_ran", obs.EventRequestFinished},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			h := testRouter(obs.NewLogger(&buf, obs.Options{Service: "server"}))
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, tt.path, nil)
			for _, v := range tt.header {
				req.Header.Add(HeaderTraceparent, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			lines := decodeLines(t, &buf)
			events := make([]string, 0, len(lines))
			for _, l := range lines {
				events = append(events, l[obs.KeyEvent].(string))
			}
			require.Equal(t, tt.wantEvents, events)

			if !tt.wantTrace {
				require.Empty(t, rec.Header().Values(HeaderTraceparent))
				for _, l := range lines {
					require.NotContains(t, l, obs.KeyTraceID)
					require.NotContains(t, l, obs.KeySpanID)
				}
				if tt.wantReason != "" {
					require.Equal(t, tt.wantReason, lines[0][obs.KeyReason])
					require.InDelta(t, len(strings.Join(tt.header, "")), lines[0][obs.KeyHeaderLength], 0)
					require.NotContains(t, buf.String(), clientID, "the rejected value is never logged")
				}
				return
			}
			// The response continues the trace with this server's span, a
			// child of the client's; the lines name that span.
			child, reason := tracecontext.Parse(rec.Header().Get(HeaderTraceparent))
			require.Empty(t, reason)
			require.Equal(t, traceID, child.TraceID)
			require.NotEqual(t, clientID, child.ParentID)
			require.True(t, child.Sampled)
			for _, l := range lines {
				require.Equal(t, traceID, l[obs.KeyTraceID], l[obs.KeyEvent])
				require.Equal(t, child.ParentID, l[obs.KeySpanID], l[obs.KeyEvent])
			}
		})
	}
}
