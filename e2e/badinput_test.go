package e2e

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// rawGet sends a GET /healthz with the given header lines, byte for byte:
// net/http's client refuses to send most of the values tested here.
func rawGet(t *testing.T, addr string, headerLines ...string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	req := "GET /healthz HTTP/1.1\r\nHost: " + addr + "\r\n" + strings.Join(headerLines, "") + "Connection: close\r\n\r\n"
	_, err = conn.Write([]byte(req))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp
}

func header(v string) string { return "X-Correlation-ID: " + v + "\r\n" }

// A client's correlation header is untrusted input that ends up in logs. Bad
// values must never reach the output, break a line or fail the request.
func TestBadCorrelationHeadersThroughTheServer(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	addr := strings.TrimPrefix(st.api.base, "http://")

	type outcome int
	const (
		replaced outcome = iota // our middleware replaced it and logged it once
		refused                 // net/http refused the request before any handler: 400 or 431
	)
	bad := []struct {
		name  string
		lines []string
		raw   string // what must appear nowhere in the output
		want  outcome
	}{
		{"CR LF with a forged JSON line", []string{header(`zq1` + "\r\n" + `{"level":"error","event":"forged_zq1"}`)}, "forged_zq1", refused},
		{"folded line with a forged JSON line", []string{header(`zq2` + "\r\n " + `{"level":"error","event":"forged_zq2"}`)}, "forged_zq2", replaced},
		{"NUL byte", []string{header("zq3\x00zq3")}, "zq3\x00zq3", refused},
		{"ESC sequence", []string{header("\x1b[31mzq4\x1b[0m")}, "zq4", refused},
		{"bytes 0x80-0xFF", []string{header("zq5\x80\x9f\xc3\xa9\xfe\xff")}, "zq5", replaced},
		{"U+202E", []string{header("zq6\u202ezq6")}, "zq6", replaced},
		{"U+2028", []string{header("zq7\u2028zq7")}, "zq7", replaced},
		{"quotes and backslashes", []string{header(`zq8"},{\"x`)}, "zq8", replaced},
		{"semicolon", []string{header("zq9;zq9")}, "zq9;zq9", replaced},
		{"spaces only", []string{header("     ")}, "", replaced},
		{"129 characters", []string{header("zqa" + strings.Repeat("a", 126))}, "zqa" + strings.Repeat("a", 126), replaced},
		{"100 KB", []string{header("zqb" + strings.Repeat("b", 100_000))}, "zqbbbbbbbbbb", refused}, // over HTTP_MAX_HEADER_BYTES: 431
		{"two fields", []string{header("zqc-one"), header("zqc-two")}, "zqc-", replaced},
	}
	got := map[string]string{} // case -> the response's correlation ID
	for _, tc := range bad {
		resp := rawGet(t, addr, tc.lines...)
		require.NotEqual(t, http.StatusInternalServerError, resp.StatusCode, tc.name)
		switch tc.want {
		case replaced:
			require.Equal(t, http.StatusOK, resp.StatusCode, tc.name)
			id := resp.Header.Get("X-Correlation-ID")
			require.Len(t, id, 36, "%s: a new UUID", tc.name)
			got[tc.name] = id
		case refused:
			require.Contains(t, []int{http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge}, resp.StatusCode, tc.name)
		}
	}

	valid := []string{
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8", // UUID v1
		"0b7f1d3e-7f5a-4c1e-9a57-2f1a4b6c8d90", // v4
		"01a2175f-386b-7761-8b43-c03581273143", // v7
		"4bf92f3577b34da6a3ce929d0e0e4736",     // nginx $request_id
		"01ARZ3NDEKTSV4RRFFQ69G5FAV",           // ULID
		strings.Repeat("Zz9.", 32),             // 128 characters
	}
	for _, v := range valid {
		resp := rawGet(t, addr, header(v))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, v, resp.Header.Get("X-Correlation-ID"), "a valid ID is reused byte for byte")
	}

	st.server.stop(t)
	output := string(readAll(t, st.server.stdout))
	for _, l := range st.server.lines(t) { // every line parses, or lines fails the test
		require.NotEqual(t, "forged", l[obs.KeyEvent])
	}
	for _, tc := range bad {
		if tc.raw != "" {
			require.NotContains(t, output, tc.raw, "%s: the raw value is never logged", tc.name)
		}
		id, ok := got[tc.name]
		if !ok {
			continue
		}
		rejected := 0
		for _, l := range st.server.lines(t) {
			if l[obs.KeyCorrelationID] == id && l[obs.KeyEvent] == obs.EventCorrelationIDRejected {
				rejected++
			}
		}
		require.Equal(t, 1, rejected, "%s: exactly one correlation_id_rejected line", tc.name)
	}
	for _, v := range valid {
		require.Contains(t, output, `"correlation_id":"`+v+`"`)
	}
}
