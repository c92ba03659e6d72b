package httpx_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
)

// sweepBody is a 3 × 2 grid, (20, 20) refused, over two symbols: 10 runs.
const sweepBody = `{"kind": "sma_crossover", "params_grid": {"fast_window": [5, 10, 20], "slow_window": [20, 50]},
	"symbols": ["ACME", "beta"], "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`

func (b *testBundle) sweepRows(t *testing.T) map[string]int {
	t.Helper()
	out := b.rows(t)
	var n int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM sweeps`).Scan(&n))
	out["sweeps"] = n
	return out
}

func TestCreateSweep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.post(t, "/sweeps", b.aliceKey, sweepBody)
	require.Equal(t, http.StatusAccepted, r.status, r.raw)
	id, _ := r.body["sweep_id"].(string)
	require.Equal(t, "/sweeps/"+id, r.header.Get("Location"))
	require.InDelta(t, 10, r.body["run_count"], 0)
	require.InDelta(t, 1, r.body["skipped_count"], 0)
	require.Equal(t, "queued", r.body["status"])
	require.Equal(t, r.header.Get(httpx.HeaderCorrelationID), r.body["correlation_id"])
	require.Equal(t, map[string]int{"sweeps": 1, "strategies": 5, "backtest_runs": 10, "river_job": 10}, b.sweepRows(t))

	line := b.logs.Find(t, obs.EventSweepEnqueued)
	require.NotNil(t, line)
	require.Equal(t, id, line[obs.KeySweepID])
	require.InDelta(t, 10, line[obs.KeyRunCount], 0)
	require.InDelta(t, 1, line[obs.KeySkippedCount], 0)
	require.Equal(t, "info", line[obs.KeyLevel])

	got := b.call(t, http.MethodGet, "/sweeps/"+id, b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, got.status, got.raw)
	require.Equal(t, "queued", got.body["status"])
	require.Equal(t, []any{"ACME", "BETA"}, got.body["symbols"])
	require.Equal(t, map[string]any{"queued": 10.0, "running": 0.0, "retrying": 0.0, "succeeded": 0.0, "failed": 0.0, "cancelled": 0.0},
		got.body["counts"])
	require.Equal(t, []any{}, got.body["best"])

	other := b.call(t, http.MethodGet, "/sweeps/"+id, b.bobKey, "", "")
	requireProblem(t, other, http.StatusNotFound)
	require.Equal(t, "No such sweep.", other.body["detail"])
	// An ID not written as the API writes it names nothing, like any
	// resource's.
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/sweeps/NOPE?top=1"}, {http.MethodPost, "/sweeps/NOPE/cancel"},
	} {
		notAnID := b.call(t, req.method, req.path, b.aliceKey, "", "")
		requireProblem(t, notAnID, http.StatusNotFound)
		require.Equal(t, "No such resource.", notAnID.body["detail"], req.path)
	}
}

// A refused sweep writes nothing and says which field is wrong.
func TestCreateSweepRefused(t *testing.T) { //nolint:tparallel // the "cases" group waits for its parallel cases
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		status int
		field  string
		reason string // the first refused field's, when given
	}{
		{
			name: "more runs than MAX_SWEEP_RUNS", status: http.StatusUnprocessableEntity, field: "params_grid",
			body: `{"kind": "sma_crossover", "params_grid": {"fast_window": [5, 10, 20], "slow_window": [50, 100]},
				"symbols": ["ACME", "BETA"], "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "a grid far past the bound is not expanded", status: http.StatusUnprocessableEntity, field: "params_grid",
			body: `{"kind": "sma_crossover", "params_grid": {"fast_window": [1,2,3,4,5,6,7,8,9,10], "slow_window": [11,12,13,14,15,16]},
				"symbols": ["ACME"], "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "every combination refused", status: http.StatusUnprocessableEntity, field: "params_grid",
			reason: "every combination is refused by the strategy (params.fast_window must be less than slow_window)",
			body: `{"kind": "sma_crossover", "params_grid": {"fast_window": [50], "slow_window": [10, 20]},
				"symbols": ["ACME"], "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "an empty list of values", status: http.StatusUnprocessableEntity, field: "params_grid.fast_window",
			body: `{"kind": "sma_crossover", "params_grid": {"fast_window": [], "slow_window": [10]},
				"symbols": ["ACME"], "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "no symbols", status: http.StatusUnprocessableEntity, field: "symbols",
			reason: "must be a list of 1 to 100 symbols",
			body: `{"kind": "buy_and_hold", "params_grid": {}, "symbols": [],
				"start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "101 symbols", status: http.StatusUnprocessableEntity, field: "symbols",
			reason: "must be a list of 1 to 100 symbols",
			body: `{"kind": "buy_and_hold", "params_grid": {}, "symbols": ["S` + strings.Repeat(`", "S`, 100) + `"],
				"start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "a symbol twice", status: http.StatusUnprocessableEntity, field: "symbols",
			reason: "must not name a symbol twice (ACME)",
			body: `{"kind": "buy_and_hold", "params_grid": {}, "symbols": ["ACME", "acme"],
				"start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "an unknown kind", status: http.StatusUnprocessableEntity, field: "kind",
			body: `{"kind": "martingale", "params_grid": {}, "symbols": ["ACME"],
				"start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
		{
			name: "a grid value that is not a list", status: http.StatusBadRequest,
			body: `{"kind": "buy_and_hold", "params_grid": {"x": 1}, "symbols": ["ACME"],
				"start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`,
		},
	}
	b := setup(t, func(d *httpx.Deps) { d.MaxSweepRuns = 10 })
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := b.post(t, "/sweeps", b.aliceKey, tt.body)
				requireProblem(t, r, tt.status)
				if tt.field != "" {
					params, _ := r.body["invalid_params"].([]any)
					require.NotEmpty(t, params, r.raw)
					first, _ := params[0].(map[string]any)
					require.Equal(t, tt.field, first["name"], r.raw)
					if tt.reason != "" {
						require.Equal(t, tt.reason, first["reason"], r.raw)
					}
				}
			})
		}
	})
	require.Equal(t, map[string]int{"sweeps": 0, "strategies": 0, "backtest_runs": 0, "river_job": 0}, b.sweepRows(t))
}

func TestCreateSweepIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	send := func(body string) response {
		return b.postWith(t, "/sweeps", b.aliceKey, map[string][]string{httpx.HeaderIdempotencyKey: {"sweep-1"}}, body)
	}
	first := send(sweepBody)
	require.Equal(t, http.StatusAccepted, first.status, first.raw)
	again := send(sweepBody)
	requireSameResponse(t, first, again)
	require.Equal(t, 1, b.sweepRows(t)["sweeps"], "a replay creates nothing")
	require.Equal(t, 10, b.sweepRows(t)["backtest_runs"])

	other := send(`{"kind": "buy_and_hold", "params_grid": {}, "symbols": ["ACME"], "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`)
	requireProblem(t, other, http.StatusUnprocessableEntity)
	require.Equal(t, "/problems/idempotency_key_reused", other.body["type"])
}

// GET /sweeps/{id} counts, measures progress and ranks the succeeded runs;
// GET /backtests?sweep_id= pages through its runs.
func TestSweepProgressRankingAndList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.post(t, "/sweeps", b.aliceKey, sweepBody)
	require.Equal(t, http.StatusAccepted, r.status, r.raw)
	id, _ := r.body["sweep_id"].(string)
	// A single backtest of alice's is in no sweep's list.
	sid := b.strategy(t, b.aliceKey)
	one := b.post(t, "/backtests", b.aliceKey, `{"strategy_id":"`+sid+`","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":1000}`)
	require.Equal(t, http.StatusAccepted, one.status, one.raw)

	// Three runs succeed with made-up results, one fails, one runs.
	_, err := b.db.Pool.Exec(t.Context(), `
		WITH ranked AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM backtest_runs WHERE sweep_id = $1)
		UPDATE backtest_runs r SET
		    status = CASE WHEN n <= 3 THEN 'succeeded' WHEN n = 4 THEN 'failed' ELSE 'running' END,
		    result = CASE WHEN n <= 3 THEN jsonb_build_object('sharpe', n, 'max_drawdown', 0.1 * n, 'total_return', 1,
		                                                      'cagr', 0.5, 'final_equity', 100 * n, 'bars', 1000, 'trades', 4) END,
		    finished_at = CASE WHEN n <= 4 THEN now() END
		FROM ranked WHERE r.id = ranked.id AND n <= 5`, id)
	require.NoError(t, err)
	var order []string
	rows, err := b.db.Pool.Query(t.Context(), `SELECT id::text FROM backtest_runs WHERE sweep_id = $1 ORDER BY id LIMIT 3`, id)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		order = append(order, s)
	}
	require.NoError(t, rows.Err())

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{order[2], order[1], order[0]}},
		{"?rank_by=max_drawdown&top=2", []string{order[0], order[1]}},
		{"?rank_by=final_equity&top=1", []string{order[2]}},
	}
	for _, tt := range tests {
		got := b.call(t, http.MethodGet, "/sweeps/"+id+tt.query, b.aliceKey, "", "")
		require.Equal(t, http.StatusOK, got.status, got.raw)
		require.Equal(t, "running", got.body["status"])
		require.InDelta(t, 40, got.body["progress_pct"], 0, "4 of 10 finished")
		best, _ := got.body["best"].([]any)
		ids := make([]string, len(best))
		for i, x := range best {
			m, _ := x.(map[string]any)
			ids[i], _ = m["run_id"].(string)
		}
		require.Equal(t, tt.want, ids, tt.query)
	}
	requireProblem(t, b.call(t, http.MethodGet, "/sweeps/"+id+"?rank_by=luck", b.aliceKey, "", ""), http.StatusBadRequest)
	requireProblem(t, b.call(t, http.MethodGet, "/sweeps/"+id+"?top=101", b.aliceKey, "", ""), http.StatusBadRequest)

	ids, pages := b.walk(t, "/backtests?limit=4&sweep_id="+id, "runs")
	require.Equal(t, 3, pages, "10 runs, 4 a page")
	seen := map[string]bool{}
	for _, runID := range ids {
		require.False(t, seen[runID], "no run twice")
		seen[runID] = true
	}
	require.Len(t, seen, 10)
	require.False(t, seen[one.body["run_id"].(string)]) //nolint:forcetypeassert // a 202's body has it
	requireProblem(t, b.call(t, http.MethodGet, "/backtests?sweep_id=nope", b.aliceKey, "", ""), http.StatusBadRequest)
}

func TestCancelSweepOverAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.post(t, "/sweeps", b.aliceKey, sweepBody)
	require.Equal(t, http.StatusAccepted, r.status, r.raw)
	id, _ := r.body["sweep_id"].(string)

	requireProblem(t, b.call(t, http.MethodPost, "/sweeps/"+id+"/cancel", b.bobKey, "", ""), http.StatusNotFound)
	c := b.call(t, http.MethodPost, "/sweeps/"+id+"/cancel", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, c.status, c.raw)
	require.Equal(t, "cancelled", c.body["status"])
	require.InDelta(t, 100, c.body["progress_pct"], 0)
	require.NotNil(t, c.body["cancel_requested_at"])
	require.NotNil(t, c.body["finished_at"], "the cancel ended its last run")
	var waiting int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM river_job WHERE state <> 'cancelled'`).Scan(&waiting))
	require.Zero(t, waiting, "every job cancelled with its run")
	again := b.call(t, http.MethodPost, "/sweeps/"+id+"/cancel", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, again.status, again.raw)

	// The cancel ended the sweep: one sweep_finished, the sweep's own line,
	// found by its correlation ID; the second cancel ended nothing.
	var finished []map[string]any
	for _, l := range b.logs.Lines(t) {
		if l[obs.KeyEvent] == obs.EventSweepFinished {
			delete(l, obs.KeyTimestamp)
			delete(l, obs.KeyDurationMS)
			finished = append(finished, l)
		}
	}
	require.Equal(t, []map[string]any{{
		obs.KeyLevel: "info", obs.KeyEvent: obs.EventSweepFinished, obs.KeyService: "server",
		obs.KeyCorrelationID: r.body["correlation_id"], obs.KeyUserID: b.aliceID(t), obs.KeySweepID: id,
		obs.KeySucceededCount: 0.0, obs.KeyFailedCount: 0.0, obs.KeyCancelledCount: 10.0,
	}}, finished)

	done := b.post(t, "/sweeps", b.aliceKey, sweepBody)
	doneID, _ := done.body["sweep_id"].(string)
	_, err := b.db.Pool.Exec(t.Context(), `UPDATE backtest_runs SET status = 'failed', finished_at = now() WHERE sweep_id = $1`, doneID)
	require.NoError(t, err)
	requireProblem(t, b.call(t, http.MethodPost, "/sweeps/"+doneID+"/cancel", b.aliceKey, "", ""), http.StatusConflict)
}

// Cancelling a sweep's last unfinished run over the run's own route ends
// the sweep there and then: the server logs its sweep_finished, the
// sweep's own line, after the run's backtest_cancelled.
func TestCancelOfASweepsLastRunOverAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.post(t, "/sweeps", b.aliceKey, `{"kind": "sma_crossover", "params_grid": {"fast_window": [5], "slow_window": [50]},
		"symbols": ["ACME"], "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000}`)
	require.Equal(t, http.StatusAccepted, r.status, r.raw)
	id, _ := r.body["sweep_id"].(string)
	var runID string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT id::text FROM backtest_runs WHERE sweep_id = $1`, id).Scan(&runID))

	c := b.call(t, http.MethodPost, "/backtests/"+runID+"/cancel", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, c.status, c.raw)
	require.Equal(t, "cancelled", c.body["status"])
	got := b.call(t, http.MethodGet, "/sweeps/"+id, b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, got.status, got.raw)
	require.NotNil(t, got.body["finished_at"], "finished by the cancel, not left to the reconciliation")

	var events []any
	var finished []map[string]any
	for _, l := range b.logs.Lines(t) {
		switch l[obs.KeyEvent] {
		case obs.EventBacktestCancelled, obs.EventSweepFinished:
			events = append(events, l[obs.KeyEvent])
		}
		if l[obs.KeyEvent] == obs.EventSweepFinished {
			delete(l, obs.KeyTimestamp)
			delete(l, obs.KeyDurationMS)
			finished = append(finished, l)
		}
	}
	require.Equal(t, []any{obs.EventBacktestCancelled, obs.EventSweepFinished}, events)
	require.Equal(t, []map[string]any{{
		obs.KeyLevel: "info", obs.KeyEvent: obs.EventSweepFinished, obs.KeyService: "server",
		obs.KeyCorrelationID: r.body["correlation_id"], obs.KeyUserID: b.aliceID(t), obs.KeySweepID: id,
		obs.KeySucceededCount: 0.0, obs.KeyFailedCount: 0.0, obs.KeyCancelledCount: 1.0,
	}}, finished)
}
