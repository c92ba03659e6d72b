package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/logtest"
)

// sweepLines are the worker's lines of a sweep's runs, one ending of each
// kind the sweep recipe of docs/logging.md counts, with the server's
// sweep_enqueued before them and another request's run among them.
func sweepLines(cid string) (server, worker [][]byte) {
	const (
		user     = "01a21769-0000-7000-8000-0000000000aa"
		strategy = "01a21769-0000-7000-8000-0000000000bb"
		sweep    = "01a21769-0000-7000-8000-0000000000cc"
	)
	ms := 0
	at := func() string {
		ms++
		return fmt.Sprintf("2026-03-01T09:00:00.%06dZ", ms*1000)
	}
	tb := `"traceback":[{"function":"jobs.(*Worker).Work","file":"internal/jobs/worker.go","line":120}]`
	job := func(cid string, run, attempt int) string {
		return fmt.Sprintf(`"correlation_id":%q,"user_id":%q,"strategy_id":%q,"run_id":"01a21769-0000-7000-8000-%012d",`+
			`"sweep_id":%q,"job_id":%d,"job_kind":"backtest","attempt":%d`, cid, user, strategy, run, sweep, 100+run, attempt)
	}
	reconciled := func(run int) string { // the reconciliation's lines carry the run's fields, not the sweep's
		return fmt.Sprintf(`"correlation_id":%q,"user_id":%q,"strategy_id":%q,"run_id":"01a21769-0000-7000-8000-%012d",`+
			`"job_id":%d,"attempt":1`, cid, user, strategy, run, 100+run)
	}
	w := func(level, event, fields string) {
		worker = append(worker, fmt.Appendf(nil, `{"timestamp":%q,"level":%q,"event":%q,"service":"worker",%s}`, at(), level, event, fields))
	}
	server = append(server, fmt.Appendf(nil, `{"timestamp":%q,"level":"info","event":"sweep_enqueued","service":"server",`+
		`"correlation_id":%q,"user_id":%q,"sweep_id":%q,"run_count":8,"skipped_count":1}`, at(), cid, user, sweep))
	for run := 1; run <= 8; run++ {
		w("info", "job_started", job(cid, run, 1)+`,"queue_wait_ms":1,"max_attempts":3`)
	}
	w("info", "job_completed", job(cid, 1, 1)+`,"duration_ms":3`)
	w("warn", "job_failed", job(cid, 2, 1)+`,"duration_ms":1,"error":"flaky","error_type":"*errors.errorString","error_code":"internal",`+tb+`,"will_retry":true`)
	w("info", "job_started", job(cid, 2, 2)+`,"queue_wait_ms":1,"max_attempts":3`)
	w("info", "job_completed", job(cid, 2, 2)+`,"duration_ms":3`)
	w("error", "job_failed", job(cid, 3, 1)+`,"duration_ms":1,"error":"too few bars","error_type":"*backtest.InsufficientDataError","error_code":"insufficient_data",`+tb+`,"will_retry":false`)
	w("warn", "job_failed", job(cid, 4, 1)+`,"duration_ms":1,"error":"flaky","error_type":"*errors.errorString","error_code":"internal",`+tb+`,"will_retry":false`)
	w("info", "job_cancelled", job(cid, 5, 1)+`,"duration_ms":2,"error":"context canceled"`)
	w("error", "run_failed", reconciled(6)+`,"error":"discarded","error_type":"job_discarded","error_code":"job_discarded"`)
	w("info", "job_completed", job(cid, 7, 1)+`,"duration_ms":3`)
	w("info", "run_reconciled", reconciled(7)+`,"status":"queued","river_action":"job_retried"`)
	// Run 8 is still going. Another request's run ends meanwhile.
	w("info", "job_completed", job("someone-else", 9, 1)+`,"duration_ms":3`)
	return server, worker
}

// TestSweepProgressRecipe runs docs/logging.md's sweep recipe over a
// sweep's lines, both forms of compose's output: each run counted once, by
// the line that ended it last.
func TestSweepProgressRecipe(t *testing.T) {
	t.Parallel()
	const cid = "sweep-7"
	server, worker := sweepLines(cid)
	for _, l := range worker { // the lines are the contract's, as the worker writes them
		require.NoError(t, logtest.Check(l), "%s", l)
	}
	var sweep *recipe
	for _, r := range docRecipes(t, "recipe") {
		if r.name == "sweep" {
			sweep = &r
		}
	}
	require.NotNil(t, sweep, "docs/logging.md has the sweep recipe")
	dir := t.TempDir()
	for _, prefixed := range []bool{false, true} {
		path := filepath.Join(dir, fmt.Sprintf("prefixed-%t.log", prefixed))
		require.NoError(t, os.WriteFile(path, composeLogs(server, worker, prefixed), 0o600))
		out := runRecipe(t, *sweep, path, map[string]string{"ID": cid})
		require.Equal(t, []map[string]any{{
			"run_count": float64(8), "succeeded": float64(2), "failed": float64(2), "cancelled": float64(2),
			"unfinished": float64(1),
		}}, out, "prefixed: %t", prefixed)
	}
}
