// Package config reads the processes' settings from the environment. Every
// setting has a default that works on a development machine.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The environment variables the processes read.
const (
	EnvDatabaseURL       = "DATABASE_URL"
	EnvLogLevel          = "LOG_LEVEL"
	EnvShutdownTimeout   = "SHUTDOWN_TIMEOUT"
	EnvHTTPAddr          = "HTTP_ADDR"
	EnvWorkerConcurrency = "WORKER_CONCURRENCY"
	EnvJobTimeout        = "JOB_TIMEOUT"
	EnvJobRescueAfter    = "JOB_RESCUE_AFTER"
	EnvRiverLogLevel     = "RIVER_LOG_LEVEL"
	EnvRiverUIUser       = "RIVERUI_USER"
	EnvRiverUIPassword   = "RIVERUI_PASSWORD" //nolint:gosec // the variable's name, not a secret
	EnvFaultInjection    = "FAULT_INJECTION"
	EnvJobMaxAttempts    = "JOB_MAX_ATTEMPTS"
	EnvReconcileInterval = "RECONCILE_INTERVAL"
	EnvMaxUnfinishedRuns = "MAX_UNFINISHED_RUNS"
	EnvTrustedProxies    = "TRUSTED_PROXIES"
	EnvAuthFailureBurst  = "AUTH_FAILURE_BURST"
	EnvAuthFailureEvery  = "AUTH_FAILURE_INTERVAL"
	EnvAuthFailureAddrs  = "AUTH_FAILURE_ADDRESSES"

	EnvHTTPReadHeaderTimeout = "HTTP_READ_HEADER_TIMEOUT"
	EnvHTTPReadTimeout       = "HTTP_READ_TIMEOUT"
	EnvHTTPWriteTimeout      = "HTTP_WRITE_TIMEOUT"
	EnvHTTPIdleTimeout       = "HTTP_IDLE_TIMEOUT"
	EnvHTTPMaxHeaderBytes    = "HTTP_MAX_HEADER_BYTES"
	EnvHTTPMaxConnections    = "HTTP_MAX_CONNECTIONS"
	EnvRequestTimeout        = "REQUEST_TIMEOUT"
	EnvDBStatementTimeout    = "DB_STATEMENT_TIMEOUT"
	EnvMetricsAddr           = "METRICS_ADDR"
	EnvIdempotencyKeyTTL     = "IDEMPOTENCY_KEY_TTL"
	EnvMaxSweepRuns          = "MAX_SWEEP_RUNS"
	EnvFetchCooldown         = "WORKER_FETCH_COOLDOWN"
	EnvFetchPollInterval     = "WORKER_FETCH_POLL_INTERVAL"
)

// Names lists every environment variable the processes read.
func Names() []string {
	return []string{
		EnvDatabaseURL, EnvLogLevel, EnvShutdownTimeout, EnvHTTPAddr, EnvWorkerConcurrency,
		EnvJobTimeout, EnvJobRescueAfter, EnvRiverLogLevel, EnvRiverUIUser, EnvRiverUIPassword, EnvFaultInjection,
		EnvJobMaxAttempts, EnvReconcileInterval, EnvMaxUnfinishedRuns,
		EnvTrustedProxies, EnvAuthFailureBurst, EnvAuthFailureEvery, EnvAuthFailureAddrs,
		EnvHTTPReadHeaderTimeout, EnvHTTPReadTimeout, EnvHTTPWriteTimeout, EnvHTTPIdleTimeout,
		EnvHTTPMaxHeaderBytes, EnvHTTPMaxConnections, EnvRequestTimeout, EnvDBStatementTimeout,
		EnvMetricsAddr, EnvIdempotencyKeyTTL, EnvMaxSweepRuns, EnvFetchCooldown, EnvFetchPollInterval,
	}
}

// MinRiverUIPasswordLength is the shortest RIVERUI_PASSWORD the server
// accepts, in characters: River UI can cancel and delete jobs, and its
// password is typed by people.
const MinRiverUIPasswordLength = 12

// The defaults of the job settings. They are defined here once: the
// packages that use the settings fall back to them too when given none.
const (
	// DefaultWorkerConcurrency is how many backtests a worker runs at once.
	DefaultWorkerConcurrency = 4
	// DefaultFetchCooldown is the least time between two fetches of
	// backtests from the queue while a backlog lasts (River's default is
	// 100 ms, a ceiling of concurrency/0.1s jobs a second).
	// 2 ms measured within 15% of 1 ms on small backtests, for half the
	// fetch queries (docs/benchmarks.md).
	DefaultFetchCooldown = 2 * time.Millisecond
	// DefaultFetchPollInterval is how often an idle worker polls the queue.
	// LISTEN/NOTIFY wakes it for each backtest (the server's insert client
	// notifies as often as DefaultFetchCooldown allows): the poll is the
	// fallback for a NOTIFY that is missed (a listener reconnecting, say),
	// and bounds the wait then to 100 ms where River's default is a second.
	DefaultFetchPollInterval = 100 * time.Millisecond
	// MinFetchCooldown is the shortest fetch cooldown River accepts.
	MinFetchCooldown = time.Millisecond
	// DefaultJobTimeout bounds one attempt of a backtest; River's own
	// default of one minute is too short for long series.
	DefaultJobTimeout = 30 * time.Minute
	// DefaultRescueMargin is how much longer than the job timeout a job may
	// stay running before it is presumed lost with its worker and retried.
	DefaultRescueMargin = 10 * time.Minute
	// DefaultJobMaxAttempts is how many times a backtest is tried before
	// its run is marked failed.
	DefaultJobMaxAttempts = 5
	// DefaultReconcileInterval is how often the leading worker reconciles
	// runs with their jobs.
	DefaultReconcileInterval = time.Minute
	// DefaultRiverLogLevel is the lowest level of River's own lines that a
	// worker writes.
	DefaultRiverLogLevel = slog.LevelWarn
	// DefaultMaxUnfinishedRuns is how many queued or running backtests a
	// user may have: room for a large parameter sweep, while one key can no
	// longer fill the queue without end.
	DefaultMaxUnfinishedRuns = 50_000
	// DefaultIdempotencyKeyTTL is how long an Idempotency-Key and the
	// response stored with it are remembered: a day, as Stripe does, long
	// enough for any client's retries.
	DefaultIdempotencyKeyTTL = 24 * time.Hour
	// DefaultMaxSweepRuns is the most runs one sweep may make (POST
	// /sweeps): within DefaultMaxUnfinishedRuns, which a sweep counts
	// against, with room for several.
	DefaultMaxSweepRuns = 10_000
	// DefaultIdempotencySweepInterval is how often the leading worker
	// deletes expired idempotency keys. An expired key is never replayed,
	// swept or not: the sweep only frees the space.
	DefaultIdempotencySweepInterval = time.Hour
)

// DefaultDatabaseURL is the local development database.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/backtest?sslmode=disable"

// Common are the settings of every process.
type Common struct {
	// DatabaseURL is DATABASE_URL. Defaults to DefaultDatabaseURL.
	DatabaseURL string
	// LogLevel is LOG_LEVEL: debug, info, warn or error. Defaults to info.
	LogLevel slog.Level
	// ShutdownTimeout is SHUTDOWN_TIMEOUT: how long a stopping process waits
	// for requests or jobs in flight. Defaults to 8s, inside Docker's 10s.
	ShutdownTimeout time.Duration
}

// Server are the API server's settings.
type Server struct {
	Common
	// HTTPAddr is HTTP_ADDR, the listen address. Defaults to ":8080".
	HTTPAddr string
	// RiverUIUser and RiverUIPassword are RIVERUI_USER and RIVERUI_PASSWORD:
	// the operator's credentials for River UI under /riverui. River UI is
	// served only when both are set. The password has at least
	// MinRiverUIPasswordLength characters.
	RiverUIUser, RiverUIPassword string
	// JobMaxAttempts is JOB_MAX_ATTEMPTS: how many times a backtest is
	// tried. Defaults to DefaultJobMaxAttempts (5).
	JobMaxAttempts int
	// MaxUnfinishedRuns is MAX_UNFINISHED_RUNS: how many queued or running
	// backtests one user may have; past it POST /backtests answers 429.
	// Defaults to DefaultMaxUnfinishedRuns (50000).
	MaxUnfinishedRuns int
	// TrustedProxies is TRUSTED_PROXIES: the proxies (CIDRs or single
	// addresses, comma-separated) whose X-Forwarded-For header names the
	// client. Defaults to none: the client is the connection's peer.
	TrustedProxies []netip.Prefix
	// AuthFailureBurst is AUTH_FAILURE_BURST: how many failed
	// authentications (unknown API keys, wrong River UI passwords) a client
	// address may make in a row before it is answered 429. Defaults to 10.
	AuthFailureBurst int
	// AuthFailureInterval is AUTH_FAILURE_INTERVAL: an address regains one
	// failed authentication per interval, up to AuthFailureBurst. Defaults
	// to 6s (10 a minute).
	AuthFailureInterval time.Duration
	// AuthFailureAddresses is AUTH_FAILURE_ADDRESSES: how many client
	// addresses the limit tracks at once (about 100 bytes each); beyond it,
	// new addresses share one budget. Defaults to 10000.
	AuthFailureAddresses int
	// Limits bound what one client can hold of the server.
	Limits HTTPLimits
	// IdempotencyKeyTTL is IDEMPOTENCY_KEY_TTL: how long an
	// Idempotency-Key is remembered with its response. Defaults to
	// DefaultIdempotencyKeyTTL (24h).
	IdempotencyKeyTTL time.Duration
	// MaxSweepRuns is MAX_SWEEP_RUNS: the most runs one sweep may make.
	// Defaults to DefaultMaxSweepRuns (10000).
	MaxSweepRuns int
}

// HTTPLimits are the API server's timeouts and limits: no client, however
// slow or large its request, holds a connection, memory or a database
// connection for longer than they allow.
type HTTPLimits struct {
	// ReadHeaderTimeout is HTTP_READ_HEADER_TIMEOUT: how long a client may
	// take to send a request's headers, and a new connection may stay
	// without one. Defaults to 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout is HTTP_READ_TIMEOUT: how long a client may take to send
	// a whole request, body included; a slower client's connection is
	// closed. At least HTTP_READ_HEADER_TIMEOUT. Defaults to 10s.
	ReadTimeout time.Duration
	// WriteTimeout is HTTP_WRITE_TIMEOUT: how long after its headers a
	// request's response may take to be written. Longer than
	// REQUEST_TIMEOUT, so that a request cut by its deadline still gets its
	// 503. Defaults to 15s.
	WriteTimeout time.Duration
	// IdleTimeout is HTTP_IDLE_TIMEOUT: how long a keep-alive connection
	// may wait for its next request. Defaults to 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes is HTTP_MAX_HEADER_BYTES: the most a request's headers
	// may take; larger ones get 431. Defaults to 65536 (64 KiB).
	MaxHeaderBytes int
	// MaxConnections is HTTP_MAX_CONNECTIONS: how many connections the
	// server holds open at once; more wait in the listen backlog until one
	// closes. Defaults to 1000.
	MaxConnections int
	// RequestTimeout is REQUEST_TIMEOUT: the deadline of a request's
	// context, which every database query it makes inherits; past it the
	// request answers 503. Defaults to 10s.
	RequestTimeout time.Duration
	// StatementTimeout is DB_STATEMENT_TIMEOUT: PostgreSQL's
	// statement_timeout on the API server's connections, so that a query
	// whose request has given up does not go on running in the database.
	// At least REQUEST_TIMEOUT. Defaults to 15s.
	StatementTimeout time.Duration
}

// RiverUIEnabled reports whether River UI is to be served.
func (s Server) RiverUIEnabled() bool { return s.RiverUIUser != "" }

// Worker are the worker's settings.
type Worker struct {
	Common
	// Concurrency is WORKER_CONCURRENCY: backtests run at once. Defaults to
	// DefaultWorkerConcurrency (4).
	Concurrency int
	// JobTimeout is JOB_TIMEOUT: the limit of one attempt. Defaults to
	// DefaultJobTimeout (30m).
	JobTimeout time.Duration
	// RescueAfter is JOB_RESCUE_AFTER: how long a job may stay running before
	// it is presumed lost with its worker and retried. Defaults to
	// JOB_TIMEOUT plus DefaultRescueMargin (10m).
	RescueAfter time.Duration
	// RiverLogLevel is RIVER_LOG_LEVEL: the lowest level of River's own
	// lines that is written. Defaults to DefaultRiverLogLevel (warn).
	RiverLogLevel slog.Level
	// FaultInjection is FAULT_INJECTION=1: backtests of symbols starting
	// with SLOW, FLAKY, PANIC or CRASH misbehave on purpose. For tests only.
	FaultInjection bool
	// ReconcileInterval is RECONCILE_INTERVAL: how often the leading worker
	// marks failed the runs whose job ended without finishing them.
	// Defaults to DefaultReconcileInterval (1m).
	ReconcileInterval time.Duration
	// MetricsAddr is METRICS_ADDR: the address (host:port) of the listener
	// serving the worker's Prometheus metrics at /metrics. Defaults to
	// empty: no listener, since workers scaled on one host would contend
	// for one port.
	MetricsAddr string
	// FetchCooldown is WORKER_FETCH_COOLDOWN: the least time between two
	// fetches of backtests while a backlog lasts. Defaults to
	// DefaultFetchCooldown.
	FetchCooldown time.Duration
	// FetchPollInterval is WORKER_FETCH_POLL_INTERVAL: how often an idle
	// worker polls the queue besides being woken by LISTEN/NOTIFY. At
	// least WORKER_FETCH_COOLDOWN. Defaults to DefaultFetchPollInterval.
	FetchPollInterval time.Duration
}

// LoadServer reads the server's settings.
func LoadServer(getenv func(string) string) (Server, error) {
	r := reader{getenv: getenv}
	s := Server{
		Common:          r.common(),
		HTTPAddr:        r.str(EnvHTTPAddr, ":8080"),
		RiverUIUser:     r.str(EnvRiverUIUser, ""),
		RiverUIPassword: r.getenv(EnvRiverUIPassword), // spaces count in a password
		JobMaxAttempts:  r.integer(EnvJobMaxAttempts, DefaultJobMaxAttempts, 1, 25),
		Limits:          r.httpLimits(),
	}
	s.MaxUnfinishedRuns = r.integer(EnvMaxUnfinishedRuns, DefaultMaxUnfinishedRuns, 1, 10_000_000)
	s.TrustedProxies = r.prefixes(EnvTrustedProxies)
	s.AuthFailureBurst = r.integer(EnvAuthFailureBurst, 10, 1, 10_000)
	s.AuthFailureInterval = r.duration(EnvAuthFailureEvery, 6*time.Second)
	s.AuthFailureAddresses = r.integer(EnvAuthFailureAddrs, 10_000, 100, 10_000_000)
	s.IdempotencyKeyTTL = r.duration(EnvIdempotencyKeyTTL, DefaultIdempotencyKeyTTL)
	s.MaxSweepRuns = r.integer(EnvMaxSweepRuns, DefaultMaxSweepRuns, 1, 1_000_000)
	if (s.RiverUIUser == "") != (s.RiverUIPassword == "") {
		r.fail(EnvRiverUIUser, s.RiverUIUser, "and "+EnvRiverUIPassword+" must be set together (or neither, to leave River UI off)")
	}
	if n := utf8.RuneCountInString(s.RiverUIPassword); n > 0 && n < MinRiverUIPasswordLength && r.err == nil {
		// Not r.fail: the error must not print the password.
		r.err = fmt.Errorf("%s must be at least %d characters long (it has %d)", EnvRiverUIPassword, MinRiverUIPasswordLength, n)
	}
	return s, r.err
}

// LoadWorker reads the worker's settings.
func LoadWorker(getenv func(string) string) (Worker, error) {
	r := reader{getenv: getenv}
	w := Worker{
		Common:        r.common(),
		Concurrency:   r.integer(EnvWorkerConcurrency, DefaultWorkerConcurrency, 1, 1000),
		JobTimeout:    r.duration(EnvJobTimeout, DefaultJobTimeout),
		RiverLogLevel: r.level(EnvRiverLogLevel, DefaultRiverLogLevel),
	}
	w.FaultInjection = r.integer(EnvFaultInjection, 0, 0, 1) == 1
	w.ReconcileInterval = r.duration(EnvReconcileInterval, DefaultReconcileInterval)
	w.RescueAfter = r.duration(EnvJobRescueAfter, w.JobTimeout+DefaultRescueMargin)
	w.MetricsAddr = r.addr(EnvMetricsAddr, "")
	w.FetchCooldown = r.duration(EnvFetchCooldown, DefaultFetchCooldown)
	w.FetchPollInterval = r.duration(EnvFetchPollInterval, DefaultFetchPollInterval)
	if r.err == nil && w.RescueAfter <= w.JobTimeout {
		r.fail(EnvJobRescueAfter, w.RescueAfter.String(), "must be longer than JOB_TIMEOUT")
	}
	if r.err == nil && (w.FetchCooldown < MinFetchCooldown || w.FetchCooldown > time.Minute) {
		r.fail(EnvFetchCooldown, w.FetchCooldown.String(), "must be from 1ms to 1m")
	}
	if r.err == nil && (w.FetchPollInterval < w.FetchCooldown || w.FetchPollInterval > time.Hour) {
		r.fail(EnvFetchPollInterval, w.FetchPollInterval.String(), "must be at least WORKER_FETCH_COOLDOWN and at most 1h")
	}
	return w, r.err
}

func (r *reader) httpLimits() HTTPLimits {
	l := HTTPLimits{
		ReadHeaderTimeout: r.duration(EnvHTTPReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       r.duration(EnvHTTPReadTimeout, 10*time.Second),
		WriteTimeout:      r.duration(EnvHTTPWriteTimeout, 15*time.Second),
		IdleTimeout:       r.duration(EnvHTTPIdleTimeout, 60*time.Second),
		// Below 4 KiB even an ordinary browser request would not fit.
		MaxHeaderBytes:   r.integer(EnvHTTPMaxHeaderBytes, 64<<10, 4<<10, 1<<20),
		MaxConnections:   r.integer(EnvHTTPMaxConnections, 1000, 1, 1_000_000),
		RequestTimeout:   r.duration(EnvRequestTimeout, 10*time.Second),
		StatementTimeout: r.duration(EnvDBStatementTimeout, 15*time.Second),
	}
	switch {
	case r.err != nil:
	case l.ReadTimeout < l.ReadHeaderTimeout:
		r.fail(EnvHTTPReadTimeout, l.ReadTimeout.String(), "must be at least "+EnvHTTPReadHeaderTimeout+" (the headers are part of the request)")
	case l.WriteTimeout <= l.RequestTimeout:
		r.fail(EnvHTTPWriteTimeout, l.WriteTimeout.String(), "must be longer than "+EnvRequestTimeout+
			", or a request cut by its deadline could not send its 503")
	case l.StatementTimeout < l.RequestTimeout:
		r.fail(EnvDBStatementTimeout, l.StatementTimeout.String(), "must be at least "+EnvRequestTimeout+
			": a request's own deadline ends its queries first, and answers 503")
	}
	return l
}

// LoadCommon reads the settings of the one-shot commands.
func LoadCommon(getenv func(string) string) (Common, error) {
	r := reader{getenv: getenv}
	c := r.common()
	return c, r.err
}

// reader collects the first error, so a caller checks once.
type reader struct {
	getenv func(string) string
	err    error
}

func (r *reader) fail(name, value, why string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s=%q %s", name, value, why)
	}
}

func (r *reader) common() Common {
	return Common{
		DatabaseURL:     r.str(EnvDatabaseURL, DefaultDatabaseURL),
		LogLevel:        r.level(EnvLogLevel, slog.LevelInfo),
		ShutdownTimeout: r.duration(EnvShutdownTimeout, 8*time.Second),
	}
}

func (r *reader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *reader) integer(name string, def, lo, hi int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(name, v, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
		return def
	}
	return n
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, v, "must be a positive duration such as 30s or 10m")
		return def
	}
	return d
}

// addr reads a listen address, host:port with a port from 0 to 65535 (the
// host may be empty: every interface).
func (r *reader) addr(name, def string) string {
	v := r.str(name, def)
	if v == "" {
		return v
	}
	_, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		r.fail(name, v, "must be a listen address host:port, such as :9090 or 127.0.0.1:9090")
		return def
	}
	return v
}

// prefixes reads a comma-separated list of CIDRs; a bare address stands
// for itself alone.
func (r *reader) prefixes(name string) []netip.Prefix {
	v := r.str(name, "")
	if v == "" {
		return nil
	}
	var out []netip.Prefix
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		p, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil || a.Zone() != "" {
				r.fail(name, v, "must be a comma-separated list of CIDRs or addresses, such as 10.0.0.0/8,192.0.2.7")
				return nil
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

func (r *reader) level(name string, def slog.Level) slog.Level {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		r.fail(name, v, "must be debug, info, warn or error")
		return def
	}
	return l
}
