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
	"log/slog"

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
	locker, err := lock.NewPostgresSessionLocker()
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

// Check returns ErrPending unless every migration is applied to the database
// of pool (opened with store.Open), so a process refuses to start on a schema
// it does not know. goose's own lines go to logger.
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
	if pending {
		return ErrPending
	}
	return nil
}
