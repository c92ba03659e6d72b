package jobs

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/obs"
)

// ClientConfig configures the worker's River client. Its defaults are the
// settings' defaults, in internal/config.
type ClientConfig struct {
	// Concurrency is how many backtests run at once. Defaults to
	// config.DefaultWorkerConcurrency.
	Concurrency int
	// JobTimeout bounds one attempt. Defaults to config.DefaultJobTimeout.
	JobTimeout time.Duration
	// RescueAfter is how long a job may stay running before River presumes
	// its worker dead and retries it. Defaults to JobTimeout plus
	// config.DefaultRescueMargin.
	RescueAfter time.Duration
	// RiverLogLevel is the lowest level of River's own lines that is
	// written. Defaults to config.DefaultRiverLogLevel.
	RiverLogLevel slog.Leveler
	// Engine runs the backtests. Defaults to backtest.Run.
	Engine Engine
	// RetryPolicy, if set, replaces River's exponential retry delays. A
	// retrying run's next_attempt_at is the instant it gives River.
	RetryPolicy river.ClientRetryPolicy
	// ID names this client in River's tables; defaults to River's choice.
	ID string
	// FaultInjection makes backtests of the fault symbols misbehave: for
	// the tests of the real binaries. A binary built without -tags
	// faultinject refuses it (ErrFaultsNotBuilt).
	FaultInjection bool
	// ReconcileEvery is how often the leader reconciles runs with their
	// jobs. Defaults to config.DefaultReconcileInterval.
	ReconcileEvery time.Duration
	// Metrics, if set, counts and times the attempts.
	Metrics *Metrics
	// FetchCooldown is the least time between two fetches of backtests
	// while a backlog lasts. Defaults to config.DefaultFetchCooldown.
	FetchCooldown time.Duration
	// FetchPollInterval is how often an idle worker polls for backtests
	// besides being woken by LISTEN/NOTIFY. Defaults to
	// config.DefaultFetchPollInterval, and is raised to FetchCooldown if
	// shorter (River refuses it shorter).
	FetchPollInterval time.Duration
	// ProgressEvery spaces a running backtest's progress writes. Defaults
	// to the worker's (one second).
	ProgressEvery time.Duration
}

func (cfg ClientConfig) withDefaults() ClientConfig {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = config.DefaultWorkerConcurrency
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = config.DefaultJobTimeout
	}
	if cfg.RescueAfter <= 0 {
		cfg.RescueAfter = cfg.JobTimeout + config.DefaultRescueMargin
	}
	if cfg.RiverLogLevel == nil {
		cfg.RiverLogLevel = config.DefaultRiverLogLevel
	}
	if cfg.ReconcileEvery <= 0 {
		cfg.ReconcileEvery = config.DefaultReconcileInterval
	}
	if cfg.FetchCooldown <= 0 {
		cfg.FetchCooldown = config.DefaultFetchCooldown
	}
	if cfg.FetchPollInterval <= 0 {
		cfg.FetchPollInterval = config.DefaultFetchPollInterval
	}
	cfg.FetchPollInterval = max(cfg.FetchPollInterval, cfg.FetchCooldown)
	return cfg
}

// ErrFaultsNotBuilt is returned for a client asked to inject faults by a
// binary built without them.
var ErrFaultsNotBuilt = errors.New("fault injection (FAULT_INJECTION=1) needs a worker built with -tags faultinject, a test build")

// NewWorkerClient returns a River client that works backtest jobs with the
// lifecycle middleware, logging River's own lines through h.
func NewWorkerClient(pool *pgxpool.Pool, h slog.Handler, logger *slog.Logger, cfg ClientConfig) (*river.Client[pgx.Tx], error) {
	if cfg.FaultInjection && !FaultsBuilt {
		return nil, ErrFaultsNotBuilt
	}
	cfg = cfg.withDefaults()
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, NewReconcileWorker(pool, logger)); err != nil {
		return nil, fmt.Errorf("register reconcile worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, NewIdempotencySweeper(pool, logger)); err != nil {
		return nil, fmt.Errorf("register idempotency sweeper: %w", err)
	}
	if err := river.AddWorkerSafely(workers, NewWorker(pool, logger, WorkerConfig{
		Timeout: cfg.JobTimeout, Engine: cfg.Engine, FaultInjection: cfg.FaultInjection,
		ProgressEvery: cfg.ProgressEvery,
	})); err != nil {
		return nil, fmt.Errorf("register backtest worker: %w", err)
	}
	lifecycle := NewLifecycle(logger, pool)
	lifecycle.jobs = newJobTracker()
	retries := newRetrySchedule(cfg.RetryPolicy)
	lifecycle.retries = retries
	middleware := []rivertype.Middleware{lifecycle}
	if cfg.Metrics != nil {
		middleware = append(middleware, cfg.Metrics.Middleware())
	}
	riverLines := obs.NewLibraryLogger(h, obs.EventRiverLog, cfg.RiverLogLevel.Level()).Handler()
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		ID:     cfg.ID,
		Logger: slog.New(&riverLogHandler{next: riverLines, jobs: lifecycle.jobs}),
		Queues: map[string]river.QueueConfig{
			jobargs.Queue: {
				MaxWorkers: cfg.Concurrency, FetchCooldown: cfg.FetchCooldown, FetchPollInterval: cfg.FetchPollInterval,
			},
			MaintenanceQueue: {MaxWorkers: 1},
		},
		PeriodicJobs: []*river.PeriodicJob{river.NewPeriodicJob(
			river.PeriodicInterval(cfg.ReconcileEvery),
			func() (river.JobArgs, *river.InsertOpts) { return ReconcileArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true},
		), river.NewPeriodicJob(
			river.PeriodicInterval(config.DefaultIdempotencySweepInterval),
			func() (river.JobArgs, *river.InsertOpts) { return SweepIdempotencyKeysArgs{}, nil },
			nil,
		)},
		Workers:              workers,
		Middleware:           middleware,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueAfter,
		RetryPolicy:          retries,
	})
	if err != nil {
		return nil, fmt.Errorf("river worker client: %w", err)
	}
	return client, nil
}
