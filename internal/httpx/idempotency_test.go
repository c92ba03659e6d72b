package httpx_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
)

// withKey is the headers of a request with an Idempotency-Key and a
// correlation ID of its own.
func withKey(key, correlationID string) map[string][]string {
	return map[string][]string{httpx.HeaderIdempotencyKey: {key}, httpx.HeaderCorrelationID: {correlationID}}
}

// requireSameResponse checks that a replay answered what the first request
// did, byte for byte, marked as replayed.
func requireSameResponse(t *testing.T, first, replay response) {
	t.Helper()
	require.Equal(t, first.status, replay.status)
	require.Equal(t, first.raw, replay.raw)
	require.Equal(t, first.header.Get("Location"), replay.header.Get("Location"))
	for _, h := range []string{"Content-Type", "X-Content-Type-Options"} {
		require.NotEmpty(t, replay.header.Get(h), h)
		require.Equal(t, first.header.Get(h), replay.header.Get(h), h)
	}
	require.Empty(t, first.header.Get(httpx.HeaderIdempotentReplayed))
	require.Equal(t, "true", replay.header.Get(httpx.HeaderIdempotentReplayed))
}

func TestIdempotentReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sid := b.strategy(t, b.aliceKey)
	body := `{"strategy_id":"` + sid + `","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`
	// The same body, spelt otherwise: other order, spaces, another form of
	// the same number.
	respelt := "{ \"initial_cash\": 5.0e2, \"end\":\"2020-06-01\", \"start\":\"2020-01-01\",\n" +
		"\"symbol\":\"ACME\", \"strategy_id\":\"" + sid + "\" }"

	tests := []struct {
		path, first, replay string
		wantStatus          int
	}{
		{"/backtests", body, respelt, http.StatusAccepted},
		{
			"/strategies", `{"kind":"sma_crossover","params":{"fast_window":5,"slow_window":20}}`,
			`{"params":{"slow_window":20,"fast_window":5},"kind":"sma_crossover"}`, http.StatusCreated,
		},
	}
	for _, tt := range tests {
		first := b.postWith(t, tt.path, b.aliceKey, withKey("key-"+tt.path, "first"+strings.ReplaceAll(tt.path, "/", "-")), tt.first)
		require.Equal(t, tt.wantStatus, first.status, first.raw)
		before := b.rows(t)

		replayCID := "replay" + strings.ReplaceAll(tt.path, "/", "-")
		replay := b.postWith(t, tt.path, b.aliceKey, withKey("key-"+tt.path, replayCID), tt.replay)
		requireSameResponse(t, first, replay)
		require.Equal(t, replayCID, replay.header.Get(httpx.HeaderCorrelationID), "the replay keeps its own correlation ID")
		require.Equal(t, before, b.rows(t), "%s: a replay creates nothing", tt.path)

		// The replay's line: both IDs, and nothing else of note.
		var line map[string]any
		for _, l := range b.logs.Lines(t) {
			if l[obs.KeyEvent] == obs.EventIdempotentReplay && l[obs.KeyCorrelationID] == replayCID {
				line = l
			}
		}
		require.NotNil(t, line, "idempotent_replay is logged")
		delete(line, obs.KeyTimestamp)
		require.Equal(t, map[string]any{
			obs.KeyLevel: "info", obs.KeyEvent: obs.EventIdempotentReplay, obs.KeyService: "server",
			obs.KeyCorrelationID: replayCID, obs.KeyUserID: line[obs.KeyUserID],
			obs.KeyOriginalCorrID: "first" + strings.ReplaceAll(tt.path, "/", "-"),
			obs.KeyStatusCode:     float64(tt.wantStatus),
		}, line)
	}
	// The stored body names the original request: a client quoting the
	// replayed run's correlation ID finds the request that created it.
	var replayed map[string]any
	r := b.postWith(t, "/backtests", b.aliceKey, withKey("key-/backtests", "third"), body)
	require.NoError(t, json.Unmarshal([]byte(r.raw), &replayed))
	require.Equal(t, "first-backtests", replayed["correlation_id"])
}

func TestIdempotencyKeyRules(t *testing.T) {
	t.Parallel()
	// setup gives each case a database of its own, with a strategy, and a
	// backtest body of it for a symbol.
	setup := func(t *testing.T) (*testBundle, func(symbol string) string) {
		t.Helper()
		b := setup(t)
		sid := b.strategy(t, b.aliceKey)
		return b, func(symbol string) string {
			return `{"strategy_id":"` + sid + `","symbol":"` + symbol + `","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`
		}
	}
	keyed := func(key string) map[string][]string { return map[string][]string{httpx.HeaderIdempotencyKey: {key}} }

	t.Run("another body, or another endpoint: 422, nothing created", func(t *testing.T) {
		t.Parallel()
		b, backtest := setup(t)
		first := b.postWith(t, "/backtests", b.aliceKey, keyed("k1"), backtest("ACME"))
		require.Equal(t, http.StatusAccepted, first.status, first.raw)
		before := b.rows(t)
		for path, body := range map[string]string{"/backtests": backtest("BETA"), "/strategies": `{"kind":"buy_and_hold"}`} {
			r := b.postWith(t, path, b.aliceKey, keyed("k1"), body)
			requireProblem(t, r, http.StatusUnprocessableEntity)
			require.Equal(t, "/problems/idempotency_key_reused", r.body["type"])
			require.Contains(t, r.body["detail"], "Idempotency-Key")
			require.Empty(t, r.header.Get(httpx.HeaderIdempotentReplayed))
		}
		require.Equal(t, before, b.rows(t))
	})

	t.Run("keys are per user", func(t *testing.T) {
		t.Parallel()
		b, backtest := setup(t)
		alices := b.postWith(t, "/backtests", b.aliceKey, keyed("k1"), backtest("ACME"))
		require.Equal(t, http.StatusAccepted, alices.status, alices.raw)
		bobSID := b.strategy(t, b.bobKey)
		r := b.postWith(t, "/backtests", b.bobKey, keyed("k1"),
			`{"strategy_id":"`+bobSID+`","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`)
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
		require.Empty(t, r.header.Get(httpx.HeaderIdempotentReplayed))
		require.NotEqual(t, alices.body["run_id"], r.body["run_id"])
	})

	t.Run("a failed request stores nothing: the key can be retried", func(t *testing.T) {
		t.Parallel()
		b, backtest := setup(t)
		unknown := `{"strategy_id":"01a2175f-0000-7000-8000-000000000000","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`
		requireProblem(t, b.postWith(t, "/backtests", b.aliceKey, keyed("k2"), unknown), http.StatusUnprocessableEntity)
		requireProblem(t, b.postWith(t, "/backtests", b.aliceKey, keyed("k2"), backtest("AC ME")), http.StatusUnprocessableEntity)
		requireProblem(t, b.postWith(t, "/strategies", b.aliceKey, keyed("k2"), `{"kind":"martingale"}`), http.StatusUnprocessableEntity)
		var n int
		require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM idempotency_keys WHERE key = 'k2'`).Scan(&n))
		require.Zero(t, n)
		r := b.postWith(t, "/backtests", b.aliceKey, keyed("k2"), backtest("ACME"))
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
		require.Empty(t, r.header.Get(httpx.HeaderIdempotentReplayed))
	})

	t.Run("an expired key is used afresh", func(t *testing.T) {
		t.Parallel()
		b, backtest := setup(t)
		first := b.postWith(t, "/backtests", b.aliceKey, keyed("k3"), backtest("ACME"))
		require.Equal(t, http.StatusAccepted, first.status, first.raw)
		_, err := b.db.Pool.Exec(t.Context(), `UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'k3'`)
		require.NoError(t, err)
		again := b.postWith(t, "/backtests", b.aliceKey, keyed("k3"), backtest("ACME"))
		require.Equal(t, http.StatusAccepted, again.status, again.raw)
		require.Empty(t, again.header.Get(httpx.HeaderIdempotentReplayed))
		require.NotEqual(t, first.body["run_id"], again.body["run_id"])
	})

	t.Run("bad keys are a 400, and write nothing", func(t *testing.T) {
		t.Parallel()
		b, backtest := setup(t)
		before := b.rows(t)
		for name, values := range map[string][]string{
			"empty":           {""},
			"256 characters":  {strings.Repeat("k", 256)},
			"non-ASCII":       {"clé"},
			"control byte":    {"a\x01b"},
			"DEL":             {"a\x7fb"},
			"sent twice":      {"a", "b"},
			"sent twice, one": {"a", "a"},
		} {
			r := b.postWith(t, "/backtests", b.aliceKey, map[string][]string{httpx.HeaderIdempotencyKey: values}, backtest("ACME"))
			requireProblem(t, r, http.StatusBadRequest)
			params, _ := r.body["invalid_params"].([]any)
			require.Len(t, params, 1, name)
			p, _ := params[0].(map[string]any)
			require.Equal(t, httpx.HeaderIdempotencyKey, p["name"], name)
		}
		require.Equal(t, before, b.rows(t))
		for _, l := range b.logs.Lines(t) {
			require.NotEqual(t, "error", l[obs.KeyLevel], "a bad key is not a server fault: %v", l)
		}
	})

	t.Run("255 printable characters, spaces inside, are a key", func(t *testing.T) {
		t.Parallel()
		b, _ := setup(t)
		key := "a " + strings.Repeat("~", 253)
		r := b.postWith(t, "/strategies", b.aliceKey, keyed(key), `{"kind":"buy_and_hold"}`)
		require.Equal(t, http.StatusCreated, r.status, r.raw)
		replay := b.postWith(t, "/strategies", b.aliceKey, keyed(key), `{"kind":"buy_and_hold"}`)
		requireSameResponse(t, r, replay)
	})
}

func TestIdempotencyKeyTTLIsTheSetting(t *testing.T) {
	t.Parallel()
	b := setup(t, func(d *httpx.Deps) { d.IdempotencyKeyTTL = 90 * time.Minute })
	r := b.postWith(t, "/strategies", b.aliceKey, map[string][]string{httpx.HeaderIdempotencyKey: {"k"}}, `{"kind":"buy_and_hold"}`)
	require.Equal(t, http.StatusCreated, r.status, r.raw)
	var ttl time.Duration
	require.NoError(t, b.db.Pool.QueryRow(t.Context(),
		`SELECT (extract(epoch FROM expires_at - created_at) * 1e6)::bigint * 1000 FROM idempotency_keys`).Scan(&ttl))
	require.Equal(t, 90*time.Minute, ttl)
}

// Fifty requests with one key at once: one run, one job, and every client
// gets the same answer. The losers wait on the winner's uncommitted key,
// then replay what it committed.
func TestIdempotencyKeyUnderConcurrency(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	// A pool with room for several transactions at once, so that requests
	// really meet at the key's row lock rather than queue for a connection.
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	b := setupOn(t, &dbtest.DB{Name: db.Name, Schema: db.Schema, URL: db.URL, Pool: pool})
	sid := b.strategy(t, b.aliceKey)
	body := `{"strategy_id":"` + sid + `","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`

	const clients = 50
	responses := make([]response, clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			<-start
			responses[i] = b.postWith(t, "/backtests", b.aliceKey,
				map[string][]string{httpx.HeaderIdempotencyKey: {"one-key"}}, body)
		})
	}
	close(start)
	wg.Wait()

	replayed := 0
	for _, r := range responses {
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
		require.Equal(t, responses[0].raw, r.raw, "every client gets the same body")
		require.Equal(t, responses[0].header.Get("Location"), r.header.Get("Location"))
		if r.header.Get(httpx.HeaderIdempotentReplayed) == "true" {
			replayed++
		}
	}
	require.Equal(t, clients-1, replayed, "one created, the others replayed")
	require.Equal(t, map[string]int{"strategies": 1, "backtest_runs": 1, "river_job": 1}, b.rows(t))
	replays := 0
	for _, l := range b.logs.Lines(t) {
		if l[obs.KeyEvent] == obs.EventIdempotentReplay {
			replays++
		}
		require.NotEqual(t, "error", l[obs.KeyLevel], "%v", l)
	}
	require.Equal(t, clients-1, replays)
}

// A retry is answered the stored response even when what the first
// request used is gone: its strategy, deleted once the run finished. The
// stored response wins over any answer the database would now give.
func TestIdempotentReplayOutlivesTheStrategy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sid := b.strategy(t, b.aliceKey)
	body := `{"strategy_id":"` + sid + `","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`
	first := b.postWith(t, "/backtests", b.aliceKey, withKey("order-42", "first"), body)
	require.Equal(t, http.StatusAccepted, first.status, first.raw)
	_, err := b.db.Pool.Exec(t.Context(), `UPDATE backtest_runs SET status = 'succeeded', finished_at = now()`)
	require.NoError(t, err)
	deleted := b.call(t, http.MethodDelete, "/strategies/"+sid, b.aliceKey, "", "")
	require.Equal(t, http.StatusNoContent, deleted.status, deleted.raw)
	before := b.rows(t)

	replay := b.postWith(t, "/backtests", b.aliceKey, withKey("order-42", "replay"), body)
	requireSameResponse(t, first, replay)
	other := b.postWith(t, "/backtests", b.aliceKey, withKey("order-42", "other"),
		strings.Replace(body, "ACME", "BETA", 1))
	requireProblem(t, other, http.StatusUnprocessableEntity)
	require.Equal(t, "/problems/idempotency_key_reused", other.body["type"])
	require.Equal(t, before, b.rows(t), "neither created anything")

	// Without the key's earlier request, the strategy is refused as ever,
	// and the refusal stores nothing.
	fresh := b.postWith(t, "/backtests", b.aliceKey, withKey("order-43", "fresh"), body)
	requireProblem(t, fresh, http.StatusUnprocessableEntity)
	require.Equal(t, []string{"strategy_id"}, invalidNames(t, fresh))
	var n int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM idempotency_keys WHERE key = 'order-43'`).Scan(&n))
	require.Zero(t, n)
}
