package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/buildinfo"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/migrations"
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
	require.Equal(t, buildinfo.Read().Version, started[obs.KeyVersion], "the line says which build runs")
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
	for _, args := range [][]string{{"worker", "extra"}, {"worker", "version", "extra"}, {"worker", "-version"}} {
		require.ErrorContains(t, run(t.Context(), args, func(string) string { return "" }, os.Stdout), "no arguments but version", "%v", args)
	}
}

// worker version prints the build, with no settings and no database.
func TestVersion(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	require.NoError(t, run(t.Context(), []string{"worker", "version"}, func(string) string { return "" }, &out))
	require.Equal(t, "worker "+buildinfo.Read().String()+"\n", out.String())
}

// The worker refuses a database it cannot reach, and one whose schema is
// behind, before it takes any job.
func TestWorkerRefusesADatabaseItCannotUse(t *testing.T) {
	t.Parallel()
	behind := dbtest.New(t)
	versions := migrations.Versions()
	latest, below := versions[len(versions)-1], versions[len(versions)-2]
	_, err := behind.Pool.Exec(t.Context(), `DELETE FROM goose_db_version WHERE version_id = $1`, latest)
	require.NoError(t, err)
	tests := []struct {
		name  string
		url   string
		check func(t *testing.T, err error)
	}{
		{name: "schema behind", url: behind.URL, check: func(t *testing.T, err error) {
			t.Helper()
			require.ErrorIs(t, err, migrations.ErrPending)
			require.ErrorContains(t, err, fmt.Sprintf("the database schema is at version %d, this binary needs version %d", below, latest),
				"the refusal names the versions")
		}},
		{name: "nothing listens", url: "postgres://postgres@127.0.0.1:1/backtest?sslmode=disable", check: func(t *testing.T, err error) {
			t.Helper()
			require.True(t, store.Unavailable(err), "%v", err)
			require.ErrorContains(t, err, "cannot reach PostgreSQL at 127.0.0.1:1/backtest")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := &logtest.Sink{}
			err := run(t.Context(), []string{"worker"}, func(k string) string { return map[string]string{"DATABASE_URL": tt.url}[k] }, out)
			tt.check(t, err)
			require.Nil(t, out.Find(t, obs.EventWorkerStarted))
		})
	}
}
