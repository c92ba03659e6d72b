package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fanOutLog is a log of runs runs of one correlation ID, each started and
// completed, one of them failed.
func fanOutLog(runs int) string {
	var b strings.Builder
	for i := range runs {
		for j, ev := range []string{"job_started", "job_completed"} {
			level := "info"
			if i == 1 && j == 1 {
				ev, level = "job_failed", "error"
			}
			fmt.Fprintf(&b, `{"timestamp":"2026-01-01T00:00:%02d.%06dZ","level":%q,"event":%q,"service":"worker",`+
				`"correlation_id":"fan","run_id":"run-%d","duration_ms":%d,"will_retry":false}`+"\n", i%60, j, level, ev, i, i)
		}
	}
	return b.String()
}

func TestTraceSummarisesAFanOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		runs        int
		args        []string
		wantSummary bool
		wantLines   int // of output, when not a summary
	}{
		{name: "20 runs: the timeline", runs: 20, args: []string{"fan"}, wantLines: 40},
		{name: "21 runs: a summary", runs: 21, args: []string{"fan"}, wantSummary: true},
		{name: "21 runs, --full: the timeline", runs: 21, args: []string{"--full", "fan"}, wantLines: 42},
		{name: "21 runs, --json: the lines", runs: 21, args: []string{"--json", "fan"}, wantLines: 42},
		{name: "one run of them", runs: 21, args: []string{"--run", "run-1"}, wantLines: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(t.Context(), append([]string{"trace"}, tt.args...), noEnv, strings.NewReader(fanOutLog(tt.runs)), &out, &errOut, false)
			require.NoError(t, err, errOut.String())
			if !tt.wantSummary {
				require.Len(t, strings.Split(strings.TrimSpace(out.String()), "\n"), tt.wantLines)
				require.NotContains(t, out.String(), "lines per event")
				return
			}
			require.Contains(t, out.String(), "42 lines of 21 runs")
			require.Contains(t, out.String(), fmt.Sprintf("  %-26s %7d\n  %-26s %7d\n", "succeeded", 20, "failed", 1))
			require.Contains(t, out.String(), "run_id=run-1", "the failure in full")
			require.Contains(t, out.String(), "one run's timeline: trace --run run-1\n")
		})
	}
}
