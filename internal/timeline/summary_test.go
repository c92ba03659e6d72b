package timeline_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/timeline"
)

// sweepLog is the log of a sweep of n runs, as the server and the workers
// write it, with a fixed clock: every 100th run fails for good (a panic,
// its traceback), every 250th fails once and then succeeds, the last is
// cancelled, and the rest succeed after ten checkpoints. Another request's
// lines are mixed in, and must not be selected.
func sweepLog(n int) string {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var b strings.Builder
	at := func(ms int) string {
		return t0.Add(time.Duration(ms) * time.Millisecond).Format("2006-01-02T15:04:05.000000Z")
	}
	const sweep = "0195a1b2-0000-7000-8000-00000000feed"
	line := func(ms int, service, level, event, rest string) {
		fmt.Fprintf(&b, `{"timestamp":%q,"level":%q,"event":%q,"service":%q,"correlation_id":"sweep-42"%s}`+"\n",
			at(ms), level, event, service, rest)
	}
	line(0, "server", "info", "sweep_enqueued", fmt.Sprintf(`,"user_id":"u-1","sweep_id":%q,"run_count":%d,"skipped_count":3`, sweep, n))
	line(1, "server", "info", "request_finished", `,"method":"POST","path":"/sweeps","route":"/sweeps","status_code":202,"duration_ms":41,"client_ip":"10.0.0.7","user_id":"u-1"`)
	for i := range n {
		run := fmt.Sprintf("0195a1b2-0000-7000-8000-%012d", i)
		job := func(attempt int) string {
			return fmt.Sprintf(`,"user_id":"u-1","strategy_id":"s-%d","run_id":%q,"sweep_id":%q,"job_id":%d,"job_kind":"backtest","attempt":%d`,
				i%9, run, sweep, 1000+i, attempt)
		}
		ms, att := 10+i*7, 1
		line(ms, "worker", "info", "job_started", job(1)+`,"queue_wait_ms":3,"max_attempts":3`)
		switch {
		case i%100 == 7:
			line(ms+2, "worker", "error", "job_failed", job(1)+`,"duration_ms":2,"error":"panic: engine exploded","error_type":"string","error_code":"panic","traceback":[{"function":"backtest.Run","file":"internal/backtest/engine.go","line":88}],"will_retry":false,"panic":true`)
			continue
		case i%250 == 3:
			line(ms+1, "worker", "warn", "job_failed", job(1)+`,"duration_ms":1,"error":"market data service unavailable","error_type":"*errors.errorString","error_code":"internal","traceback":[{"function":"jobs.(*Worker).Work","file":"internal/jobs/worker.go","line":120}],"will_retry":true`)
			ms, att = ms+3, 2
			line(ms, "worker", "info", "job_started", job(att)+`,"queue_wait_ms":1,"max_attempts":3`)
		case i == n-1:
			line(ms+4, "worker", "info", "job_cancelled", job(1)+`,"duration_ms":4,"error":"context canceled"`)
			continue
		}
		for p := 10; p <= 100; p += 10 {
			line(ms+p/10, "worker", "info", "job_progress", job(att)+fmt.Sprintf(`,"progress_pct":%d`, p))
		}
		line(ms+5, "worker", "info", "job_completed", job(att)+fmt.Sprintf(`,"duration_ms":%d,"bars":252,"sharpe":1.2`, 5+i%13+i/400))
	}
	line(10+n*7+10, "worker", "info", "sweep_finished", fmt.Sprintf(`,"user_id":"u-1","sweep_id":%q,"succeeded_count":%d,"failed_count":%d,"cancelled_count":1,"duration_ms":%d`,
		sweep, n-n/100-1, n/100, 10+n*7+10))
	fmt.Fprintf(&b, `{"timestamp":%q,"level":"info","event":"request_finished","service":"server","correlation_id":"other"}`+"\n", at(5))
	return b.String()
}

func TestSummaryOfAFanOut(t *testing.T) {
	t.Parallel()
	entries, err := timeline.Select(strings.NewReader(sweepLog(1000)), timeline.Selector{Field: "correlation_id", Value: "sweep-42"})
	require.NoError(t, err)
	require.Equal(t, 1000, timeline.Runs(entries))
	require.Greater(t, timeline.Runs(entries), timeline.FanOutRuns)

	var out bytes.Buffer
	require.NoError(t, timeline.RenderSummary(&out, entries, "trace --run", timeline.Options{}))
	path := filepath.Join("testdata", "sweep-summary.golden")
	if *update {
		require.NoError(t, os.WriteFile(path, out.Bytes(), 0o600))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), out.String())
	require.Less(t, strings.Count(out.String(), "\n"), 100, "a page, not %d lines", len(entries))
}

func TestSummaryCountsRunsByTheirLastWord(t *testing.T) {
	t.Parallel()
	line := func(ms int, run, level, event, rest string) string {
		return fmt.Sprintf(`{"timestamp":"2026-01-01T00:00:00.%06dZ","level":%q,"event":%q,"service":"worker","correlation_id":"c","run_id":%q%s}`,
			ms, level, event, run, rest)
	}
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"completed", []string{line(1, "r", "info", "job_started", ""), line(2, "r", "info", "job_completed", `,"duration_ms":1`)}, "succeeded"},
		{"started only", []string{line(1, "r", "info", "job_started", "")}, "unfinished"},
		{"retrying", []string{line(1, "r", "warn", "job_failed", `,"will_retry":true`)}, "unfinished"},
		{"failed", []string{line(1, "r", "error", "job_failed", `,"will_retry":false`)}, "failed"},
		{"cancel stopped the retry", []string{line(1, "r", "warn", "job_failed", `,"will_retry":false`)}, "cancelled"},
		{"cancelled", []string{line(1, "r", "info", "job_cancelled", "")}, "cancelled"},
		{"reconciled failed", []string{line(1, "r", "error", "run_failed", "")}, "failed"},
		{"retried after success", []string{
			line(1, "r", "info", "job_completed", ""), line(2, "r", "info", "run_reconciled", `,"status":"queued"`),
		}, "unfinished"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			entries, err := timeline.Select(strings.NewReader(strings.Join(tt.lines, "\n")), timeline.Selector{Field: "correlation_id", Value: "c"})
			require.NoError(t, err)
			var out bytes.Buffer
			require.NoError(t, timeline.RenderSummary(&out, entries, "trace --run", timeline.Options{}))
			require.Contains(t, out.String(), fmt.Sprintf("runs per outcome:\n  %-26s %7d\n", tt.want, 1))
		})
	}
}
