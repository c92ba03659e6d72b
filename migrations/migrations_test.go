package migrations_test

import (
	"io/fs"
	"log/slog"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/migrations"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// The migrations go all the way down and up again: an operator's down-to
// works on every version, River's included.
func TestMigrationsRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, url := dbtest.NewEmpty(t)
	created, err := store.EnsureDatabase(ctx, url)
	require.NoError(t, err)
	require.True(t, created)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	logger := slog.New(slog.DiscardHandler)

	require.ErrorIs(t, migrations.Check(ctx, db, logger), migrations.ErrPending)
	p, err := migrations.NewProvider(db, logger)
	require.NoError(t, err)
	up, err := p.Up(ctx)
	require.NoError(t, err)
	files, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.Len(t, up, len(files), "every embedded migration")
	require.NoError(t, migrations.Check(ctx, db, logger))

	down, err := p.DownTo(ctx, 0)
	require.NoError(t, err)
	require.Len(t, down, len(files))
	var tables int
	require.NoError(t, db.QueryRowContext(ctx,
		`SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version'`).Scan(&tables))
	require.Zero(t, tables, "down removes every table")

	_, err = p.Up(ctx)
	require.NoError(t, err)
	require.NoError(t, migrations.Check(ctx, db, logger))
}
