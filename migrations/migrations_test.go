package migrations_test

import (
	"database/sql"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/migrations"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// testBundle is one new, empty database, with goose's provider and River's
// own migrator on it.
type testBundle struct {
	pool  *pgxpool.Pool
	db    *sql.DB
	goose *goose.Provider
	river *rivermigrate.Migrator[pgx.Tx]
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := t.Context()
	_, url := dbtest.NewEmpty(t)
	created, err := store.EnsureDatabase(ctx, url)
	require.NoError(t, err)
	require.True(t, created)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { _ = db.Close() })
	p, err := migrations.NewProvider(db, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	// As an operator following River's docs would: no configuration.
	river, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	require.NoError(t, err)
	return &testBundle{pool: pool, db: db, goose: p, river: river}
}

// fileCount is the number of goose files.
func fileCount(t *testing.T) int {
	t.Helper()
	files, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	return len(files)
}

// riverRows lists the rows of river_migration as "line/version" ("-/version"
// before River's version 5 adds the line column), or nil when there is no
// such table.
func riverRows(t *testing.T, db *sql.DB) []string {
	t.Helper()
	ctx := t.Context()
	var exists, hasLine bool
	require.NoError(t, db.QueryRowContext(ctx, `SELECT to_regclass('river_migration') IS NOT NULL,
		EXISTS (SELECT 1 FROM information_schema.columns
		        WHERE table_schema = current_schema() AND table_name = 'river_migration' AND column_name = 'line')`).
		Scan(&exists, &hasLine))
	if !exists {
		return nil
	}
	query := `SELECT '-', version FROM river_migration ORDER BY version`
	if hasLine {
		query = `SELECT line, version FROM river_migration ORDER BY line, version`
	}
	rows, err := db.QueryContext(ctx, query)
	require.NoError(t, err)
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var line string
		var version int
		require.NoError(t, rows.Scan(&line, &version))
		out = append(out, fmt.Sprintf("%s/%d", line, version))
	}
	require.NoError(t, rows.Err())
	return out
}

// The migrations go all the way down and up again: an operator's down-to
// works on every version, River's included.
func TestMigrationsRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t)
	logger := slog.New(slog.DiscardHandler)

	require.ErrorIs(t, migrations.Check(ctx, b.pool, logger), migrations.ErrPending)
	up, err := b.goose.Up(ctx)
	require.NoError(t, err)
	require.Len(t, up, fileCount(t))
	require.NoError(t, migrations.Check(ctx, b.pool, logger))

	down, err := b.goose.DownTo(ctx, 0)
	require.NoError(t, err)
	require.Len(t, down, fileCount(t))
	var tables int
	require.NoError(t, b.db.QueryRowContext(ctx,
		`SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version'`).Scan(&tables))
	require.Zero(t, tables, "down removes every table")

	_, err = b.goose.Up(ctx)
	require.NoError(t, err)
	require.NoError(t, migrations.Check(ctx, b.pool, logger))
}

// Step by step, up to River's last version and down to nothing, the goose
// files leave river_migration exactly as River's own migrator leaves it on
// another database.
func TestGooseRecordsRiverVersionsAsRiverDoes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	viaGoose, viaRiver := setup(t), setup(t)
	versions := viaRiver.river.AllVersions()
	require.NotEmpty(t, versions)

	for _, v := range versions {
		res, err := viaGoose.goose.UpByOne(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(v.Version), res.Source.Version, "goose versions 1 to %d are River's", len(versions))
		_, err = viaRiver.river.Migrate(ctx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{TargetVersion: v.Version})
		require.NoError(t, err)
		want := riverRows(t, viaRiver.db)
		require.Len(t, want, v.Version)
		require.Equal(t, want, riverRows(t, viaGoose.db), "up to River version %d", v.Version)

		check, err := viaGoose.river.Validate(ctx, &rivermigrate.ValidateOpts{TargetVersion: v.Version})
		require.NoError(t, err)
		require.True(t, check.OK, "River version %d: %v", v.Version, check.Messages)
	}

	for i := len(versions) - 1; i >= 0; i-- {
		_, err := viaGoose.goose.Down(ctx)
		require.NoError(t, err)
		_, err = viaRiver.river.Migrate(ctx, rivermigrate.DirectionDown, &rivermigrate.MigrateOpts{MaxSteps: 1})
		require.NoError(t, err)
		require.Equal(t, riverRows(t, viaRiver.db), riverRows(t, viaGoose.db), "down from River version %d", versions[i].Version)
	}
	require.Nil(t, riverRows(t, viaGoose.db), "down from version 1 drops river_migration")
}

// River's own tools agree with goose: on a database the goose files built,
// and on one built by the files from before they recorded River's versions
// once goose has applied what is pending. Validate is clean and River's
// Migrate up has nothing to do, even after goose went down and up again.
func TestRiverToolsAgreeWithGoose(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		// prepare brings the database to where an operator finds it.
		prepare func(t *testing.T, b *testBundle)
	}{
		{
			name:    "migrated by the goose files",
			prepare: func(*testing.T, *testBundle) {},
		},
		{
			name: "migrated before the files recorded River's versions",
			prepare: func(t *testing.T, b *testBundle) {
				t.Helper()
				ctx := t.Context()
				_, err := b.goose.UpTo(ctx, 10)
				require.NoError(t, err)
				// The files of then left river_migration empty: that is the
				// only difference from the files of now.
				_, err = b.db.ExecContext(ctx, `DELETE FROM river_migration`)
				require.NoError(t, err)

				check, err := b.river.Validate(ctx, nil)
				require.NoError(t, err)
				require.False(t, check.OK)
				require.Equal(t, []string{"Unapplied migrations: [1 2 3 4 5 6 7 8]"}, check.Messages)
				_, err = b.river.Migrate(ctx, rivermigrate.DirectionUp, nil)
				require.ErrorContains(t, err, `relation "river_migration" already exists`)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			b := setup(t)
			tt.prepare(t, b)

			for _, round := range []string{"after migrate up", "after down to 0 and up again"} {
				if round != "after migrate up" {
					_, err := b.goose.DownTo(ctx, 0)
					require.NoError(t, err)
				}
				_, err := b.goose.Up(ctx)
				require.NoError(t, err)

				rows := riverRows(t, b.db)
				require.Equal(t, []string{"main/1", "main/2", "main/3", "main/4", "main/5", "main/6", "main/7", "main/8"}, rows, round)
				check, err := b.river.Validate(ctx, nil)
				require.NoError(t, err)
				require.True(t, check.OK, "%s: %v", round, check.Messages)
				res, err := b.river.Migrate(ctx, rivermigrate.DirectionUp, nil)
				require.NoError(t, err, round)
				require.Empty(t, res.Versions, "%s: River's migrate up has nothing to do", round)
				require.Equal(t, rows, riverRows(t, b.db), round)
			}
		})
	}
}
