package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestServeStartsAnswersAndStops(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	env := getenv(map[string]string{"DATABASE_URL": db.URL, "HTTP_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": "2s"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &logtest.Sink{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"server"}, env, out, io.Discard) }()

	var started map[string]any
	require.Eventually(t, func() bool { started = out.Find(t, obs.EventServerStarted); return started != nil },
		10*time.Second, 10*time.Millisecond)
	addr, _ := started[obs.KeyAddr].(string)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("X-Correlation-ID"))

	healthEnv := getenv(map[string]string{"HTTP_ADDR": addr})
	require.NoError(t, run(ctx, []string{"server", "healthcheck"}, healthEnv, io.Discard, io.Discard))

	cancel()
	require.NoError(t, <-done)
	require.Error(t, run(t.Context(), []string{"server", "healthcheck"}, healthEnv, io.Discard, io.Discard),
		"no server, no health")
	lines := out.Lines(t)
	require.Equal(t, obs.EventServerStopped, lines[len(lines)-1][obs.KeyEvent])
}

func TestCommands(t *testing.T) {
	t.Parallel()
	_, dbURL := dbtest.NewEmpty(t)
	env := getenv(map[string]string{"DATABASE_URL": dbURL})
	ctx := t.Context()

	err := run(ctx, []string{"server"}, env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "does not exist", "serve refuses a missing database")

	out := &logtest.Sink{}
	require.NoError(t, run(ctx, []string{"server", "migrate", "up"}, env, out, io.Discard))
	require.NotNil(t, out.Find(t, obs.EventMigrationsApplied))

	var key strings.Builder
	logs := &logtest.Sink{}
	require.NoError(t, run(ctx, []string{"server", "create-api-key", "-user", "ops"}, env, &key, logs))
	require.Regexp(t, `^bt_[A-Za-z0-9_-]{43}\n$`, key.String(), "stdout holds the key alone")
	require.NotNil(t, logs.Find(t, obs.EventAPIKeyCreated))
	require.NotContains(t, logs.String(), strings.TrimSpace(key.String()), "the key is not logged")

	status := &logtest.Sink{}
	require.NoError(t, run(ctx, []string{"server", "migrate", "status"}, env, status, io.Discard))
	require.Len(t, status.Lines(t), 9)

	require.ErrorContains(t, run(ctx, []string{"server", "create-api-key"}, env, io.Discard, io.Discard), "-user")
	require.ErrorContains(t, run(ctx, []string{"server", "migrate", "sideways"}, env, io.Discard, io.Discard), "unknown action")
	require.ErrorContains(t, run(ctx, []string{"server", "frobnicate"}, env, io.Discard, io.Discard), "unknown command")
}

func TestUnreachableDatabaseIsOneClearLine(t *testing.T) {
	t.Parallel()
	env := getenv(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/backtest?sslmode=disable"})
	err := run(t.Context(), []string{"server"}, env, io.Discard, io.Discard)
	require.EqualError(t, err, "cannot reach PostgreSQL at 127.0.0.1:1/backtest: connect: connection refused (set DATABASE_URL)")
}
