// Package dbtest gives each test its own PostgreSQL database, migrated to the
// current schema, so tests can run in parallel and in any order.
//
// The server is TEST_DATABASE_URL (default: the local server as user
// postgres). Each test process migrates one template database once; each
// test then gets a copy of it, dropped when the test ends.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/backtestd/backtestd/migrations"
)

// DefaultURL is the server used when TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var template struct {
	once sync.Once
	mu   sync.Mutex // CREATE DATABASE ... TEMPLATE wants the template to itself
	name string
	err  error
}

// Main runs the tests of a package and drops its template database
// afterwards. Call it from TestMain: os.Exit(dbtest.Main(m)).
//
// First it drops what killed test runs left behind: databases of this
// package's naming that are older than staleAfter (their names carry the
// time they were made), so the shared server does not fill up.
func Main(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if err := dropStale(ctx, time.Now().Add(-staleAfter)); err != nil {
		fmt.Fprintln(os.Stderr, "dbtest: dropping stale databases:", err)
	}
	cancel()
	code := m.Run()
	if template.name != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, template.name); err != nil {
			fmt.Fprintln(os.Stderr, "dbtest:", err)
		}
	}
	return code
}

// DB is a test's own database.
type DB struct {
	Name string
	URL  string
	Pool *pgxpool.Pool
}

// New creates a migrated database for t, dropped when t ends.
func New(tb testing.TB) *DB {
	tb.Helper()
	t := tb
	ctx := t.Context()
	template.once.Do(func() { template.name, template.err = makeTemplate(context.WithoutCancel(ctx)) })
	if template.err != nil {
		t.Fatalf("dbtest: template database: %v", template.err)
	}
	name := "bt_test_" + randomSuffix()
	template.mu.Lock()
	err := exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+template.name)
	template.mu.Unlock()
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	u := URLFor(name)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatalf("dbtest: connect to %s: %v", name, err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, name); err != nil {
			t.Errorf("dbtest: %v", err)
		}
	})
	return &DB{Name: name, URL: u, Pool: pool}
}

// NewEmpty names a database that does not exist yet, and drops it when t
// ends if something created it: for tests of the code that creates and
// migrates databases.
func NewEmpty(tb testing.TB) (name, dbURL string) {
	tb.Helper()
	t := tb
	name = "bt_test_" + randomSuffix()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := dropDatabase(ctx, name); err != nil {
			t.Errorf("dbtest: %v", err)
		}
	})
	return name, URLFor(name)
}

// ServerURL is the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// URLFor is the URL of database name on the test server.
func URLFor(name string) string {
	u, err := url.Parse(ServerURL())
	if err != nil {
		return ServerURL()
	}
	u.Path = "/" + name
	return u.String()
}

func makeTemplate(ctx context.Context) (string, error) {
	name := "bt_tmpl_" + randomSuffix()
	if err := exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, URLFor(name))
	if err != nil {
		return name, fmt.Errorf("connect to %s: %w", name, err)
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := migrations.NewProvider(db, slog.New(slog.DiscardHandler))
	if err != nil {
		return name, err
	}
	if _, err := p.Up(ctx); err != nil {
		return name, fmt.Errorf("migrate %s: %w", name, err)
	}
	return name, nil
}

func exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func dropDatabase(ctx context.Context, name string) error {
	return exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
}

// staleAfter is the age past which a test database is taken for a leftover:
// far longer than any test run.
const staleAfter = 2 * time.Hour

var databaseName = regexp.MustCompile(`^bt_(test|tmpl)_([0-9]+)_[0-9a-f]+$`)

// randomSuffix names a database: when it was made, then random bits.
func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(time.Now().Unix(), 10) + "_" + hex.EncodeToString(b[:])
}

// dropStale drops the test databases made before cutoff.
func dropStale(ctx context.Context, cutoff time.Time) error {
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'bt\_%'`)
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	for _, name := range names {
		m := databaseName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		made, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil || time.Unix(made, 0).After(cutoff) {
			continue
		}
		if err := dropDatabase(ctx, name); err != nil {
			return err
		}
	}
	return nil
}
