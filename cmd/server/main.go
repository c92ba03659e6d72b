// Command server runs the backtest API, and the operator's one-shot
// commands:
//
//	server                          serve the API (HTTP_ADDR, default :8080)
//	server migrate up               create the database if missing, apply migrations
//	server migrate status           list migrations and whether they are applied
//	server migrate down-to VERSION  roll back to VERSION
//	server create-api-key -user NAME  create the user if missing, print a new API key
//	server revoke-api-key -prefix P | -id ID  delete an API key; every server forgets it at once
//	server healthcheck              exit 0 if the server on HTTP_ADDR is ready (for container healthchecks)
//	server version                  print the build's version and commit
//
// Settings come from the environment (see docs/operations.md). Log lines are
// JSON on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river"
	"golang.org/x/net/netutil"
	"riverqueue.com/riverui"

	"github.com/backtestd/backtestd/internal/buildinfo"
	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/migrations"
)

func main() {
	// A reader of stdout that goes away must not kill the server: with
	// SIGPIPE ignored, writes fail with EPIPE and the logger drops them.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 1 {
		cmd, args = args[1], args[2:]
	} else {
		args = nil
	}
	switch cmd {
	case "serve":
		return serve(ctx, getenv, stdout)
	case "migrate":
		return migrate(ctx, args, getenv, stdout)
	case "create-api-key":
		return createAPIKey(ctx, args, getenv, stdout, stderr)
	case "revoke-api-key":
		return revokeAPIKey(ctx, args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "version":
		_, err := fmt.Fprintln(stdout, "server", buildinfo.Read())
		return err
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

const usage = `usage:
  server                            serve the API
  server migrate up|status|down-to VERSION
  server create-api-key -user NAME
  server revoke-api-key -prefix bt_XXXXXXXX | -id ID
  server healthcheck
  server version`

func serve(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.LoadServer(getenv)
	if err != nil {
		return err
	}
	h := obs.NewHandler(stdout, obs.Options{Service: "server", Level: cfg.LogLevel})
	logger := slog.New(h)
	pool, err := openDatabase(ctx, cfg.DatabaseURL, h, store.WithStatementTimeout(cfg.Limits.StatementTimeout))
	if err != nil {
		return err
	}
	defer pool.Close()
	keys := httpx.NewKeyCache(httpx.KeyCacheTTL, httpx.KeyCacheEntries)
	handler, withUI, err := newHandler(ctx, cfg, h, pool, keys)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	stopFollowing := followRevocations(ctx, logger, pool, keys)
	defer stopFollowing()
	// Past the cap, connections wait in the kernel's backlog: a flood of
	// them cannot use up the file descriptors the database pool needs.
	ln = netutil.LimitListener(ln, cfg.Limits.MaxConnections)
	var open openConns
	srv := newHTTPServer(cfg, h, handler, &open)
	addr := ln.Addr().String()
	logger.InfoContext(ctx, obs.EventServerStarted, slog.String(obs.KeyAddr, addr), slog.Bool(obs.KeyRiverUI, withUI),
		slog.String(obs.KeyVersion, buildinfo.Read().Version))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.InfoContext(ctx, obs.EventServerStopping, slog.String(obs.KeyAddr, addr))
	err = shutdown(ctx, logger, srv, &open, addr, cfg.ShutdownTimeout)
	stopFollowing()
	logger.InfoContext(ctx, obs.EventServerStopped, slog.String(obs.KeyAddr, addr))
	return err
}

// openDatabase opens the pool of a command that needs the current schema
// (every one but migrate, which makes it current) and refuses one that is
// behind, with migrations.ErrPending.
func openDatabase(ctx context.Context, databaseURL string, h slog.Handler, opts ...store.Option) (*pgxpool.Pool, error) {
	pool, err := store.Open(ctx, databaseURL, opts...)
	if err != nil {
		return nil, err
	}
	if err := migrations.Check(ctx, pool, obs.NewLibraryLogger(h, obs.EventGooseLog, slog.LevelWarn)); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// newHandler builds the API over pool, with River UI under httpx.AdminPrefix
// when it is enabled (withUI).
func newHandler(ctx context.Context, cfg config.Server, h slog.Handler, pool *pgxpool.Pool, keys *httpx.KeyCache) (handler http.Handler, withUI bool, err error) {
	inserter, err := enqueue.NewInsertClient(pool, h)
	if err != nil {
		return nil, false, err
	}
	authLimit := httpx.AuthLimit{Burst: cfg.AuthFailureBurst, Every: cfg.AuthFailureInterval, Addresses: cfg.AuthFailureAddresses}
	var admin http.Handler
	if cfg.RiverUIEnabled() {
		if admin, err = newRiverUI(ctx, cfg, h, inserter, authLimit); err != nil {
			return nil, false, err
		}
	}
	enqueuer := enqueue.NewEnqueuer(pool, inserter, cfg.JobMaxAttempts).WithMaxUnfinished(cfg.MaxUnfinishedRuns)
	return httpx.NewServer(slog.New(h), httpx.Deps{
		Queries: store.New(pool), Enqueuer: enqueuer, DB: pool, Admin: admin, Keys: keys,
		TrustedProxies: cfg.TrustedProxies, AuthLimit: authLimit, RequestTimeout: cfg.Limits.RequestTimeout,
		Metrics: httpx.NewMetrics(), IdempotencyKeyTTL: cfg.IdempotencyKeyTTL,
		MaxSweepRuns: cfg.MaxSweepRuns,
	}), admin != nil, nil
}

// newRiverUI starts River UI on the insert-only client, behind the
// operator's basic auth.
func newRiverUI(ctx context.Context, cfg config.Server, h slog.Handler, client *river.Client[pgx.Tx], limit httpx.AuthLimit) (http.Handler, error) {
	ui, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(client, nil),
		Logger:    obs.NewLibraryLogger(h, obs.EventRiverUILog, slog.LevelWarn),
		Prefix:    httpx.AdminPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("river ui: %w", err)
	}
	if err := ui.Start(ctx); err != nil {
		return nil, fmt.Errorf("start river ui: %w", err)
	}
	return httpx.GuardAdmin("River UI", cfg.RiverUIUser, cfg.RiverUIPassword, limit, ui), nil
}

// followRevocations keeps keys in step with revoked API keys through a
// connection of its own; the cache caches nothing until that connection
// listens. Following outlives ctx (SIGTERM): requests still in flight rely
// on it. The returned func stops it and waits; calling it again is harmless.
func followRevocations(ctx context.Context, logger *slog.Logger, pool *pgxpool.Pool, keys *httpx.KeyCache) (stop func()) {
	listener := &httpx.KeyListener{Logger: logger, Cache: keys, Connect: func(ctx context.Context) (*pgx.Conn, error) {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		return c.Hijack(), nil // the listener owns it now, outside the pool
	}}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); listener.Run(lctx) }()
	return func() { cancel(); <-done }
}

// newHTTPServer is the API's http.Server with the limits of cfg.
func newHTTPServer(cfg config.Server, h slog.Handler, handler http.Handler, open *openConns) *http.Server {
	return &http.Server{
		Handler: handler,
		// net/http's own complaints (TLS probes, bad requests) become lines
		// of the contract too: nothing on stdout may be anything but JSON.
		ErrorLog: slog.NewLogLogger(
			obs.NewLibraryLogger(h, obs.EventHTTPServerLog, slog.LevelWarn).Handler(), slog.LevelWarn),
		// ReadTimeout covers the body too: without it net/http waits with no
		// deadline for the unread body of a request it has already answered.
		ReadHeaderTimeout: cfg.Limits.ReadHeaderTimeout,
		ReadTimeout:       cfg.Limits.ReadTimeout,
		WriteTimeout:      cfg.Limits.WriteTimeout,
		IdleTimeout:       cfg.Limits.IdleTimeout,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		ConnState:         open.track,
	}
}

// shutdown lets the requests in flight finish within timeout, then closes
// what is left. ctx is already done: only its values are used.
func shutdown(ctx context.Context, logger *slog.Logger, srv *http.Server, open *openConns, addr string, timeout time.Duration) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// What is left are clients too slow to finish their request within
		// SHUTDOWN_TIMEOUT: closing them is the shutdown working, not failing.
		n := open.count()
		err = srv.Close()
		logger.WarnContext(ctx, obs.EventServerShutdownTimedOut, slog.String(obs.KeyAddr, addr),
			slog.Int64(obs.KeyConnectionsClosed, n))
	}
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// openConns counts the server's open connections, for the line that says
// how many a shutdown had to close.
type openConns struct{ n atomic.Int64 }

func (o *openConns) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		o.n.Add(1)
	case http.StateHijacked, http.StateClosed:
		o.n.Add(-1)
	case http.StateActive, http.StateIdle:
	}
}

func (o *openConns) count() int64 { return o.n.Load() }

func migrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.LoadCommon(getenv)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return errors.New("migrate needs up, status or down-to VERSION")
	}
	h := obs.NewHandler(stdout, obs.Options{Service: "migrate", Level: cfg.LogLevel})
	logger := slog.New(h)
	if args[0] == "up" {
		created, err := store.EnsureDatabase(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		if created {
			logger.InfoContext(ctx, obs.EventMigrationsApplied, slog.String(obs.KeyStatus, "database_created"))
		}
	}
	pool, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := migrations.NewProvider(db, obs.NewLibraryLogger(h, obs.EventGooseLog, slog.LevelInfo))
	if err != nil {
		return err
	}
	return migrateAction(ctx, logger, p, args)
}

// migrateAction runs migrate's action (args[0]) with p, logging what it did.
func migrateAction(ctx context.Context, logger *slog.Logger, p *goose.Provider, args []string) error {
	switch args[0] {
	case "up":
		results, err := p.Up(ctx)
		if err != nil {
			return fmt.Errorf("migrate up: %w", err)
		}
		v, err := p.GetDBVersion(ctx)
		if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		logger.InfoContext(ctx, obs.EventMigrationsApplied, slog.Int(obs.KeyApplied, len(results)), slog.Int64(obs.KeyVersion, v))
	case "status":
		statuses, err := p.Status(ctx)
		if err != nil {
			return fmt.Errorf("migration status: %w", err)
		}
		for _, s := range statuses {
			logger.InfoContext(ctx, obs.EventMigrationStatus, slog.Int64(obs.KeyVersion, s.Source.Version),
				slog.String(obs.KeyName, s.Source.Path), slog.String(obs.KeyStatus, string(s.State)))
		}
	case "down-to":
		if len(args) != 2 {
			return errors.New("migrate down-to needs a VERSION")
		}
		v, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || v < 0 {
			return fmt.Errorf("migrate down-to: %q is not a version number", args[1])
		}
		if err := checkDownTo(ctx, p, v); err != nil {
			return err
		}
		results, err := p.DownTo(ctx, v)
		if err != nil {
			return fmt.Errorf("migrate down-to %d: %w", v, err)
		}
		logger.InfoContext(ctx, obs.EventMigrationsApplied, slog.Int(obs.KeyApplied, len(results)), slog.Int64(obs.KeyVersion, v))
	default:
		return fmt.Errorf("migrate: unknown action %q (up, status or down-to VERSION)", args[0])
	}
	return nil
}

// checkDownTo refuses, before anything is rolled back, a target goose would
// take for something else: a version no migration has (a typo rolls back
// nothing or everything), or one that is not applied (above the current
// version, or never applied), which goose would treat as done. 0, no
// migration at all, rolls back everything.
func checkDownTo(ctx context.Context, p *goose.Provider, v int64) error {
	if v == 0 {
		return nil
	}
	statuses, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("migration status: %w", err)
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	for _, s := range statuses {
		if s.Source.Version != v {
			continue
		}
		if s.State != goose.StateApplied {
			return fmt.Errorf("migrate down-to %d: version %d is not applied (the database is at version %d): nothing to roll back to", v, v, current)
		}
		return nil
	}
	return fmt.Errorf("migrate down-to %d: no migration has version %d (the database is at version %d; `server migrate status` lists them)", v, v, current)
}

// createAPIKey prints a new key on stdout, alone, so scripts can capture it;
// its log line goes to stderr.
func createAPIKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("create-api-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	userName := fs.String("user", "", "name of the user (created if missing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *userName == "" || utf8.RuneCountInString(*userName) > store.MaxNameLength {
		return fmt.Errorf("create-api-key needs -user NAME (1 to %d characters)", store.MaxNameLength)
	}
	cfg, err := config.LoadCommon(getenv)
	if err != nil {
		return err
	}
	logger := obs.NewLogger(stderr, obs.Options{Service: "create-api-key", Level: cfg.LogLevel})
	pool, err := openDatabase(ctx, cfg.DatabaseURL, logger.Handler())
	if err != nil {
		return err
	}
	defer pool.Close()
	q := store.New(pool)
	user, err := q.EnsureUser(ctx, *userName)
	if err != nil {
		return err
	}
	key, hash := httpx.NewAPIKey()
	stored, err := q.CreateAPIKey(ctx, user.ID, hash, httpx.PublicPrefix(key))
	if err != nil {
		return err
	}
	ctx = obs.WithAttrs(ctx, slog.String(obs.KeyUserID, user.ID.String()))
	logger.InfoContext(ctx, obs.EventAPIKeyCreated, slog.String(obs.KeyName, user.Name),
		slog.String(obs.KeyAPIKeyID, stored.ID.String()), slog.String(obs.KeyAPIKeyPrefix, stored.Prefix))
	_, err = fmt.Fprintln(stdout, key)
	return err
}

// revokeAPIKey deletes one key, named by the prefix its holder can read off
// it (and api_key_created logged) or by its id. The deletion's trigger tells
// every server to forget the key as soon as it commits.
func revokeAPIKey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke-api-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prefix := fs.String("prefix", "", "the key's first "+strconv.Itoa(httpx.PublicPrefixLength)+" characters (bt_ and 8 more)")
	id := fs.String("id", "", "the key's id (api_key_id in its api_key_created line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*prefix == "") == (*id == "") || fs.NArg() > 0 {
		return errors.New("revoke-api-key needs -prefix bt_XXXXXXXX or -id ID (one of them)")
	}
	var keyID uuid.UUID
	if *id != "" {
		var err error
		if keyID, err = uuid.Parse(*id); err != nil {
			return fmt.Errorf("revoke-api-key: -id %q is not a key id (a UUID)", *id)
		}
	}
	if *prefix != "" && (len(*prefix) != httpx.PublicPrefixLength || !strings.HasPrefix(*prefix, httpx.APIKeyPrefix)) {
		return fmt.Errorf("revoke-api-key: -prefix must be the key's first %d characters, bt_ and 8 more (never the whole key)",
			httpx.PublicPrefixLength)
	}
	cfg, err := config.LoadCommon(getenv)
	if err != nil {
		return err
	}
	logger := obs.NewLogger(stdout, obs.Options{Service: "revoke-api-key", Level: cfg.LogLevel})
	pool, err := openDatabase(ctx, cfg.DatabaseURL, logger.Handler())
	if err != nil {
		return err
	}
	defer pool.Close()
	q := store.New(pool)
	if *prefix != "" {
		if keyID, err = keyWithPrefix(ctx, q, *prefix); err != nil {
			return err
		}
	}
	revoked, err := q.RevokeAPIKey(ctx, keyID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoke-api-key: no API key has the id %s", keyID)
	}
	if err != nil {
		return err
	}
	ctx = obs.WithAttrs(ctx, slog.String(obs.KeyUserID, revoked.UserID.String()))
	logger.InfoContext(ctx, obs.EventAPIKeyRevoked,
		slog.String(obs.KeyAPIKeyID, revoked.ID.String()), slog.String(obs.KeyAPIKeyPrefix, revoked.Prefix))
	return nil
}

// keyWithPrefix returns the id of the one API key that starts with prefix:
// the public prefix names a key, but nothing stops two from sharing it.
func keyWithPrefix(ctx context.Context, q *store.Queries, prefix string) (uuid.UUID, error) {
	found, err := q.APIKeysByPrefix(ctx, prefix)
	if err != nil {
		return uuid.Nil, err
	}
	switch len(found) {
	case 0:
		return uuid.Nil, fmt.Errorf("revoke-api-key: no API key starts with %s", prefix)
	case 1:
		return found[0].ID, nil
	default:
		ids := make([]string, len(found))
		for i, k := range found {
			ids[i] = k.ID.String()
		}
		return uuid.Nil, fmt.Errorf("revoke-api-key: %d keys start with %s (ids %s): revoke one with -id",
			len(found), prefix, strings.Join(ids, ", "))
	}
}

// healthcheck asks the local server's /readyz, so a container image needs no
// curl: the check is the binary itself.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	cfg, err := config.LoadServer(getenv)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR %q: %w", cfg.HTTPAddr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %d", resp.StatusCode)
	}
	return nil
}
