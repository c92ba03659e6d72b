package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

func TestWorkerStartsAndStops(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	env := map[string]string{"DATABASE_URL": db.URL, "WORKER_CONCURRENCY": "3", "SHUTDOWN_TIMEOUT": "2s"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &logtest.Sink{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"worker"}, func(k string) string { return env[k] }, out) }()
	require.Eventually(t, func() bool { return out.Find(t, obs.EventWorkerStarted) != nil }, 10*time.Second, 10*time.Millisecond)
	started := out.Find(t, obs.EventWorkerStarted)
	require.InDelta(t, 3, started[obs.KeyConcurrency], 0)
	require.Equal(t, []any{"backtests"}, started[obs.KeyQueues])
	cancel()
	require.NoError(t, <-done)
	lines := out.Lines(t)
	require.Equal(t, obs.EventWorkerStopped, lines[len(lines)-1][obs.KeyEvent])
}

func TestWorkerRejectsBadSettings(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WORKER_CONCURRENCY": "zero"}
	err := run(t.Context(), []string{"worker"}, func(k string) string { return env[k] }, os.Stdout)
	require.ErrorContains(t, err, "WORKER_CONCURRENCY")
	require.ErrorContains(t, run(t.Context(), []string{"worker", "extra"}, func(string) string { return "" }, os.Stdout), "no arguments")
}
