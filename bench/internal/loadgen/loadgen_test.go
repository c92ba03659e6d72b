package loadgen_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/bench/internal/loadgen"
)

func TestConnDoesRequestsOnOneConnection(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		bodies []string
		conns  int
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(b))
		mu.Unlock()
		switch r.URL.Path {
		case "/stream":
			w.(http.Flusher).Flush() // chunked: no Content-Length
		case "/missing":
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Length", "10000")
			w.WriteHeader(http.StatusAccepted)
			_, _ = io.WriteString(w, strings.Repeat("x", 10_000)) // more than one read
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	c, err := loadgen.Dial(t.Context(), srv.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	post := loadgen.Request(http.MethodPost, "/runs", []string{"Authorization: Bearer k"}, []byte(`{"a":1}`))
	for range 3 {
		status, err := c.Do(post)
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, status)
	}
	status, err := c.Do(loadgen.Request(http.MethodGet, "/missing", nil, nil))
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, status)
	_, err = c.Do(loadgen.Request(http.MethodGet, "/stream", nil, nil))
	require.ErrorContains(t, err, "without Content-Length")

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		`POST /runs Bearer k {"a":1}`, `POST /runs Bearer k {"a":1}`, `POST /runs Bearer k {"a":1}`,
		"GET /missing  ", "GET /stream  ",
	}, bodies)
	require.Equal(t, 1, conns, "one keep-alive connection")
}
