package httpx_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/apitest"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// contract is the API's document, loaded once for every test.
var contract = sync.OnceValues(func() (*apitest.Contract, error) { return apitest.New(context.Background()) })

// checked is h, every exchange of which must follow the API's document.
func checked(t *testing.T, h http.Handler) http.Handler {
	t.Helper()
	c, err := contract()
	require.NoError(t, err)
	return c.Handler(t, h)
}

type testBundle struct {
	db       *dbtest.DB
	handler  http.Handler
	logs     *logtest.Sink
	aliceKey string
	bobKey   string
}

// setup serves the API on a new database; options change its Deps.
func setup(t *testing.T, options ...func(*httpx.Deps)) *testBundle {
	t.Helper()
	return setupOn(t, dbtest.New(t), options...)
}

// setupOn is setup on a given database.
func setupOn(t *testing.T, db *dbtest.DB, options ...func(*httpx.Deps)) *testBundle {
	t.Helper()
	logs := &logtest.Sink{}
	h := obs.NewHandler(logs, obs.Options{Service: "server"})
	inserter, err := enqueue.NewInsertClient(db.Pool, h)
	require.NoError(t, err)
	q := store.New(db.Pool)
	keyOf := func(name string) string {
		u, err := q.EnsureUser(t.Context(), name)
		require.NoError(t, err)
		key, hash := httpx.NewAPIKey()
		require.NoError(t, q.AddAPIKey(t.Context(), u.ID, hash))
		return key
	}
	deps := httpx.Deps{Queries: q, Enqueuer: enqueue.NewEnqueuer(db.Pool, inserter, 0), DB: db.Pool}
	for _, o := range options {
		o(&deps)
	}
	return &testBundle{
		db:      db,
		handler: checked(t, httpx.NewServer(obs.NewLogger(logs, obs.Options{Service: "server"}), deps)),
		logs:    logs, aliceKey: keyOf("alice"), bobKey: keyOf("bob"),
	}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// call makes a request with the API key and the Content-Type, each if
// given.
func (b *testBundle) call(t *testing.T, method, path, key, contentType, body string) response {
	t.Helper()
	header := http.Header{}
	if contentType != "" {
		header.Set("Content-Type", contentType)
	}
	return b.send(t, method, path, key, header, body)
}

func (b *testBundle) post(t *testing.T, path, key, body string) response {
	t.Helper()
	return b.postWith(t, path, key, nil, body)
}

// postWith posts a JSON body with headers of its own (each value its own
// header line).
func (b *testBundle) postWith(t *testing.T, path, key string, headers map[string][]string, body string) response {
	t.Helper()
	header := http.Header{"Content-Type": {"application/json"}}
	for name, values := range headers {
		header[name] = values
	}
	return b.send(t, http.MethodPost, path, key, header, body)
}

// send is the one request builder: a request with the API key, if any, and
// headers (each value its own header line), served and read.
func (b *testBundle) send(t *testing.T, method, path, key string, headers map[string][]string, body string) response {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for name, values := range headers {
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	return toResponse(t, rec)
}

// toResponse reads a recorded response, its body parsed when it has one.
func toResponse(t *testing.T, rec *httptest.ResponseRecorder) response {
	t.Helper()
	r := response{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
	if rec.Body.Len() > 0 {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &r.body), r.raw)
	}
	return r
}

// strategy creates a buy_and_hold strategy of key's user and returns its ID.
func (b *testBundle) strategy(t *testing.T, key string) string {
	t.Helper()
	r := b.post(t, "/strategies", key, `{"kind":"buy_and_hold"}`)
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	id, _ := r.body["id"].(string)
	return id
}

func (b *testBundle) rows(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"strategies", "backtest_runs", "river_job"} {
		var n int
		require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM `+table).Scan(&n))
		out[table] = n
	}
	return out
}

// problemTypes are the problem types each status comes with, as the
// document lists them.
var problemTypes = map[int][]string{
	400: {"/problems/validation"}, 401: {"/problems/unauthorized"}, 403: {"/problems/forbidden"},
	404: {"/problems/not_found"}, 405: {"/problems/method_not_allowed"}, 409: {"/problems/conflict"},
	413: {"/problems/payload_too_large"}, 415: {"/problems/unsupported_media_type"},
	422: {"/problems/unprocessable", "/problems/idempotency_key_reused"},
	429: {"/problems/rate_limited", "/problems/too_many_unfinished"},
	500: {"/problems/internal"}, 503: {"/problems/unavailable"},
}

func requireProblem(t *testing.T, r response, status int) {
	t.Helper()
	require.Equal(t, status, r.status, r.raw)
	require.Contains(t, problemTypes[status], r.body["type"], "the problem's type names its kind")
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"))
	require.Equal(t, r.header.Get(httpx.HeaderCorrelationID), r.body["correlation_id"])
	require.NotEmpty(t, r.body["correlation_id"])
	require.InDelta(t, status, r.body["status"], 0)
	require.NotEmpty(t, r.body["title"])
}

func TestBadInputWritesNothing(t *testing.T) { //nolint:tparallel // the "cases" group waits for its parallel cases
	t.Parallel()
	b := setup(t)
	created := b.post(t, "/strategies", b.aliceKey, `{"name":"s","kind":"sma_crossover","params":{"fast_window":5,"slow_window":20}}`)
	require.Equal(t, http.StatusCreated, created.status, created.raw)
	sid, _ := created.body["id"].(string)
	bobSID := b.strategy(t, b.bobKey)
	backtest := func(fields string) string {
		return `{"strategy_id":"` + sid + `","symbol":"ACME",` + fields + `}`
	}
	valid := `"start":"2020-01-01","end":"2021-01-01","initial_cash":1000`

	tests := []struct {
		name, path, contentType, body string
		wantStatus                    int
		wantParam                     string
	}{
		{"malformed json", "/strategies", "application/json", `{"kind":`, 400, ""},
		{"not json at all", "/backtests", "application/json", `strategy=1`, 400, ""},
		{"empty body", "/strategies", "application/json", ``, 400, ""},
		{"unknown field", "/strategies", "application/json", `{"kind":"buy_and_hold","colour":"red"}`, 400, ""},
		{"wrong type", "/strategies", "application/json", `{"kind":5}`, 400, ""},
		{"array instead of object", "/backtests", "application/json", `[1,2]`, 400, ""},
		{"two objects", "/strategies", "application/json", `{"kind":"buy_and_hold"}{}`, 400, ""},
		{
			"body over 1 MiB", "/strategies", "application/json",
			`{"kind":"buy_and_hold","name":"` + strings.Repeat("x", httpx.MaxBodyBytes) + `"}`, 413, "",
		},
		{"not json content type", "/strategies", "text/plain", `{"kind":"buy_and_hold"}`, 415, ""},
		{"unknown kind", "/strategies", "application/json", `{"kind":"martingale"}`, 422, "kind"},
		{
			"fast not below slow", "/strategies", "application/json",
			`{"kind":"sma_crossover","params":{"fast_window":20,"slow_window":20}}`, 422, "params.fast_window",
		},
		{
			"param of another kind", "/strategies", "application/json",
			`{"kind":"buy_and_hold","params":{"fast_window":2}}`, 422, "params",
		},
		{
			"unknown strategy", "/backtests", "application/json",
			`{"strategy_id":"01a2175f-0000-7000-8000-000000000000","symbol":"ACME",` + valid + `}`, 422, "strategy_id",
		},
		{
			"another user's strategy", "/backtests", "application/json",
			`{"strategy_id":"` + bobSID + `","symbol":"ACME",` + valid + `}`, 422, "strategy_id",
		},
		{
			"strategy id not a uuid", "/backtests", "application/json",
			`{"strategy_id":"7","symbol":"ACME",` + valid + `}`, 422, "strategy_id",
		},
		{
			"end before start", "/backtests", "application/json",
			backtest(`"start":"2021-01-01","end":"2020-01-01","initial_cash":1000`), 422, "end",
		},
		{
			"bad date", "/backtests", "application/json",
			backtest(`"start":"01/02/2020","end":"2021-01-01","initial_cash":1000`), 422, "start",
		},
		{"no cash", "/backtests", "application/json", backtest(`"start":"2020-01-01","end":"2021-01-01"`), 422, "initial_cash"},
		{
			"negative cash", "/backtests", "application/json",
			backtest(`"start":"2020-01-01","end":"2021-01-01","initial_cash":-5`), 422, "initial_cash",
		},
		{
			"cash as a string", "/backtests", "application/json",
			backtest(`"start":"2020-01-01","end":"2021-01-01","initial_cash":"5"`), 400, "",
		},
		{
			"bad symbol", "/backtests", "application/json",
			`{"strategy_id":"` + sid + `","symbol":"AC ME",` + valid + `}`, 422, "symbol",
		},
	}
	before := b.rows(t)
	// The group waits for its parallel cases, then the table is checked.
	t.Run("cases", func(t *testing.T) { //nolint:paralleltest // see above
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := b.call(t, http.MethodPost, tt.path, b.aliceKey, tt.contentType, tt.body)
				requireProblem(t, r, tt.wantStatus)
				require.NotEmpty(t, r.body["detail"])
				if tt.wantParam != "" {
					params, _ := r.body["invalid_params"].([]any)
					require.Len(t, params, 1)
					p, _ := params[0].(map[string]any)
					require.Equal(t, tt.wantParam, p["name"])
				}
			})
		}
	})
	require.Equal(t, before, b.rows(t), "no rejected request wrote anything")
}

func TestAuthAndIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	lower := b.call(t, http.MethodGet, "/backtests", "", "", "")
	require.Equal(t, http.StatusUnauthorized, lower.status)
	lowerScheme := b.send(t, http.MethodGet, "/backtests", "", map[string][]string{"Authorization": {"bearer " + b.aliceKey}}, "")
	require.Equal(t, http.StatusOK, lowerScheme.status, "the scheme is case-insensitive")
	for _, key := range []string{"", "bt_not-a-key"} {
		r := b.call(t, http.MethodGet, "/backtests", key, "", "")
		requireProblem(t, r, http.StatusUnauthorized)
		require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
	}

	s := b.post(t, "/strategies", b.aliceKey, `{"kind":"rsi_reversion","params":{"period":10}}`)
	require.Equal(t, http.StatusCreated, s.status, s.raw)
	sid, _ := s.body["id"].(string)
	require.Equal(t, "/strategies/"+sid, s.header.Get("Location"))
	require.JSONEq(t, `{"period":10,"oversold":30,"overbought":70}`, mustJSON(t, s.body["params"]), "defaults are filled in")

	r := b.postWith(t, "/backtests", b.aliceKey, map[string][]string{httpx.HeaderCorrelationID: {"ticket-42"}},
		`{"strategy_id":"`+sid+`","symbol":"acme","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`)
	require.Equal(t, http.StatusAccepted, r.status, r.raw)
	require.Equal(t, "queued", r.body["status"])
	require.Equal(t, "ticket-42", r.body["correlation_id"])
	runID, _ := r.body["run_id"].(string)
	require.Equal(t, "/backtests/"+runID, r.header.Get("Location"))

	got := b.call(t, http.MethodGet, "/backtests/"+runID, b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, got.status)
	require.Equal(t, "queued", got.body["status"])
	require.Equal(t, "ACME", got.body["symbol"])
	require.Equal(t, "ticket-42", got.body["correlation_id"])
	require.Nil(t, got.body["result"])
	require.Nil(t, got.body["error"])

	list := b.call(t, http.MethodGet, "/backtests?correlation_id=ticket-42", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, list.status)
	require.Len(t, list.body["runs"], 1)
	requireProblem(t, b.call(t, http.MethodGet, "/backtests?correlation_id=", b.aliceKey, "", ""), http.StatusBadRequest)

	// Bob sees none of it.
	requireProblem(t, b.call(t, http.MethodGet, "/strategies/"+sid, b.bobKey, "", ""), http.StatusNotFound)
	requireProblem(t, b.call(t, http.MethodGet, "/backtests/"+runID, b.bobKey, "", ""), http.StatusNotFound)
	requireProblem(t, b.call(t, http.MethodGet, "/backtests/not-a-uuid", b.bobKey, "", ""), http.StatusNotFound)
	bobList := b.call(t, http.MethodGet, "/backtests?correlation_id=ticket-42", b.bobKey, "", "")
	require.Equal(t, http.StatusOK, bobList.status)
	require.Empty(t, bobList.body["runs"])
	bobAll := b.call(t, http.MethodGet, "/backtests", b.bobKey, "", "")
	require.Empty(t, bobAll.body["runs"])

	for _, path := range []string{"/healthz", "/readyz"} {
		r := b.call(t, http.MethodGet, path, "", "", "")
		require.Equal(t, http.StatusOK, r.status, path)
	}

	logs := b.logs.String()
	require.NotContains(t, logs, b.aliceKey, "keys are never logged")
	require.NotContains(t, logs, b.bobKey)
	require.NotContains(t, logs, "Bearer")
	var hash []byte
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT key_hash FROM api_keys LIMIT 1`).Scan(&hash))
	require.Len(t, hash, 32, "only a SHA-256 hash is stored")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}
