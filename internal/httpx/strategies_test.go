package httpx_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDeleteStrategy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sid := b.strategy(t, b.aliceKey)
	backtest := `{"strategy_id":"` + sid + `","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`
	queued := b.post(t, "/backtests", b.aliceKey, backtest)
	require.Equal(t, http.StatusAccepted, queued.status, queued.raw)
	runID, _ := queued.body["run_id"].(string)

	del := func(key, id string) response {
		t.Helper()
		return b.call(t, http.MethodDelete, "/strategies/"+id, key, "", "")
	}
	r := del(b.aliceKey, sid)
	requireProblem(t, r, http.StatusConflict)
	require.Contains(t, r.body["detail"], "1 backtests queued, running or retrying")
	requireProblem(t, del(b.bobKey, sid), http.StatusNotFound)
	requireProblem(t, del(b.aliceKey, "01a2175f-0000-7000-8000-000000000000"), http.StatusNotFound)
	requireProblem(t, del(b.aliceKey, "not-an-id"), http.StatusNotFound)
	requireProblem(t, b.call(t, http.MethodDelete, "/strategies/"+sid+"?force=1", b.aliceKey, "", ""), http.StatusBadRequest)

	// Once its run is finished, the strategy goes; the run stays.
	_, err := b.db.Pool.Exec(t.Context(), `UPDATE backtest_runs SET status = 'succeeded' WHERE id = $1`, runID)
	require.NoError(t, err)
	r = del(b.aliceKey, sid)
	require.Equal(t, http.StatusNoContent, r.status, r.raw)
	require.Empty(t, r.raw)
	requireProblem(t, del(b.aliceKey, sid), http.StatusNotFound)
	requireProblem(t, b.call(t, http.MethodGet, "/strategies/"+sid, b.aliceKey, "", ""), http.StatusNotFound)
	run := b.call(t, http.MethodGet, "/backtests/"+runID, b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, run.status, run.raw)
	require.Equal(t, sid, run.body["strategy_id"])
	list := b.call(t, http.MethodGet, "/backtests?strategy_id="+sid, b.aliceKey, "", "")
	require.Len(t, list.body["runs"], 1, "the run is listed under its deleted strategy")

	r = b.post(t, "/backtests", b.aliceKey, backtest)
	requireProblem(t, r, http.StatusUnprocessableEntity)
	params, _ := r.body["invalid_params"].([]any)
	require.Len(t, params, 1)
	p, _ := params[0].(map[string]any)
	require.Equal(t, "strategy_id", p["name"], "a deleted strategy takes no new runs")
}
