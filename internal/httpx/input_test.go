package httpx_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
)

// Hostile bytes and loose spellings in bodies, queries and paths get a 4xx
// problem naming what is wrong, never a 500, and write nothing.
func TestHostileInputGetsAProblem(t *testing.T) { //nolint:tparallel // the "cases" group waits for its parallel cases
	t.Parallel()
	b := setup(t)
	created := b.post(t, "/strategies", b.aliceKey, `{"kind":"sma_crossover","params":{"fast_window":5,"slow_window":20}}`)
	require.Equal(t, http.StatusCreated, created.status, created.raw)
	sid, _ := created.body["id"].(string)
	run := b.post(t, "/backtests", b.aliceKey,
		`{"strategy_id":"`+sid+`","symbol":"ACME","start":"2020-01-01","end":"2021-01-01","initial_cash":1}`)
	require.Equal(t, http.StatusAccepted, run.status, run.raw)
	runID, _ := run.body["run_id"].(string)
	upper, noDashes := strings.ToUpper(sid), strings.ReplaceAll(sid, "-", "")
	backtest := func(id, cash string) string {
		return `{"strategy_id":"` + id + `","symbol":"ACME","start":"2020-01-01","end":"2021-01-01","initial_cash":` + cash + `}`
	}
	strategy := func(name string) string { return `{"kind":"buy_and_hold","name":"` + name + `"}` }

	tests := []struct {
		name, method, target, body string
		wantStatus                 int
		wantParam                  string // the one invalid_params entry, if any
		wantDetail                 string // part of the detail
	}{
		// Strategy names: NUL, escape sequences and other control characters,
		// line separators and bidirectional overrides are refused (422);
		// bytes that are not UTF-8 are not JSON (400).
		{"NUL in a name", "POST", "/strategies", strategy(`a\u0000b`), 422, "name", ""},
		{"ESC sequence in a name", "POST", "/strategies", strategy(`\u001b[31mred\u001b[0m`), 422, "name", ""},
		{"raw ESC byte in a name", "POST", "/strategies", strategy("\x1b[31mred"), 400, "", "not valid JSON"},
		{"tab inside a name", "POST", "/strategies", strategy(`a\tb`), 422, "name", ""},
		{"C1 control in a name", "POST", "/strategies", strategy(`a\u0085b`), 422, "name", ""},
		{"DEL in a name", "POST", "/strategies", strategy(`a\u007fb`), 422, "name", ""},
		{"U+2028 in a name", "POST", "/strategies", strategy(`a\u2028b`), 422, "name", ""},
		{"U+202E in a name", "POST", "/strategies", strategy("a\u202eb"), 422, "name", ""},
		{"invalid UTF-8 in a name", "POST", "/strategies", strategy("a\xffb"), 400, "", "UTF-8"},
		{"lone surrogate in a name", "POST", "/strategies", strategy(`a\ud800b`), 400, "", "not valid JSON"},
		{"invalid UTF-8 deep in params", "POST", "/strategies", "{\"kind\":\"buy_and_hold\",\"params\":{\"x\":[\"\xc3\"]}}", 400, "", "UTF-8"},
		{"NUL in a kind", "POST", "/strategies", `{"kind":"buy_and_hold\u0000"}`, 422, "kind", ""},
		{"NUL in a symbol", "POST", "/backtests", `{"strategy_id":"` + sid + `","symbol":"AC\u0000ME","start":"2020-01-01","end":"2021-01-01","initial_cash":1}`, 422, "symbol", ""},
		{"NUL in a date", "POST", "/backtests", `{"strategy_id":"` + sid + `","symbol":"ACME","start":"2020-01-01\u0000","end":"2021-01-01","initial_cash":1}`, 422, "start", ""},
		{"NUL in a strategy id", "POST", "/backtests", backtest(sid+`\u0000`, "1"), 422, "strategy_id", ""},

		// Keys are matched exactly and given once, at every depth.
		{"duplicate key", "POST", "/strategies", `{"kind":"buy_and_hold","kind":"rsi_reversion"}`, 400, "", `"kind" appears more than once`},
		{"duplicate key in params", "POST", "/strategies", `{"kind":"sma_crossover","params":{"fast_window":5,"slow_window":20,"slow_window":30}}`, 400, "", "params"},
		{"duplicate key deep in params", "POST", "/strategies", `{"kind":"buy_and_hold","params":{"x":{"a":1,"a":2}}}`, 400, "", "more than once"},
		{"duplicate strategy_id", "POST", "/backtests", `{"strategy_id":"` + sid + `",` + strings.TrimPrefix(backtest(sid, "1"), "{"), 400, "", "more than once"},
		{"key in another case", "POST", "/backtests", strings.Replace(backtest(sid, "1"), "strategy_id", "STRATEGY_ID", 1), 400, "", `"STRATEGY_ID"`},
		{"key in mixed case", "POST", "/strategies", `{"Kind":"buy_and_hold"}`, 400, "", `"Kind"`},
		{"param in another case", "POST", "/strategies", `{"kind":"sma_crossover","params":{"Fast_Window":5,"slow_window":20}}`, 422, "params", ""},

		// One spelling of an ID: the API's own.
		{"strategy id in braces", "POST", "/backtests", backtest("{"+sid+"}", "1"), 422, "strategy_id", ""},
		{"strategy id as a URN", "POST", "/backtests", backtest("urn:uuid:"+sid, "1"), 422, "strategy_id", ""},
		{"strategy id without dashes", "POST", "/backtests", backtest(noDashes, "1"), 422, "strategy_id", ""},
		{"strategy id in uppercase", "POST", "/backtests", backtest(upper, "1"), 422, "strategy_id", ""},
		{"run id in braces", "GET", "/backtests/%7B" + runID + "%7D", "", 404, "", ""},
		{"run id as a URN", "GET", "/backtests/urn:uuid:" + runID, "", 404, "", ""},
		{"run id without dashes", "GET", "/backtests/" + strings.ReplaceAll(runID, "-", ""), "", 404, "", ""},
		{"run id in uppercase", "GET", "/backtests/" + strings.ToUpper(runID), "", 404, "", ""},
		{"strategy id in a path without dashes", "GET", "/strategies/" + noDashes, "", 404, "", ""},
		{"NUL in a path", "GET", "/backtests/%00", "", 404, "", ""},
		{"invalid UTF-8 in a path", "GET", "/strategies/%ff%fe", "", 404, "", ""},

		// initial_cash is 1 to 1e12.
		{"subnormal cash", "POST", "/backtests", backtest(sid, "5e-324"), 422, "initial_cash", ""},
		{"cash below 1", "POST", "/backtests", backtest(sid, "0.99"), 422, "initial_cash", ""},
		{"cash above 1e12", "POST", "/backtests", backtest(sid, "1000000000000.5"), 422, "initial_cash", ""},
		{"cash out of float range", "POST", "/backtests", backtest(sid, "1e400"), 400, "", "initial_cash"},

		// Queries: parsed strictly, the correlation ID with the header's rule.
		{"invalid UTF-8 correlation id", "GET", "/backtests?correlation_id=%ff", "", 400, "correlation_id", ""},
		{"NUL in a correlation id", "GET", "/backtests?correlation_id=a%00b", "", 400, "correlation_id", ""},
		{"control character in a correlation id", "GET", "/backtests?correlation_id=a%1Bb", "", 400, "correlation_id", ""},
		{"129-character correlation id", "GET", "/backtests?correlation_id=" + strings.Repeat("a", 129), "", 400, "correlation_id", ""},
		{"empty correlation id", "GET", "/backtests?correlation_id=", "", 400, "correlation_id", ""},
		{"two correlation ids", "GET", "/backtests?correlation_id=a&correlation_id=b", "", 400, "correlation_id", ""},
		{"+ read as a space", "GET", "/backtests?correlation_id=a+b", "", 400, "correlation_id", "%2B"},
		{"bad escape", "GET", "/backtests?correlation_id=%zz", "", 400, "", "malformed"},
		{"semicolon separator", "GET", "/backtests?correlation_id=a;b", "", 400, "", "malformed"},
		{"unknown parameter", "GET", "/backtests?colour=red", "", 400, "colour", ""},
		{"parameter in another case", "GET", "/backtests?Correlation_ID=x", "", 400, "Correlation_ID", ""},
		{"unknown parameter with a NUL", "GET", "/backtests?a%00=1", "", 400, `a\x00`, ""},
		{"query on a run", "GET", "/backtests/" + runID + "?verbose=1", "", 400, "verbose", ""},
		{"query on a strategy", "GET", "/strategies/" + sid + "?x", "", 400, "x", ""},
		{"query on a new strategy", "POST", "/strategies?dry_run=1", `{"kind":"buy_and_hold"}`, 400, "dry_run", ""},
		{"query on a new backtest", "POST", "/backtests?x=%zz", backtest(sid, "1"), 400, "", "malformed"},
	}
	before := b.rows(t)
	t.Run("cases", func(t *testing.T) { //nolint:paralleltest // the group waits for its parallel cases
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := b.call(t, tt.method, tt.target, b.aliceKey, "application/json", tt.body)
				requireProblem(t, r, tt.wantStatus)
				detail, _ := r.body["detail"].(string)
				require.Contains(t, detail, tt.wantDetail)
				params, _ := r.body["invalid_params"].([]any)
				if tt.wantParam == "" {
					require.Empty(t, params)
					return
				}
				require.Len(t, params, 1, r.raw)
				p, _ := params[0].(map[string]any)
				require.Equal(t, tt.wantParam, p["name"])
			})
		}
	})
	require.Equal(t, before, b.rows(t), "no rejected request wrote anything")
	for _, l := range b.logs.Lines(t) {
		require.NotEqual(t, "error", l[obs.KeyLevel], "bad input is not a server fault: %v", l)
	}
}

// What the strict rules still let through: the API's own ID spelling, the
// edges of the cash range, printable Unicode in names, and a '+' in a
// correlation ID written as %2B.
func TestStrictInputStillTakesGoodInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const name = "Café crème 👩‍💻 日本 «ß»" // accents, an emoji joined by U+200D, CJK
	created := b.post(t, "/strategies", b.aliceKey, `{"kind":"buy_and_hold","name":"`+name+`"}`)
	require.Equal(t, http.StatusCreated, created.status, created.raw)
	require.Equal(t, name, created.body["name"])
	sid, _ := created.body["id"].(string)
	got := b.call(t, http.MethodGet, "/strategies/"+sid, b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, got.status, got.raw)
	require.Equal(t, name, got.body["name"])

	for _, cash := range []string{"1", "1e12", "1000000000000"} {
		r := b.post(t, "/backtests", b.aliceKey,
			`{"strategy_id":"`+sid+`","symbol":"ACME","start":"2020-01-01","end":"2021-01-01","initial_cash":`+cash+`}`)
		require.Equal(t, http.StatusAccepted, r.status, "%s: %s", cash, r.raw)
	}

	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/backtests",
		strings.NewReader(`{"strategy_id":"`+sid+`","symbol":"ACME","start":"2020-01-01","end":"2021-01-01","initial_cash":10}`))
	req.Header.Set("Authorization", "Bearer "+b.aliceKey)
	req.Header.Set(httpx.HeaderCorrelationID, "a+b=c/d@e")
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	list := b.call(t, http.MethodGet, "/backtests?correlation_id=a%2Bb%3Dc%2Fd%40e", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, list.status, list.raw)
	require.Len(t, list.body["runs"], 1)
	list = b.call(t, http.MethodGet, "/backtests?correlation_id=a%2Bb=c/d@e", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, list.status, list.raw)
	require.Len(t, list.body["runs"], 1, "only '+' needs escaping")
	all := b.call(t, http.MethodGet, "/backtests?", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, all.status, all.raw)
	require.Len(t, all.body["runs"], 4, "an empty query is no query")
}
