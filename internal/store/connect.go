package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Option changes the pool Open opens.
type Option func(*pgxpool.Config)

// WithStatementTimeout sets PostgreSQL's statement_timeout on every
// connection of the pool: the database itself ends a statement that runs
// longer, even one whose client has given up and gone.
func WithStatementTimeout(d time.Duration) Option {
	return func(cfg *pgxpool.Config) {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(d.Milliseconds(), 10)
	}
}

// Open opens a pool on databaseURL and checks that the database answers: the
// one way the service's commands reach the database (migrations.Check then
// refuses a schema that is behind). Its errors are one line an operator can
// act on, without the password; the cause stays in their chain, so
// Unavailable and errors.Is see it.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL")
	}
	for _, opt := range opts {
		opt(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, describeConnectError(cfg.ConnConfig, err)
	}
	return pool, nil
}

// EnsureDatabase creates the database named in databaseURL if it does not
// exist, connecting to the server's postgres database to do so. It reports
// whether it created it.
func EnsureDatabase(ctx context.Context, databaseURL string) (bool, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return false, errors.New("DATABASE_URL is not a valid PostgreSQL URL")
	}
	name := cfg.Database
	admin := cfg.Copy()
	admin.Database = "postgres"
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, admin)
	if err != nil {
		return false, describeConnectError(cfg, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look for database %s: %w", name, err)
	}
	if exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // created meanwhile
			return false, nil
		}
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}

// connectError is a failure to reach the database, told in one line for the
// operator. pgx's own text names the user and repeats itself through its
// wrappers; the error it wraps is kept for errors.Is and Unavailable.
type connectError struct {
	msg string
	err error
}

func (e *connectError) Error() string { return e.msg }
func (e *connectError) Unwrap() error { return e.err }

func describeConnectError(cfg *pgx.ConnConfig, err error) error {
	where := fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "3D000" { // invalid_catalog_name
			return &connectError{err: err, msg: fmt.Sprintf("database %s does not exist on %s:%d: create it with `server migrate up`",
				cfg.Database, cfg.Host, cfg.Port)}
		}
		return &connectError{err: err, msg: fmt.Sprintf("PostgreSQL at %s refused the connection: %s", where, pgErr.Message)}
	}
	reason := err.Error()
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		reason = opErr.Err.Error() // "connect: connection refused", "i/o timeout"
	} else if errors.Is(err, context.DeadlineExceeded) {
		reason = "no answer within 5s"
	}
	return &connectError{err: err, msg: fmt.Sprintf("cannot reach PostgreSQL at %s: %s (set DATABASE_URL)", where, reason)}
}
