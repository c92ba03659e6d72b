// Package dbtest gives each test its own PostgreSQL schema, migrated to the
// current version, so tests can run in parallel and in any order.
//
// The server is TEST_DATABASE_URL (default: the local server as user
// postgres). Each test process makes one database, dropped when it ends;
// each test gets a schema of its own in it (New), reached through
// search_path on every connection of its pool, River's included. A schema
// is cheap where a database is not: CREATE and DROP DATABASE copy files
// and wait for the disk, and had to take turns on the template.
//
// What is database-wide stays shared between a process's schemas: NOTIFY
// channels (api_key_revoked) and advisory locks. A test of those gets a
// whole database (NewDatabase), and a test of the code that creates
// databases names one that does not exist yet (NewEmpty).
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

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

// shared is the database that holds this test process's schemas.
var shared struct {
	once sync.Once
	name string
	err  error
	next atomic.Int64 // numbers the schemas
}

// Main runs the tests of a package and drops its databases afterwards (the
// schemas' and the template). Call it from TestMain: os.Exit(dbtest.Main(m)).
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
	for _, name := range []string{template.name, shared.name} {
		if name == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := dropDatabase(ctx, name); err != nil {
			fmt.Fprintln(os.Stderr, "dbtest:", err)
		}
		cancel()
	}
	return code
}

// DB is a test's own schema (New) or database (NewDatabase).
type DB struct {
	// Name is the database.
	Name string
	// Schema is the test's schema, empty for a whole database (where the
	// tables are in public).
	Schema string
	// URL reaches the test's tables: with search_path set to Schema when
	// there is one, for the binaries and for connections a test opens.
	URL string
	// Pool is connected to URL.
	Pool *pgxpool.Pool
}

// New creates a migrated schema for tb in this process's test database.
// Every connection of its pool, and of any pool or binary given its URL,
// finds the schema's tables, and River's, first on search_path. The schema
// goes with the database when the process ends: dropping it at once would
// only cost the test time.
func New(tb testing.TB) *DB {
	tb.Helper()
	db := newSchema(tb)
	if err := migrate(tb.Context(), db.Pool); err != nil {
		tb.Fatalf("dbtest: migrate schema %s: %v", db.Schema, err)
	}
	return db
}

// newSchema creates an empty schema for tb, with its pool and URL: New's
// first step, before it migrates the schema.
func newSchema(tb testing.TB) *DB {
	tb.Helper()
	ctx := tb.Context()
	shared.once.Do(func() {
		shared.name = "bt_test_" + randomSuffix()
		shared.err = exec(context.WithoutCancel(ctx), `CREATE DATABASE `+shared.name)
	})
	if shared.err != nil {
		tb.Fatalf("dbtest: the process's test database: %v", shared.err)
	}
	schema := fmt.Sprintf("t%d", shared.next.Add(1))
	u := withSearchPath(URLFor(shared.name), schema)
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		tb.Fatalf("dbtest: connect to %s: %v", shared.name, err)
	}
	tb.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize()); err != nil {
		tb.Fatalf("dbtest: create schema %s: %v", schema, err)
	}
	return &DB{Name: shared.name, Schema: schema, URL: u, Pool: pool}
}

// withSearchPath adds search_path to a connection URL: pgx sends it as a
// run-time parameter when it connects, so it holds on every connection.
// synchronous_commit off too: a test's commits need not survive a crash of
// the server, and not waiting for the disk at each one halves the time a
// migration takes on a busy machine.
func withSearchPath(dbURL, schema string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("synchronous_commit", "off")
	u.RawQuery = q.Encode()
	return u.String()
}

// migrate applies every migration to the schema pool's connections use.
// Without goose's session lock: that is one advisory lock for the whole
// database, which would make the process's schemas migrate one at a time.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSlog(slog.New(slog.DiscardHandler)))
	if err != nil {
		return fmt.Errorf("goose provider: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// NewDatabase creates a migrated database for tb, dropped when tb ends: for
// tests of what a database does not keep to a schema, such as NOTIFY.
func NewDatabase(tb testing.TB) *DB {
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
	if err := migrate(ctx, pool); err != nil {
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
