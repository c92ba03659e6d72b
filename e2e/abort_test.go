package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// dialRaw opens a TCP connection to the server for bytes written by hand,
// closed when the test ends. Tests that wait for an answer set a deadline.
func dialRaw(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	conn, ok := c.(*net.TCPConn)
	require.True(t, ok)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// resetConn closes the connection with a TCP RST rather than a FIN, as a
// client that crashed or gave up does: SO_LINGER 0 discards what is unsent.
func resetConn(t *testing.T, conn *net.TCPConn) {
	t.Helper()
	require.NoError(t, conn.SetLinger(0))
	require.NoError(t, conn.Close())
}

// requestHead is a request's head, byte for byte, with a key and a
// correlation ID; a body of n bytes follows when n > 0.
func requestHead(method, target, addr, key, cid string, n int, extra ...string) string {
	head := method + " " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + key +
		"\r\nX-Correlation-ID: " + cid + "\r\n"
	if n > 0 {
		head += "Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(n) + "\r\n"
	}
	return head + strings.Join(extra, "") + "\r\n"
}

// awaitContinue reads the server's "100 Continue", which net/http sends
// when the handler first reads the body: the request is then past
// authentication and inside the handler, waiting for the body.
func awaitContinue(t *testing.T, conn net.Conn) {
	t.Helper()
	r := bufio.NewReader(conn)
	status, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(status, "HTTP/1.1 100 "), "got %q", status)
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if line == "\r\n" {
			return
		}
	}
}

// accessLines returns each correlation ID's request_finished lines, and
// fails the test on any error-level line or traceback.
func accessLines(t *testing.T, lines []map[string]any) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, l := range lines {
		require.NotEqual(t, "error", l[obs.KeyLevel], "no error-level line: %v", l)
		require.NotContains(t, l, obs.KeyTraceback, "no traceback: %v", l)
		if l[obs.KeyEvent] == obs.EventRequestFinished {
			cid, _ := l[obs.KeyCorrelationID].(string)
			out[cid] = append(out[cid], l)
		}
	}
	return out
}

// Clients that reset their connection right after sending a request, or
// while the server waits for their body, are not server errors: no
// error-level line, no traceback, and the access line of a request the
// client left before its answer says 499 at info. Runs and jobs are
// written together or not at all.
func TestResetClientsAreNotServerErrors(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	addr := strings.TrimPrefix(st.api.base, "http://")
	strategy := st.api.createStrategy(t, 5, 20) // and the key's owner is cached
	payload, err := json.Marshal(backtestBody(strategy, "ACME"))
	require.NoError(t, err)
	body := string(payload)

	type kind struct {
		name    string
		n       int
		send    func(t *testing.T, conn *net.TCPConn, cid string)
		want499 bool // the request was surely inside the handler when the client left
	}
	kinds := []kind{
		{name: "post", n: 60, send: func(t *testing.T, conn *net.TCPConn, cid string) {
			t.Helper()
			_, err := conn.Write([]byte(requestHead("POST", "/backtests", addr, st.api.key, cid, len(body)) + body))
			require.NoError(t, err)
		}},
		{name: "list", n: 60, send: func(t *testing.T, conn *net.TCPConn, cid string) {
			t.Helper()
			_, err := conn.Write([]byte(requestHead("GET", "/backtests", addr, st.api.key, cid, 0)))
			require.NoError(t, err)
		}},
		{name: "mid-body", n: 40, want499: true, send: func(t *testing.T, conn *net.TCPConn, cid string) {
			t.Helper()
			_, err := conn.Write([]byte(requestHead("POST", "/backtests", addr, st.api.key, cid, len(body), "Expect: 100-continue\r\n")))
			require.NoError(t, err)
			awaitContinue(t, conn)
			_, err = conn.Write([]byte(body[:len(body)/2]))
			require.NoError(t, err)
		}},
		{name: "before-body", n: 40, want499: true, send: func(t *testing.T, conn *net.TCPConn, cid string) {
			t.Helper()
			_, err := conn.Write([]byte(requestHead("POST", "/strategies", addr, st.api.key, cid, 100, "Expect: 100-continue\r\n")))
			require.NoError(t, err)
			awaitContinue(t, conn)
		}},
	}
	total := 0
	for _, k := range kinds {
		for i := range k.n {
			conn := dialRaw(t, addr)
			require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
			k.send(t, conn, fmt.Sprintf("abort-%s-%d", k.name, i))
			resetConn(t, conn)
			total++
		}
	}
	// The server is still well: a request after all that is answered.
	resp, _ := st.api.do(t, http.MethodGet, "/backtests", "after-aborts", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	st.server.stop(t)
	st.worker.stop(t)
	byID := accessLines(t, st.server.lines(t))
	accessLines(t, st.worker.lines(t))
	counts := map[string]int{}
	for _, k := range kinds {
		for i := range k.n {
			cid := fmt.Sprintf("abort-%s-%d", k.name, i)
			got := byID[cid]
			require.LessOrEqual(t, len(got), 1, "%s: one access line at most", cid)
			if len(got) == 0 {
				// Reset before the server read the request: it never was one.
				require.False(t, k.want499, "%s: no access line", cid)
				counts["unread"]++
				continue
			}
			l := got[0]
			require.Equal(t, "info", l[obs.KeyLevel], "%s: %v", cid, l)
			status, _ := l[obs.KeyStatusCode].(float64)
			if k.want499 {
				require.InDelta(t, 499, status, 0, "%s: %v", cid, l)
			} else {
				require.Contains(t, []float64{499, 200, 202}, status, "%s: %v", cid, l)
			}
			counts[strconv.Itoa(int(status))]++
		}
	}
	require.Equal(t, countRows(t, st.dbURL, "backtest_runs"), countRows(t, st.dbURL, "river_job WHERE kind = 'backtest'"),
		"every run has its job and every job its run")
	t.Logf("%d requests reset by their client: 0 error-level lines, 0 tracebacks; access lines: %d with 499, "+
		"%d with 200, %d with 202 (answered before the reset reached the server), %d never read",
		total, counts["499"], counts["200"], counts["202"], counts["unread"])
}

// A client that gives up while the database stalls is not a server error
// either: its request ends with 499 at info as soon as it leaves, and
// nothing is written.
func TestClientLeavingDuringADatabaseStall(t *testing.T) {
	t.Parallel()
	db, key := migratedSchema(t)
	dbURL := db.URL
	// Deadlines far away: the client's leaving, not the clock, ends each
	// request, however long a busy machine takes to notice it.
	env := []string{
		"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL, "HTTP_ADDR=127.0.0.1:0", "SHUTDOWN_TIMEOUT=5s",
		"REQUEST_TIMEOUT=2m", "HTTP_WRITE_TIMEOUT=3m", "DB_STATEMENT_TIMEOUT=2m",
	}
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	px := newProxy(t, u.Host)
	server := start(t, "server", append(env, "DATABASE_URL="+px.via(dbURL))) // the last one wins
	addr, _ := server.waitFor(t, obs.EventServerStarted)[obs.KeyAddr].(string)
	api := client{base: "http://" + addr, key: key}
	strategy := api.createStrategy(t, 5, 20)
	payload, err := json.Marshal(backtestBody(strategy, "ACME"))
	require.NoError(t, err)

	requests := []struct{ cid, head string }{
		{"stall-post", requestHead("POST", "/backtests", addr, key, "stall-post", len(payload)) + string(payload)},
		{"stall-list", requestHead("GET", "/backtests", addr, key, "stall-list", 0)},
		{"stall-get", requestHead("GET", "/strategies/"+strategy, addr, key, "stall-get", 0)},
	}
	for _, r := range requests {
		// The key is cached before the stall: net/http notices a client that
		// left only once it has read the request's body, which a request
		// still waiting for its key's lookup has not (a known limit).
		resp, body := api.do(t, http.MethodGet, "/backtests", "warm-"+r.cid, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%v", body)
		seen := px.freeze()
		conn := dialRaw(t, addr)
		require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
		_, err := conn.Write([]byte(r.head))
		require.NoError(t, err)
		select {
		case <-seen: // the request's query is held on its way to the database
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: no query reached the database", r.cid)
		}
		resetConn(t, conn)
		line := waitForLine(t, server, r.cid, obs.EventRequestFinished)
		require.InDelta(t, 499, line[obs.KeyStatusCode], 0, "%s: %v", r.cid, line)
		require.Equal(t, "info", line[obs.KeyLevel])
		px.thaw()
	}
	resp, body := api.do(t, http.MethodGet, "/backtests", "after-stall", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "the service carries on: %v", body)

	server.stop(t)
	byID := accessLines(t, server.lines(t))
	for _, r := range requests {
		require.Len(t, byID[r.cid], 1, r.cid)
	}
	require.Zero(t, countRows(t, dbURL, "backtest_runs"), "the departed POST wrote nothing")
	require.Zero(t, countRows(t, dbURL, "river_job WHERE kind = 'backtest'"))
	t.Logf("%d requests left during a database stall: 499 at info each, 0 error-level lines, 0 rows written", len(requests))
}

// waitForLine waits for the line of event with the correlation ID cid.
func waitForLine(t *testing.T, p *process, cid, event string) map[string]any {
	t.Helper()
	return p.waitLine(t, 2*time.Minute, event+" of "+cid, func(l map[string]any) bool {
		return l[obs.KeyCorrelationID] == cid && l[obs.KeyEvent] == event
	})
}
