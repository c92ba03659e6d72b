package jobs_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/obs"
)

func TestJobLinesCarryTheRequestsTrace(t *testing.T) {
	t.Parallel()
	const (
		traceID     = "0af7651916cd43dd8448eb211c80319c"
		requestSpan = "b7ad6b7169203331"
	)
	panicking := func(context.Context, backtest.Input) (backtest.Result, error) { panic("engine exploded") }
	tests := []struct {
		name        string
		traceparent string
		engine      func(context.Context, backtest.Input) (backtest.Result, error)
		wantTrace   bool
	}{
		{name: "success in the trace", traceparent: "00-" + traceID + "-" + requestSpan + "-01", wantTrace: true},
		{name: "panic in the trace", traceparent: "00-" + traceID + "-" + requestSpan + "-00", engine: panicking, wantTrace: true},
		{name: "a job from before traceparent was carried"},
		{name: "a traceparent that no longer parses", traceparent: "00-" + traceID + "-0000000000000000-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			nb := fixture.Backtest(b.user.ID, uuid.Nil, "cid-trace", "ACME", 60)
			nb.Traceparent = tt.traceparent
			_, run, _, err := b.workOnce(t, backtest.KindBuyAndHold, `{}`, nb, tt.engine, 0)
			if tt.engine != nil {
				var pe *rivertest.PanicError
				require.ErrorAs(t, err, &pe)
			} else {
				require.NoError(t, err)
			}

			byEvent := requireJobLines(t, b.logs.Lines(t), run.ID, nb.CorrelationID)
			require.Len(t, byEvent[obs.EventJobStarted], 1)
			var lines []map[string]any
			for _, ls := range byEvent {
				lines = append(lines, ls...)
			}
			require.Greater(t, len(lines), 1)
			span := lines[0][obs.KeySpanID]
			for _, l := range lines {
				if !tt.wantTrace {
					require.NotContains(t, l, obs.KeyTraceID)
					require.NotContains(t, l, obs.KeySpanID)
					continue
				}
				require.Equal(t, traceID, l[obs.KeyTraceID], l[obs.KeyEvent])
				// The attempt is a span of its own, a child of the request's.
				require.Equal(t, span, l[obs.KeySpanID], l[obs.KeyEvent])
				require.NotEqual(t, requestSpan, l[obs.KeySpanID])
			}
		})
	}
}
