package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// rawExchange sends one request written byte for byte and reads its
// answer: net/http's client would refuse or re-encode most of these bytes.
func rawExchange(t *testing.T, addr, request string) (*http.Response, map[string]any) {
	t.Helper()
	conn := dialRaw(t, addr)
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	_, err := conn.Write([]byte(request))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	}
	return resp, body
}

// Bytes PostgreSQL would refuse (NUL, invalid UTF-8), control characters,
// and query strings that do not parse, sent raw to the real server: each is
// a 4xx problem with the request's correlation ID, never a 500, never an
// unfiltered list, and nothing is written.
func TestHostileBytesThroughTheServer(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	addr := strings.TrimPrefix(st.api.base, "http://")
	strategy := st.api.createStrategy(t, 5, 20)
	resp, created := st.api.do(t, http.MethodPost, "/backtests", "hostile-seed", backtestBody(strategy, "ACME"))
	require.Equal(t, http.StatusAccepted, resp.StatusCode, created)

	get := func(target string) string {
		return requestHead("GET", target, addr, st.api.key, "hostile", 0, "Connection: close\r\n")
	}
	post := func(target, body string) string {
		return requestHead("POST", target, addr, st.api.key, "hostile", len(body), "Connection: close\r\n") + body
	}
	name := func(raw string) string { return `{"kind":"buy_and_hold","name":"` + raw + `"}` }
	tests := []struct {
		name, request string
		want          int
	}{
		{"%ff in the correlation filter", get("/backtests?correlation_id=%ff"), 400},
		{"%00 in the correlation filter", get("/backtests?correlation_id=a%00b"), 400},
		{"%zz in the query", get("/backtests?correlation_id=%zz"), 400},
		{"a;b in the query", get("/backtests?correlation_id=a;b"), 400},
		{"an unknown parameter", get("/backtests?colour=red"), 400},
		{"a status no run has", get("/backtests?status=done"), 400},
		{"a forged cursor", get("/backtests?cursor=AAAA"), 400},
		{"a + read as a space", get("/backtests?correlation_id=a+b"), 400},
		{"%00 in a path", get("/backtests/%00"), 404},
		{"%ff in a path", get("/strategies/%ff"), 404},
		{"a run ID in braces", get("/backtests/%7B" + created["run_id"].(string) + "%7D"), 404},
		{"a raw NUL in a name", post("/strategies", name("a\x00b")), 400},
		{"an escaped NUL in a name", post("/strategies", name(`a\u0000b`)), 422},
		{"a raw 0xff in a name", post("/strategies", name("a\xffb")), 400},
		{"a raw ESC sequence in a name", post("/strategies", name("\x1b[31mred")), 400},
		{"an escaped ESC sequence in a name", post("/strategies", name(`\u001b[31mred`)), 422},
		{"U+202E in a name", post("/strategies", name("a\u202eb")), 422},
		{"a duplicate key", post("/strategies", `{"kind":"buy_and_hold","kind":"rsi_reversion"}`), 400},
		{"a key in another case", post("/strategies", `{"KIND":"buy_and_hold"}`), 400},
		{"an escaped NUL in a symbol", post("/backtests", `{"strategy_id":"`+strategy+`","symbol":"A\u0000","start":"2025-01-01","end":"2025-07-01","initial_cash":10}`), 422},
		{"a subnormal initial_cash", post("/backtests", `{"strategy_id":"`+strategy+`","symbol":"ACME","start":"2025-01-01","end":"2025-07-01","initial_cash":5e-324}`), 422},
	}
	for _, tt := range tests {
		resp, problem := rawExchange(t, addr, tt.request)
		require.Equal(t, tt.want, resp.StatusCode, "%s: %v", tt.name, problem)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), tt.name)
		require.Equal(t, resp.Header.Get("X-Correlation-ID"), problem["correlation_id"], tt.name)
		require.Equal(t, "hostile", problem["correlation_id"], tt.name)
		require.NotEmpty(t, problem["detail"], tt.name)
	}

	st.server.stop(t)
	finished := 0
	for _, l := range st.server.lines(t) {
		require.NotEqual(t, "error", l[obs.KeyLevel], "bad input is not a server fault: %v", l)
		if l[obs.KeyCorrelationID] == "hostile" && l[obs.KeyEvent] == obs.EventRequestFinished {
			finished++
			require.Less(t, l[obs.KeyStatusCode], float64(500), "%v", l)
		}
	}
	require.Equal(t, len(tests), finished, "every request was answered by the service, not by net/http")
	require.Equal(t, 1, countRows(t, st.dbURL, "strategies"), "no hostile strategy was written")
	require.Equal(t, 1, countRows(t, st.dbURL, "backtest_runs"), "no hostile run was written")
	t.Logf("%d hostile requests: %d answered 4xx problems, 0 answered 5xx, 0 error-level lines, 0 rows written",
		len(tests), len(tests))
}
