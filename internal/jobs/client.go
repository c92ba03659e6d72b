package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/backtestd/backtestd/internal/obs"
)

// ClientConfig configures the worker's River client.
type ClientConfig struct {
	// Concurrency is how many backtests run at once. Defaults to 4.
	Concurrency int
	// JobTimeout bounds one attempt. Defaults to 30 minutes.
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay running before River presumes
	// its worker dead and retries it. Defaults to JobTimeout plus 10 minutes.
	RescueAfter time.Duration
	// RiverLogLevel is the lowest level of River's own lines that is
	// written. Defaults to warn.
	RiverLogLevel slog.Leveler
	// Engine runs the backtests. Defaults to backtest.Run.
	Engine Engine
	// RetryPolicy, if set, replaces River's exponential retry delays.
	RetryPolicy river.ClientRetryPolicy
	// ID names this client in River's tables; defaults to River's choice.
	ID string
	// FaultInjection makes backtests of the fault symbols misbehave: for
	// the tests of the real binaries. A binary built without -tags
	// faultinject refuses it (ErrFaultsNotBuilt).
	FaultInjection bool
	// ReconcileEvery is how often the leader reconciles runs with their
	// jobs. Defaults to 1 minute.
	ReconcileEvery time.Duration
}

// ErrFaultsNotBuilt is returned for a client asked to inject faults by a
// binary built without them.
var ErrFaultsNotBuilt = errors.New("fault injection (FAULT_INJECTION=1) needs a worker built with -tags faultinject, a test build")

// FetchCooldown is the least time between two fetches of backtests from
// the queue. River's default of 100 ms caps a worker at Concurrency jobs per
// 100 ms, 40 backtests a second at the default concurrency, when a small
// backtest takes a few milliseconds; at 10 ms a worker drains a backlog of
// them about 10 times faster, for at most 100 small fetch queries a second
// while a backlog lasts (none when idle: inserts wake the worker through
// LISTEN/NOTIFY).
const FetchCooldown = 10 * time.Millisecond

// DefaultConcurrency is how many backtests a worker runs at once unless told
// otherwise (WORKER_CONCURRENCY).
const DefaultConcurrency = 4

// NewWorkerClient returns a River client that works backtest jobs with the
// lifecycle middleware, logging River's own lines through h.
func NewWorkerClient(pool *pgxpool.Pool, h slog.Handler, logger *slog.Logger, cfg ClientConfig) (*river.Client[pgx.Tx], error) {
	if cfg.FaultInjection && !FaultsBuilt {
		return nil, ErrFaultsNotBuilt
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 30 * time.Minute
	}
	if cfg.RescueAfter <= 0 {
		cfg.RescueAfter = cfg.JobTimeout + 10*time.Minute
	}
	if cfg.RiverLogLevel == nil {
		cfg.RiverLogLevel = slog.LevelWarn
	}
	if cfg.ReconcileEvery <= 0 {
		cfg.ReconcileEvery = time.Minute
	}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, NewReconcileWorker(pool, logger)); err != nil {
		return nil, fmt.Errorf("register reconcile worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, NewWorker(pool, logger, WorkerConfig{
		Timeout: cfg.JobTimeout, Engine: cfg.Engine, FaultInjection: cfg.FaultInjection,
	})); err != nil {
		return nil, fmt.Errorf("register backtest worker: %w", err)
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		ID:     cfg.ID,
		Logger: obs.NewLibraryLogger(h, obs.EventRiverLog, cfg.RiverLogLevel.Level()),
		Queues: map[string]river.QueueConfig{
			Queue:            {MaxWorkers: cfg.Concurrency, FetchCooldown: FetchCooldown},
			MaintenanceQueue: {MaxWorkers: 1},
		},
		PeriodicJobs: []*river.PeriodicJob{river.NewPeriodicJob(
			river.PeriodicInterval(cfg.ReconcileEvery),
			func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true},
		)},
		Workers:              workers,
		Middleware:           []rivertype.Middleware{NewLifecycle(logger, pool)},
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		RetryPolicy:          cfg.RetryPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("river worker client: %w", err)
	}
	return client, nil
}

// NewInsertClient returns a River client that only inserts jobs: it has no
// workers and is never started.
func NewInsertClient(pool *pgxpool.Pool, h slog.Handler) (*river.Client[pgx.Tx], error) {
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger: slog.New(callerLeft{obs.NewLibraryLogger(h, obs.EventRiverLog, slog.LevelWarn).Handler()}),
	})
	if err != nil {
		return nil, fmt.Errorf("river insert client: %w", err)
	}
	return client, nil
}

// callerLeft writes at info the lines River logs as errors under a context
// its caller cancelled. An insert runs under an HTTP request's context, and
// when the client goes away River logs "Failed to send job insert
// notification" at error: the transaction is rolled back, nothing is lost,
// and nothing is wrong with the server. A deadline that passed is not a
// cancellation, and stays an error.
type callerLeft struct{ inner slog.Handler }

func (h callerLeft) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h callerLeft) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && errors.Is(ctx.Err(), context.Canceled) {
		r.Level = slog.LevelInfo
	}
	return h.inner.Handle(ctx, r)
}

func (h callerLeft) WithAttrs(attrs []slog.Attr) slog.Handler {
	return callerLeft{h.inner.WithAttrs(attrs)}
}

func (h callerLeft) WithGroup(name string) slog.Handler {
	return callerLeft{h.inner.WithGroup(name)}
}
