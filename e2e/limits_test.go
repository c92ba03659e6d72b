package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// slowEnv shortens the server's read timeouts for the tests of slow clients.
var slowEnv = []string{"HTTP_READ_HEADER_TIMEOUT=1s", "HTTP_READ_TIMEOUT=1s"}

// addrOf is the server's host:port.
func (s *stack) addrOf() string { return strings.TrimPrefix(s.api.base, "http://") }

// slowBody starts a POST /backtests that announces a 1,000-byte body and
// then sends it one byte every 50 ms, until the connection fails or the
// test ends: a client far slower than any read timeout.
func slowBody(t *testing.T, addr, key string) net.Conn {
	t.Helper()
	conn := dialRaw(t, addr)
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	_, err := fmt.Fprintf(conn, "POST /backtests HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s"+
		"Content-Length: 1000\r\n\r\n{", addr, auth)
	require.NoError(t, err)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-t.Context().Done():
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	return conn
}

// readUntilClosed reads what the server sends until it closes the
// connection. A connection still open after a minute fails the test: that
// is a server holding a slow client forever, not a slow machine.
func readUntilClosed(t *testing.T, conn net.Conn) []byte {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(time.Minute)))
	got, err := io.ReadAll(conn)
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("the server kept the connection open (%d bytes received)", len(got))
	}
	// A reset after the response is the server closing too.
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		require.NoError(t, err)
	}
	return got
}

// A body sent a byte at a time is cut at HTTP_READ_TIMEOUT, whether or not
// the request carries a key: net/http would otherwise wait for the rest of
// the body of a request it has already answered (a 401), with no deadline.
func TestSlowBodyIsCut(t *testing.T) {
	t.Parallel()
	st := newStack(t, slowEnv...)
	tests := []struct {
		name       string
		key        string
		wantStatus []int
	}{
		{name: "without a key", wantStatus: []int{http.StatusUnauthorized}},
		{name: "with a wrong key", key: "bt_wrong", wantStatus: []int{http.StatusUnauthorized}},
		// The body never arrives whole: it cannot be read (400) or the
		// connection is closed before anything is written.
		{name: "with a valid key", key: st.api.key, wantStatus: []int{http.StatusBadRequest, http.StatusRequestTimeout}},
	}
	// All three at once, then each read to its end.
	conns, began := make([]net.Conn, len(tests)), time.Now()
	for i, tt := range tests {
		conns[i] = slowBody(t, st.addrOf(), tt.key)
	}
	for i, tt := range tests {
		got := readUntilClosed(t, conns[i])
		if len(got) == 0 {
			t.Logf("%s: closed without a response", tt.name)
			continue // cut all the same
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(got)), nil)
		require.NoError(t, err, tt.name)
		require.Contains(t, tt.wantStatus, resp.StatusCode, tt.name)
		require.NoError(t, resp.Body.Close())
		t.Logf("%s: %d, then the connection was closed (%v after the clients started)",
			tt.name, resp.StatusCode, time.Since(began).Round(10*time.Millisecond))
	}
	st.server.stop(t)
	for _, l := range st.server.lines(t) {
		require.NotEqual(t, "error", l[obs.KeyLevel], "a slow client is not a server fault: %v", l)
	}
}

// Headers over HTTP_MAX_HEADER_BYTES (64 KiB by default) get 431; a request
// just under it is served.
func TestOversizedHeadersGet431(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	tests := []struct {
		name   string
		lines  []string
		status int
	}{
		{name: "60 KB", lines: []string{"X-Pad: " + strings.Repeat("a", 60_000) + "\r\n"}, status: http.StatusOK},
		{
			name: "one 100 KB header", lines: []string{"X-Pad: " + strings.Repeat("a", 100_000) + "\r\n"},
			status: http.StatusRequestHeaderFieldsTooLarge,
		},
		{name: "100 headers of 1 KB", lines: manyHeaders(100, 1000), status: http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := rawGet(t, st.addrOf(), tt.lines...)
			require.Equal(t, tt.status, resp.StatusCode)
		})
	}
}

func manyHeaders(n, size int) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("X-Pad-%d: %s\r\n", i, strings.Repeat("a", size))
	}
	return lines
}

// At HTTP_MAX_CONNECTIONS, a further connection waits in the backlog, and
// is served as soon as another closes.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	const limit = 3
	st := newStack(t, "HTTP_MAX_CONNECTIONS="+strconv.Itoa(limit),
		"HTTP_READ_HEADER_TIMEOUT=5m", "HTTP_READ_TIMEOUT=5m")
	addr := st.addrOf()
	held := make([]net.Conn, limit)
	for i := range held {
		held[i] = dialRaw(t, addr)
		_, err := fmt.Fprintf(held[i], "GET /healthz HTTP/1.1\r\nHost: %s\r\n", addr) // never finished
		require.NoError(t, err)
	}
	extra := dialRaw(t, addr) // the kernel completes the handshake; the server does not accept it
	_, err := fmt.Fprintf(extra, "GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr)
	require.NoError(t, err)
	// Nothing can come back while the held connections fill the cap (their
	// read timeout is 5 minutes), so this wait cannot pass by accident of
	// timing; it fails only if the extra connection is served.
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(time.Second)))
	n, err := extra.Read(make([]byte, 1))
	var netErr net.Error
	require.True(t, errors.As(err, &netErr) && netErr.Timeout(), "served past the cap: %d bytes, %v", n, err)

	require.NoError(t, held[0].Close())
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(time.Minute)))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	require.NoError(t, err, "served once a connection closed")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, resp.Body.Close())
}

// SIGTERM with clients that never finish their request: the server closes
// them when SHUTDOWN_TIMEOUT runs out, says so, and exits 0.
func TestSIGTERMWithSlowClients(t *testing.T) {
	t.Parallel()
	st := newStack(t, "SHUTDOWN_TIMEOUT=1s", "HTTP_READ_HEADER_TIMEOUT=5m", "HTTP_READ_TIMEOUT=5m")
	addr := st.addrOf()
	var conns []net.Conn
	for i := range 30 {
		switch i % 3 {
		case 0:
			conns = append(conns, slowBody(t, addr, ""))
		case 1:
			conns = append(conns, slowBody(t, addr, st.api.key))
		default:
			c := dialRaw(t, addr)
			_, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\nX-Slow: ", addr)
			require.NoError(t, err)
			conns = append(conns, c)
		}
	}
	// The requests are unfinished, so nothing is logged yet: the kernel's
	// view of the server's sockets says when it holds them all.
	waitHeld(t, addr, len(conns))

	st.server.stop(t) // exit status 0, or the test fails
	for _, c := range conns {
		readUntilClosed(t, c)
	}
	var timedOut map[string]any
	for _, l := range st.server.lines(t) {
		if l[obs.KeyEvent] == obs.EventServerShutdownTimedOut {
			timedOut = l
		}
	}
	require.NotNil(t, timedOut, "server_shutdown_timed_out is logged")
	require.Equal(t, "warn", timedOut[obs.KeyLevel])
	closed, _ := timedOut[obs.KeyConnectionsClosed].(float64)
	// The slow bodies are mid-request until SHUTDOWN_TIMEOUT ends; the slow
	// headers may already have been closed as idle.
	require.GreaterOrEqual(t, int(closed), 20)
	t.Logf("SIGTERM with %d slow clients: exit 0, %d connections closed at SHUTDOWN_TIMEOUT", len(conns), int(closed))
	requireSchema(t, st.server.rawLines(t))
}

var slowConns = flag.Int("slow-conns", 300,
	"connections TestThousandSlowConnectionsKeepMemoryBounded holds (docs/reliability.md's figures use 1000)")

// Connections (300 by default, 1,000 for the docs' figures) each hold just
// under 64 KiB of unfinished headers, the most HTTP_MAX_HEADER_BYTES lets a
// client make the server keep. The server's memory stays bounded, it still
// answers, and SIGTERM exits 0.
func TestThousandSlowConnectionsKeepMemoryBounded(t *testing.T) {
	t.Parallel()
	const pad = 60_000
	conns := *slowConns
	require.Positive(t, conns, "-slow-conns")
	raiseFileLimit(t, uint64(conns)+200) //nolint:gosec // positive, checked above
	st := newStack(t, "HTTP_MAX_CONNECTIONS="+strconv.Itoa(conns+100), "HTTP_READ_HEADER_TIMEOUT=5m", "HTTP_READ_TIMEOUT=5m",
		"SHUTDOWN_TIMEOUT=1s")
	addr := st.addrOf()
	before := peakRSS(t, st.server)
	chunk := []byte("X-Pad: " + strings.Repeat("a", pad))
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	held := make([]net.Conn, conns)
	for i := range held {
		held[i] = dialRaw(t, addr)
		wg.Go(func() {
			if _, err := fmt.Fprintf(held[i], "GET /healthz HTTP/1.1\r\nHost: %s\r\n%s", addr, chunk); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	waitHeld(t, addr, conns)

	resp, body := st.api.do(t, http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "still serving with %d slow connections: %v", conns, body)
	peak := peakRSS(t, st.server)
	t.Logf("%d connections holding %d KB of headers each: server peak RSS %d MB (%d MB before)",
		conns, pad/1000, peak>>10, before>>10)
	// Generous: the race detector (the e2e default) multiplies the binary's
	// memory, to about 350 KiB a connection here. Go's default header limit
	// let each of these clients hold about 1 MB.
	require.Less(t, peak-before, int64(conns)*640, "peak RSS growth in KiB, %d connections", conns)

	st.server.stop(t)
	for _, c := range held[:10] {
		readUntilClosed(t, c)
	}
}

// waitHeld waits until the server has accepted want connections on addr and
// read every byte they sent: the kernel's socket table (/proc/net/tcp) shows
// its established sockets and their unread bytes. An event, not a sleep.
func waitHeld(t *testing.T, addr string, want int) {
	t.Helper()
	_, portStr, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	port, err := strconv.Atoi(portStr)
	require.NoError(t, err)
	local := fmt.Sprintf(":%04X", port)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		data, err := os.ReadFile("/proc/net/tcp")
		require.NoError(t, err)
		established, unread := 0, 0
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 5 || !strings.HasSuffix(f[1], local) || f[3] != "01" { // 01: ESTABLISHED
				continue
			}
			established++
			_, rx, _ := strings.Cut(f[4], ":") // tx_queue:rx_queue
			if n, _ := strconv.ParseInt(rx, 16, 64); n > 0 {
				unread++
			}
		}
		// Bytes of connections still in the listen backlog are unread too:
		// none unread means every connection was accepted and read.
		if established >= want && unread == 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d of %d connections established, %d with unread bytes",
			established, want, unread)
		time.Sleep(50 * time.Millisecond)
	}
}

// raiseFileLimit makes sure this process may open n more files: a CI
// runner's default soft limit (often 1,024) is too low for the test's
// sockets.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur >= n+1024 {
		return
	}
	require.GreaterOrEqual(t, lim.Max, n+1024, "the hard limit on open files is too low for this test")
	lim.Cur = lim.Max
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
}

// A database that stops answering (frozen, not down) costs a request its
// deadline, not the client's patience: 503 with Retry-After, and nothing
// written.
func TestFrozenDatabaseAnswers503WithinTheDeadline(t *testing.T) {
	t.Parallel()
	var px *proxy
	st := newStackWith(t, stackOptions{
		env: []string{"REQUEST_TIMEOUT=2s", "HTTP_WRITE_TIMEOUT=5s", "DB_STATEMENT_TIMEOUT=2s"},
		via: func(dbURL string) string {
			u, err := url.Parse(dbURL)
			require.NoError(t, err)
			px = newProxy(t, u.Host)
			return px.via(dbURL)
		},
	})
	strategy := st.api.createStrategy(t, 5, 20) // also puts the key's owner in the server's cache

	px.freeze()
	requests := []struct {
		cid, method, path string
		body              any
	}{
		{"frozen-post", http.MethodPost, "/backtests", backtestBody(strategy, "ACME")},
		{"frozen-list", http.MethodGet, "/backtests", nil},
		{"frozen-ready", http.MethodGet, "/readyz", nil},
	}
	for _, r := range requests {
		// http.DefaultClient has no timeout: a hung request fails the test
		// when the test's own timeout ends it.
		resp, body := st.api.do(t, r.method, r.path, r.cid, r.body)
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %v", r.cid, body)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		require.Equal(t, r.cid, body["correlation_id"])
	}
	// Counted directly, not through the frozen proxy.
	require.Equal(t, 0, countRows(t, st.dbURL, "backtest_runs"), "nothing half-written")
	require.Equal(t, 0, countRows(t, st.dbURL, "river_job WHERE kind = 'backtest'"), "nothing half-written")

	px.thaw()
	require.Eventually(t, func() bool {
		resp, _ := st.api.do(t, http.MethodPost, "/backtests", "after-freeze", backtestBody(strategy, "ACME"))
		return resp.StatusCode == http.StatusAccepted
	}, 30*time.Second, 250*time.Millisecond, "the server recovers by itself")
	st.server.stop(t)
	for _, l := range st.server.lines(t) {
		cid, _ := l[obs.KeyCorrelationID].(string)
		if strings.HasPrefix(cid, "frozen-") && l[obs.KeyEvent] == obs.EventRequestFinished {
			require.InDelta(t, http.StatusServiceUnavailable, l[obs.KeyStatusCode], 0)
		}
	}
}
