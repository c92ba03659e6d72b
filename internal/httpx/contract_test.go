package httpx_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/api"
	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/httpx"
)

// The document is served, without a key, as the binary embeds it.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.call(t, http.MethodGet, httpx.OpenAPIPath, "", "", "")
	require.Equal(t, http.StatusOK, r.status, r.raw)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
	require.Equal(t, string(api.JSON()), r.raw)
	require.Equal(t, "3.1.0", r.body["openapi"])
	requireProblem(t, b.call(t, http.MethodGet, httpx.OpenAPIPath+"?format=yaml", "", "", ""), http.StatusBadRequest)
}

// Every kind of problem resolves to what it means, is in the document and
// has its row in the table of kinds of docs/api.md.
func TestProblemKinds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(api.JSON(), &doc))
	apiDoc, err := os.ReadFile("../../docs/api.md")
	require.NoError(t, err)

	var kinds []string
	for _, k := range httpx.ProblemKinds() {
		kinds = append(kinds, string(k.Kind))
		r := b.call(t, http.MethodGet, k.Type, "", "", "")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		require.Equal(t, string(k.Kind), r.body["kind"])
		require.Equal(t, "/problems/"+string(k.Kind), r.body["type"])
		require.InDelta(t, k.Status, r.body["status"], 0)
		require.NotEmpty(t, r.body["description"])
		require.Contains(t, problemTypes[k.Status], k.Type, "the tests' table knows %s", k.Kind)
		require.Contains(t, string(apiDoc), fmt.Sprintf("\n| `%s` | %d |", k.Kind, k.Status), "docs/api.md documents %s", k.Kind)
	}
	require.ElementsMatch(t, doc.Components.Schemas["ProblemKind"].Enum, kinds, "the document lists the same kinds")
	requireProblem(t, b.call(t, http.MethodGet, "/problems/no_such_kind", "", "", ""), http.StatusNotFound)
}

// 405 names the methods the path takes; OPTIONS answers them without a key
// and is no CORS; a path no route has is 404 whatever the method.
func TestAllow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		method, path string
		wantStatus   int
		wantAllow    string
	}{
		{http.MethodOptions, "/backtests", http.StatusNoContent, "GET, POST, OPTIONS"},
		{http.MethodOptions, "/backtests/01a2175f-386b-7761-8b43-c03581273143", http.StatusNoContent, "GET, OPTIONS"},
		{http.MethodOptions, "/healthz", http.StatusNoContent, "GET, HEAD, OPTIONS"},
		{http.MethodOptions, "/strategies", http.StatusNoContent, "GET, POST, OPTIONS"},
		{http.MethodOptions, "/strategies/01a2175f-386b-7761-8b43-c03581273143", http.StatusNoContent, "GET, DELETE, OPTIONS"},
		{http.MethodGet, "/backtests/01a2175f-386b-7761-8b43-c03581273143/cancel", http.StatusMethodNotAllowed, "POST, OPTIONS"},
		{http.MethodOptions, httpx.OpenAPIPath, http.StatusNoContent, "GET, OPTIONS"},
		{http.MethodDelete, "/backtests", http.StatusMethodNotAllowed, "GET, POST, OPTIONS"},
		{http.MethodHead, "/backtests", http.StatusMethodNotAllowed, "GET, POST, OPTIONS"},
		{http.MethodPut, "/readyz", http.StatusMethodNotAllowed, "GET, HEAD, OPTIONS"},
		{http.MethodOptions, "/nowhere", http.StatusNotFound, ""},
		{http.MethodGet, "/nowhere", http.StatusNotFound, ""},
		{http.MethodDelete, "/nowhere", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			r := b.call(t, tt.method, tt.path, "", "", "")
			require.Equal(t, tt.wantStatus, r.status, r.raw)
			require.Equal(t, tt.wantAllow, r.header.Get("Allow"))
			require.Empty(t, r.header.Get("Access-Control-Allow-Origin"), "no CORS")
			if tt.wantStatus == http.StatusNoContent {
				require.Empty(t, r.raw)
				require.NotEmpty(t, r.header.Get(httpx.HeaderCorrelationID))
				return
			}
			if tt.method != http.MethodHead {
				requireProblem(t, r, tt.wantStatus)
			}
		})
	}
}

func invalidNames(t *testing.T, r response) []string {
	t.Helper()
	params, _ := r.body["invalid_params"].([]any)
	names := make([]string, 0, len(params))
	for _, p := range params {
		m, _ := p.(map[string]any)
		name, _ := m["name"].(string)
		reason, _ := m["reason"].(string)
		require.NotEmpty(t, reason, "every refused input says why")
		require.Contains(t, r.body["detail"], name+": "+reason, "the detail repeats it")
		names = append(names, name)
	}
	return names
}

// Every refused field is named at once, in the order of the fields.
func TestEveryInvalidFieldAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sid := b.strategy(t, b.aliceKey)
	tests := []struct {
		name, path, body string
		want             []string
		wantDetail       string // when given, the whole detail
	}{
		{
			"the issue's backtest", "/backtests",
			`{"strategy_id":"x","symbol":"","start":"2020-13-01","end":"yesterday"}`,
			[]string{"strategy_id", "symbol", "start", "end", "initial_cash"},
			"",
		},
		{
			"docs/api.md's example", "/backtests",
			`{"strategy_id":"x","symbol":"","start":"2020-13-01","end":"yesterday","initial_cash":0}`,
			[]string{"strategy_id", "symbol", "start", "end", "initial_cash"},
			"strategy_id: must be a strategy's id: a UUID as the API writes it, 36 characters, lowercase; " +
				"symbol: must be 1 to 16 letters, digits, '.' or '-'; start: must be a date, YYYY-MM-DD; " +
				"end: must be a date, YYYY-MM-DD; initial_cash: must be between 1 and 1e12",
		},
		{
			"a range too long, a strategy gone", "/backtests",
			`{"strategy_id":"01a2175f-0000-7000-8000-000000000000","symbol":"ACME","start":"2000-01-01","end":"2100-01-02","initial_cash":1}`,
			[]string{"strategy_id", "end"},
			"strategy_id: no such strategy; end: must be at most 100 years after start",
		},
		{
			"a sweep's symbols, dates and cash", "/sweeps",
			`{"kind":"buy_and_hold","params_grid":{},"symbols":["A B"],"start":"2020-01-01","end":"2020-01-01"}`,
			[]string{"symbols", "end", "initial_cash"},
			"symbols: each must be 1 to 16 letters, digits, '.' or '-'; end: must be after start; initial_cash: is required",
		},
		{
			"unknown strategy and a range backwards", "/backtests",
			`{"strategy_id":"01a2175f-0000-7000-8000-000000000000","symbol":"ACME","start":"2021-01-01","end":"2020-01-01","initial_cash":0}`,
			[]string{"strategy_id", "end", "initial_cash"},
			"",
		},
		{
			"a good strategy, the rest wrong", "/backtests",
			`{"strategy_id":"` + sid + `","symbol":"A B","start":"2020-01-01","end":"2200-01-01","initial_cash":1e13}`,
			[]string{"symbol", "end", "initial_cash"},
			"",
		},
		{
			"a strategy's name and every parameter", "/strategies",
			`{"name":"\u001b[31m","kind":"rsi_reversion","params":{"period":1,"oversold":0,"overbought":100}}`,
			[]string{"name", "params.period", "params.oversold", "params.overbought"},
			"",
		},
		{
			"both windows", "/strategies",
			`{"kind":"sma_crossover","params":{"fast_window":0,"slow_window":20000}}`,
			[]string{"params.fast_window", "params.slow_window"},
			"",
		},
		{"a name and no kind", "/strategies", `{"name":"\u202e","kind":""}`, []string{"name", "kind"}, ""},
	}
	before := b.rows(t)
	for _, tt := range tests {
		r := b.post(t, tt.path, b.aliceKey, tt.body)
		requireProblem(t, r, http.StatusUnprocessableEntity)
		require.Equal(t, "/problems/unprocessable", r.body["type"], tt.name)
		require.Equal(t, tt.want, invalidNames(t, r), tt.name)
		if tt.wantDetail != "" {
			require.Equal(t, tt.wantDetail, r.body["detail"], tt.name)
		}
	}
	require.Equal(t, before, b.rows(t), "no refused request wrote anything")
}

// A range with fewer bars than the strategy needs is refused at the API,
// naming end, by the engine's own count; one bar more is accepted.
func TestRangeTooShortForTheStrategy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	strategy := func(body string) (string, backtest.Strategy) {
		r := b.post(t, "/strategies", b.aliceKey, body)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
		var s struct {
			ID     string          `json:"id"`
			Kind   string          `json:"kind"`
			Params json.RawMessage `json:"params"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.raw), &s))
		spec, err := backtest.ParseStrategy(s.Kind, s.Params)
		require.NoError(t, err)
		return s.ID, spec
	}
	backtestOf := func(id, start, end string) string {
		return `{"strategy_id":"` + id + `","symbol":"ACME","start":"` + start + `","end":"` + end + `","initial_cash":1000}`
	}
	// endFor returns the first end after start whose range has n weekdays.
	endFor := func(start string, n int) string {
		s, err := time.Parse(time.DateOnly, start)
		require.NoError(t, err)
		e := s.AddDate(0, 0, 1)
		for backtest.TradingDays(s, e) < n {
			e = e.AddDate(0, 0, 1)
		}
		return e.Format(time.DateOnly)
	}
	hold, holdSpec := strategy(`{"kind":"buy_and_hold"}`)
	slow, slowSpec := strategy(`{"kind":"sma_crossover","params":{"fast_window":5,"slow_window":2000}}`)
	rsi, rsiSpec := strategy(`{"kind":"rsi_reversion","params":{"period":14}}`)

	tests := []struct {
		name, body string
		wantNeed   int // 0: accepted
	}{
		{"a weekend only", backtestOf(hold, "2024-01-06", "2024-01-07"), holdSpec.BarsNeeded()},
		{"a weekday and the weekend", backtestOf(hold, "2024-01-05", "2024-01-07"), 0},
		{"slow_window 2000 over a year", backtestOf(slow, "2020-01-01", "2021-01-01"), slowSpec.BarsNeeded()},
		{"one bar short of rsi", backtestOf(rsi, "2024-01-01", endFor("2024-01-01", rsiSpec.BarsNeeded()-1)), rsiSpec.BarsNeeded()},
		{"exactly the bars rsi needs", backtestOf(rsi, "2024-01-01", endFor("2024-01-01", rsiSpec.BarsNeeded())), 0},
	}
	for _, tt := range tests {
		before := b.rows(t)
		r := b.post(t, "/backtests", b.aliceKey, tt.body)
		if tt.wantNeed == 0 {
			require.Equal(t, http.StatusAccepted, r.status, "%s: %s", tt.name, r.raw)
			continue
		}
		requireProblem(t, r, http.StatusUnprocessableEntity)
		require.Equal(t, []string{"end"}, invalidNames(t, r), tt.name)
		detail, _ := r.body["detail"].(string)
		require.Contains(t, detail, "needs at least "+strconv.Itoa(tt.wantNeed)+" bars", tt.name)
		require.Equal(t, before, b.rows(t), "%s: nothing written", tt.name)
	}
}
