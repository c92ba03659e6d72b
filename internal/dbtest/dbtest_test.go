package dbtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestDropStaleDropsOnlyOldDatabases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	old := "bt_test_1000000000_abcdef" // made in 2001
	require.NoError(t, exec(ctx, `CREATE DATABASE `+old))
	t.Cleanup(func() { _ = dropDatabase(context.WithoutCancel(ctx), old) })
	fresh := New(t) // made now

	require.NoError(t, dropStale(ctx, time.Now().Add(-staleAfter)))
	var oldLeft, freshLeft bool
	require.NoError(t, fresh.Pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
		EXISTS (SELECT 1 FROM pg_database WHERE datname = $2)`, old, fresh.Name).Scan(&oldLeft, &freshLeft))
	require.False(t, oldLeft, "a leftover is dropped")
	require.True(t, freshLeft, "a database in use is kept")
	require.Regexp(t, databaseName, fresh.Name)
}
