package dbtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestDropStaleDropsOnlyOldDatabases(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	old := "bt_test_1000000000_abcdef" // made in 2001
	require.NoError(t, exec(ctx, `CREATE DATABASE `+old))
	t.Cleanup(func() { _ = dropDatabase(context.WithoutCancel(ctx), old) })
	fresh := NewDatabase(t) // made now
	shared := New(t)        // the process's database, made now

	require.NoError(t, dropStale(ctx, time.Now().Add(-staleAfter)))
	var oldLeft, freshLeft, sharedLeft bool
	require.NoError(t, fresh.Pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_database WHERE datname = $1),
		EXISTS (SELECT 1 FROM pg_database WHERE datname = $2),
		EXISTS (SELECT 1 FROM pg_database WHERE datname = $3)`, old, fresh.Name, shared.Name).Scan(&oldLeft, &freshLeft, &sharedLeft))
	require.False(t, oldLeft, "a leftover is dropped")
	require.True(t, freshLeft, "a database in use is kept")
	require.True(t, sharedLeft, "a database in use is kept")
	require.Regexp(t, databaseName, fresh.Name)
	require.Regexp(t, databaseName, shared.Name, "a killed run's schemas go with their database")
}

// Two tests' schemas share a database and nothing else: each connection of
// each pool, and one opened from the URL, sees its own test's tables.
func TestSchemasAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := New(t), New(t)
	require.Equal(t, a.Name, b.Name, "one database per process")
	require.NotEqual(t, a.Schema, b.Schema)

	_, err := a.Pool.Exec(ctx, `INSERT INTO users (id, name) VALUES (gen_random_uuid(), 'only-in-a')`)
	require.NoError(t, err)
	// Several connections at once, so the pool opens more than one.
	conns := make([]int, 4)
	for i := range conns {
		c, err := b.Pool.Acquire(ctx)
		require.NoError(t, err)
		defer c.Release()
		var schema string
		require.NoError(t, c.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema))
		require.Equal(t, b.Schema, schema, "connection %d", i)
		require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&conns[i]))
	}
	require.Equal(t, []int{0, 0, 0, 0}, conns, "b sees none of a's rows")

	viaURL := New(t)
	conn, err := pgx.Connect(ctx, viaURL.URL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	var version int64
	require.NoError(t, conn.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&version))
	require.Positive(t, version, "migrated")
	var riverTables int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'river\_%'`,
		viaURL.Schema).Scan(&riverTables))
	require.Positive(t, riverTables, "River's tables are in the test's schema")
	var publicTables int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&publicTables))
	require.Zero(t, publicTables, "nothing lands in public")
}

// An empty schema has no tables until something migrates it.
func TestNewSchemaIsEmpty(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	var n int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE schemaname = $1`, db.Schema).Scan(&n))
	require.Zero(t, n)
	require.Contains(t, db.URL, "search_path="+db.Schema)
}
