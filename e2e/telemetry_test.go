package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/tracecontext"
)

// scrape reads a process's /metrics and parses the exposition.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return families
}

// sample returns the value of the counter or gauge of family whose labels
// include want, or of the histogram's sample count; 0 when there is none.
func sample(families map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	var sum float64
	for _, m := range families[family].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// A request with a traceparent starts a job whose lines carry the same
// trace_id, and both processes' metrics count the request and the job.
func TestTraceparentAndMetricsAcrossBothProcesses(t *testing.T) {
	t.Parallel()
	st := newStack(t, "METRICS_ADDR=127.0.0.1:0")
	metricsAddr, _ := st.worker.waitFor(t, obs.EventMetricsListening)[obs.KeyAddr].(string)
	serverMetrics, workerMetrics := st.api.base+"/metrics", "http://"+metricsAddr+"/metrics"
	strategy := st.api.createStrategy(t, 5, 20)

	created := map[string]string{"route": "/backtests", "method": http.MethodPost, "code": "202"}
	completed := map[string]string{"kind": "backtest", "outcome": "completed"}
	beforeServer, beforeWorker := scrape(t, serverMetrics), scrape(t, workerMetrics)
	require.InDelta(t, 1, sample(beforeWorker, "backtestd_queue_depth_up", nil), 0)

	const (
		traceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan = "00f067aa0ba902b7"
	)
	body, err := json.Marshal(map[string]any{
		"strategy_id": strategy, "symbol": "ACME", "start": "2025-01-01", "end": "2025-07-01", "initial_cash": 10000,
	})
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.api.base+"/backtests", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+st.api.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	resp, err := checkedClient(t).Do(req)
	require.NoError(t, err)
	var enqueued map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&enqueued))
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusAccepted, resp.StatusCode, enqueued)
	runID, _ := enqueued["run_id"].(string)
	// The response continues the trace with the server's span for the
	// request, a child of the client's.
	serverSpan, reason := tracecontext.Parse(resp.Header.Get("Traceparent"))
	require.Empty(t, reason)
	require.Equal(t, traceID, serverSpan.TraceID)
	require.NotEqual(t, clientSpan, serverSpan.ParentID)
	require.Equal(t, "succeeded", st.api.waitFinished(t, runID)["status"])

	// The metrics moved: scraped before the processes stop, and waited for,
	// since the worker counts an attempt once River has its outcome.
	afterServer := scrape(t, serverMetrics)
	require.InDelta(t, sample(beforeServer, "backtestd_http_requests_total", created)+1,
		sample(afterServer, "backtestd_http_requests_total", created), 0)
	require.Greater(t, sample(afterServer, "backtestd_http_request_duration_seconds", map[string]string{"route": "/backtests/{id}"}),
		sample(beforeServer, "backtestd_http_request_duration_seconds", map[string]string{"route": "/backtests/{id}"}))
	var afterWorker map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		afterWorker = scrape(t, workerMetrics)
		return sample(afterWorker, "backtestd_job_attempts_total", completed) ==
			sample(beforeWorker, "backtestd_job_attempts_total", completed)+1
	}, 30*time.Second, 50*time.Millisecond)
	require.InDelta(t, sample(beforeWorker, "backtestd_job_attempt_duration_seconds", completed)+1,
		sample(afterWorker, "backtestd_job_attempt_duration_seconds", completed), 0)
	require.Greater(t, sample(afterWorker, "backtestd_job_queue_wait_seconds", map[string]string{"kind": "backtest"}),
		sample(beforeWorker, "backtestd_job_queue_wait_seconds", map[string]string{"kind": "backtest"}))
	require.Contains(t, afterWorker, "backtestd_queue_jobs")
	require.InDelta(t, 0, sample(afterWorker, "backtestd_queue_jobs", map[string]string{"queue": "backtests", "state": "available"}), 0)

	st.server.stop(t)
	st.worker.stop(t)

	// Every line of the request and of its job carries the trace.
	var requestLines, jobLines int
	for _, p := range []*process{st.server, st.worker} {
		for _, l := range p.lines(t) {
			if l[obs.KeyRunID] != runID && (l[obs.KeyService] != "server" || l[obs.KeyCorrelationID] != enqueued["correlation_id"]) {
				continue
			}
			require.Equal(t, traceID, l[obs.KeyTraceID], "%v", l)
			if l[obs.KeyService] == "server" {
				requestLines++
				require.Equal(t, serverSpan.ParentID, l[obs.KeySpanID], "the request's span: %v", l)
			} else {
				jobLines++
				require.NotEqual(t, serverSpan.ParentID, l[obs.KeySpanID], "the attempt's own span: %v", l)
			}
		}
	}
	require.Equal(t, 2, requestLines, "backtest_enqueued and request_finished")
	require.GreaterOrEqual(t, jobLines, 3, "job_started, job_progress..., job_completed")

	// The documented recipe finds the same lines by trace_id.
	var trace *recipe
	for _, r := range docRecipes(t, "recipe") {
		if r.name == "trace" {
			trace = &r
		}
	}
	require.NotNil(t, trace, "docs/logging.md has the trace recipe")
	logs := filepath.Join(t.TempDir(), "compose.log")
	require.NoError(t, os.WriteFile(logs, composeLogs(st.server.rawLines(t), st.worker.rawLines(t), true), 0o600))
	out := runRecipe(t, *trace, logs, map[string]string{"TRACE": traceID})
	require.Len(t, out, requestLines+jobLines)
	for _, l := range out {
		require.Equal(t, traceID, l[obs.KeyTraceID])
	}
}
