// Package migrations holds the database schema as goose SQL files, River's
// tables included, embedded so the binaries can apply them. Plain goose runs
// the same files: goose -dir migrations postgres "$DATABASE_URL" up.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:generate go run ./gen

// FS holds the migration files, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS

// NewProvider returns a goose provider for FS on db. A Postgres session lock
// makes concurrent callers apply each migration once.
func NewProvider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	// A waiting caller tries the lock every second (goose's least) rather than
	// every 5 s: a migration takes well under a second, and a 5 s poll made
	// the second of two concurrent runs wait 5 s. Five minutes in all, as
	// goose's default.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("goose session locker: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, FS,
		goose.WithSessionLocker(locker), goose.WithSlog(logger))
	if err != nil {
		return nil, fmt.Errorf("goose provider: %w", err)
	}
	return p, nil
}

// ErrPending is returned by Check when the database lacks migrations.
var ErrPending = errors.New("the database schema is out of date: run `server migrate up`")

// ErrAhead is what a SchemaError matches when the database has migrations
// this binary does not embed: a newer release migrated it.
var ErrAhead = errors.New("the database schema is newer than this binary: deploy the release that migrated it")

// SchemaError says which schema version the database has and which one the
// binary needs. It matches ErrPending when the database is behind and
// ErrAhead when it is ahead.
type SchemaError struct {
	// Found is the database's version: its newest applied migration, 0
	// for none.
	Found int64
	// Want is the newest migration the binary embeds.
	Want int64
	// Pending is set when migrations are missing although Found is not
	// behind Want: one below Found was never applied.
	Pending bool
}

func (e *SchemaError) Error() string {
	if e.Found > e.Want && !e.Pending {
		return fmt.Sprintf("the database schema is at version %d, newer than version %d this binary needs: "+
			"deploy the release that migrated it, or roll the schema back with `server migrate down-to %d`", e.Found, e.Want, e.Want)
	}
	return fmt.Sprintf("the database schema is at version %d, this binary needs version %d: run `server migrate up`", e.Found, e.Want)
}

// Is makes errors.Is(err, ErrPending) and errors.Is(err, ErrAhead) true for
// the schema errors they describe.
func (e *SchemaError) Is(target error) bool {
	ahead := e.Found > e.Want && !e.Pending
	return (target == ErrPending && !ahead) || (target == ErrAhead && ahead)
}

// Versions returns the versions of the embedded migrations, in order. The
// version is the number a file's name starts with.
func Versions() []int64 {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		panic(fmt.Sprintf("read the embedded migrations: %v", err)) // an embed.FS always reads
	}
	out := make([]int64, 0, len(entries))
	for _, e := range entries {
		number, _, _ := strings.Cut(e.Name(), "_")
		if v, err := strconv.ParseInt(number, 10, 64); err == nil {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// Latest returns the newest embedded migration's version: the schema the
// binary needs.
func Latest() int64 {
	v := Versions()
	if len(v) == 0 {
		return 0
	}
	return v[len(v)-1]
}

// Querier runs one query; *pgxpool.Pool, *pgx.Conn and pgx.Tx are one.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Current returns the database's schema version, goose's newest applied
// migration, in one query: 0 when nothing was ever applied.
func Current(ctx context.Context, q Querier) (int64, error) {
	var v *int64
	err := q.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: never migrated
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read the schema version: %w", err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// CheckCurrent returns a *SchemaError unless the database's schema version
// is exactly Latest, in one query: for a readiness probe, which must also
// catch a schema that is ahead. An error of another kind means the query
// failed: the database is not reachable.
func CheckCurrent(ctx context.Context, q Querier) error {
	v, err := Current(ctx, q)
	if err != nil {
		return err
	}
	if want := Latest(); v != want {
		return &SchemaError{Found: v, Want: want}
	}
	return nil
}

// Check returns a *SchemaError matching ErrPending unless every migration
// is applied to the database of pool (opened with store.Open), so a process
// refuses to start on a schema it does not know. A schema that is ahead
// passes: during a deploy the new release migrates while the old one still
// runs. goose's own lines go to logger.
func Check(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close() // the pool stays open
	p, err := NewProvider(db, logger)
	if err != nil {
		return err
	}
	pending, err := p.HasPending(ctx)
	if err != nil {
		return fmt.Errorf("check migrations: %w", err)
	}
	if !pending {
		return nil
	}
	found, err := Current(ctx, pool)
	if err != nil {
		return err
	}
	return &SchemaError{Found: found, Want: Latest(), Pending: true}
}
