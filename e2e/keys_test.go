package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// waitForNth waits for the nth line of event from p and returns it.
func (p *process) waitForNth(t *testing.T, event string, n int) map[string]any {
	t.Helper()
	return p.awaitLine(t, time.Minute, fmt.Sprintf("%s #%d", event, n), func(lines []map[string]any) map[string]any {
		seen := 0
		for _, l := range lines {
			if l[obs.KeyEvent] == event {
				if seen++; seen == n {
					return l
				}
			}
		}
		return nil
	})
}

// A key revoked with the command, or deleted with its user in SQL, is
// refused by the running server's next request once the server logged that
// it forgot the key: well inside the cache's 30 seconds.
func TestKeyRevocationReachesTheServer(t *testing.T) {
	t.Parallel()
	// Another test's revocation would reach this server through a shared
	// database's channel.
	st := newStackWith(t, stackOptions{ownDatabase: true})
	st.server.waitFor(t, obs.EventKeyListenerStarted)
	status := func(c client) int {
		resp, _ := c.do(t, http.MethodGet, "/backtests", "", nil)
		return resp.StatusCode
	}

	// Revoked by the command, named by the key's public prefix.
	require.Equal(t, http.StatusOK, status(st.api))
	require.Equal(t, http.StatusOK, status(st.api), "now from the cache")
	out := runCommand(t, st.env, "server", "revoke-api-key", "-prefix", st.api.key[:11])
	var revoked map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &revoked), out)
	require.Equal(t, obs.EventAPIKeyRevoked, revoked[obs.KeyEvent])
	require.Equal(t, st.api.key[:11], revoked[obs.KeyAPIKeyPrefix])
	require.NotContains(t, out, st.api.key, "the key is never logged")
	require.InDelta(t, 1, st.server.waitForNth(t, obs.EventAPIKeyInvalidated, 1)[obs.KeyDropped], 0,
		"the server had the key cached and dropped it")
	resp, body := st.api.do(t, http.MethodGet, "/backtests", "", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)

	// Deleted with its user, by hand.
	other := client{base: st.api.base, key: strings.TrimSpace(runCommand(t, st.env, "server", "create-api-key", "-user", "leaving"))}
	require.Equal(t, http.StatusOK, status(other))
	conn, err := pgx.Connect(t.Context(), st.dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(t.Context()))
	_, err = conn.Exec(t.Context(), `DELETE FROM users WHERE name = 'leaving'`)
	require.NoError(t, err)
	require.InDelta(t, 1, st.server.waitForNth(t, obs.EventAPIKeyInvalidated, 2)[obs.KeyDropped], 0)
	resp, body = other.do(t, http.MethodPost, "/strategies", "", map[string]any{"kind": "buy_and_hold"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)

	st.server.stop(t)
	requireSchema(t, st.server.rawLines(t))
	for _, l := range st.server.lines(t) {
		require.NotEqual(t, "error", l[obs.KeyLevel], "no server fault: %v", l)
	}
}

// Two Authorization headers, byte for byte on the wire: a 400 problem.
func TestTwoAuthorizationHeadersThroughTheServer(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	addr := strings.TrimPrefix(st.api.base, "http://")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Write([]byte("GET /backtests HTTP/1.1\r\nHost: " + addr + "\r\n" +
		"Authorization: Bearer " + st.api.key + "\r\nAuthorization: Bearer bt_someone-else\r\n" +
		"X-Correlation-ID: two-headers\r\nConnection: close\r\n\r\n"))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	var problem map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&problem))
	require.Equal(t, "two-headers", problem["correlation_id"])
	require.Contains(t, problem["detail"], "one Authorization header")
}

// With MAX_UNFINISHED_RUNS=3 and no worker to finish anything, requests
// racing from one key get exactly 3 backtests in; the rest are 429 with
// Retry-After and write nothing. Once the runs finish there is room again.
func TestUnfinishedRunsBoundThroughTheServer(t *testing.T) {
	t.Parallel()
	st := newStack(t, "MAX_UNFINISHED_RUNS=3")
	st.worker.stop(t)
	strategy := st.api.createStrategy(t, 5, 20)

	const racers = 12
	type answer struct {
		status     int
		retryAfter string
		body       map[string]any
	}
	answers := make(chan answer, racers)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for range racers {
		wg.Go(func() {
			<-gate
			resp, body := st.api.do(t, http.MethodPost, "/backtests", "", backtestBody(strategy, "ACME"))
			answers <- answer{resp.StatusCode, resp.Header.Get("Retry-After"), body}
		})
	}
	close(gate)
	wg.Wait()
	close(answers)
	var accepted []string
	for a := range answers {
		switch a.status {
		case http.StatusAccepted:
			id, _ := a.body["run_id"].(string)
			accepted = append(accepted, id)
		case http.StatusTooManyRequests:
			require.Equal(t, "60", a.retryAfter)
			require.NotEmpty(t, a.body["correlation_id"])
			require.Contains(t, a.body["detail"], "3 backtests queued or running")
		default:
			t.Fatalf("unexpected answer %d: %v", a.status, a.body)
		}
	}
	require.Len(t, accepted, 3)
	resp, body := st.api.do(t, http.MethodPost, "/backtests", "", backtestBody(strategy, "ACME"))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, body)
	require.Equal(t, 3, countRows(t, st.dbURL, "backtest_runs"), "refused requests write no run")
	require.Equal(t, 3, countRows(t, st.dbURL, "river_job WHERE kind = 'backtest'"), "nor a job")

	worker := start(t, "worker", st.env)
	for _, id := range accepted {
		require.Equal(t, "succeeded", st.api.waitFinished(t, id)["status"])
	}
	resp, body = st.api.do(t, http.MethodPost, "/backtests", "", backtestBody(strategy, "ACME"))
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "finished runs make room: %v", body)
	worker.stop(t)
	st.server.stop(t)
	requireSchema(t, st.server.rawLines(t))
}
