package jobs_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
)

// noopWorker works backtest jobs by doing nothing, so the lifecycle binds
// what it binds for real jobs. With a logger it logs job_completed, as the
// real worker does, so that the lifecycle variants write every line a job
// writes around its work.
type noopWorker struct {
	river.WorkerDefaults[jobargs.Backtest]

	logger *slog.Logger
}

func (w noopWorker) Work(ctx context.Context, _ *river.Job[jobargs.Backtest]) error {
	if w.logger != nil {
		completed(ctx, w.logger, time.Now())
	}
	return nil
}

// completed logs job_completed the way the worker does, without a result.
func completed(ctx context.Context, logger *slog.Logger, began time.Time) {
	logger.LogAttrs(ctx, slog.LevelInfo, obs.EventJobCompleted,
		slog.Int64(obs.KeyDurationMS, time.Since(began).Milliseconds()))
}

func noopArgs() jobargs.Backtest {
	return jobargs.Backtest{
		RunID: uuid.Must(uuid.NewV7()), CorrelationID: uuid.NewString(),
		UserID: uuid.Must(uuid.NewV7()), StrategyID: uuid.Must(uuid.NewV7()),
	}
}

// BenchmarkWorkerPath measures River's throughput on no-op jobs with and
// without the lifecycle middleware (binding, job_started, job_completed
// written through the real handler to io.Discard). One op is one job.
func BenchmarkWorkerPath(b *testing.B) {
	for _, variant := range []string{"bare", "lifecycle"} {
		b.Run(variant, func(b *testing.B) {
			db := dbtest.New(b)
			logger := obs.NewLogger(io.Discard, obs.Options{Service: "worker"})
			worker := noopWorker{}
			if variant == "lifecycle" {
				worker.logger = logger
			}
			workers := river.NewWorkers()
			river.AddWorker(workers, worker)
			cfg := &river.Config{
				Logger:  slog.New(slog.DiscardHandler),
				Queues:  map[string]river.QueueConfig{jobargs.Queue: {MaxWorkers: 100}},
				Workers: workers,
				// River's defaults fetch at most MaxWorkers jobs per 100 ms
				// cooldown, a ceiling that would hide what is measured here.
				FetchCooldown:     time.Millisecond,
				FetchPollInterval: 5 * time.Millisecond,
			}
			if variant == "lifecycle" {
				cfg.Middleware = []rivertype.Middleware{jobs.NewLifecycle(logger, db.Pool)}
			}
			client, err := river.NewClient(riverpgxv5.New(db.Pool), cfg)
			if err != nil {
				b.Fatal(err)
			}
			// Inserted before the client starts, all completions watched
			// (River drops events that overflow a subscription's buffer).
			done, cancel := client.SubscribeConfig(&river.SubscribeConfig{
				ChanSize: b.N + 100, Kinds: []river.EventKind{river.EventKindJobCompleted},
			})
			defer cancel()
			args := noopArgs()
			params := make([]river.InsertManyParams, b.N)
			for i := range params {
				params[i] = river.InsertManyParams{Args: args}
			}
			if _, err := client.InsertMany(b.Context(), params); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			if err := client.Start(b.Context()); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = client.Stop(context.WithoutCancel(b.Context())) }()
			for range b.N {
				select {
				case <-done:
				case <-time.After(time.Minute):
					b.Fatal("jobs stopped completing")
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}

// BenchmarkLifecycleOverhead is the middleware's own cost per job: binding
// the job's fields, job_started, and the job_completed line the worker
// writes, through the real handler (to io.Discard), around a job that does
// nothing. Divided by the bare
// per-job time of BenchmarkWorkerPath, it is the middleware's share of a
// no-op job, without the noise of the database round trips around it.
func BenchmarkLifecycleOverhead(b *testing.B) {
	logger := obs.NewLogger(io.Discard, obs.Options{Service: "worker"})
	lc := jobs.NewLifecycle(logger, nil)
	args, err := json.Marshal(noopArgs())
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	job := &rivertype.JobRow{
		ID: 42, Kind: jobargs.KindBacktest, Attempt: 1, MaxAttempts: 5, EncodedArgs: args,
		AttemptedAt: &now, ScheduledAt: now,
	}
	ctx := context.Background()
	noop := func(ctx context.Context) error {
		completed(ctx, logger, now)
		return nil
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := lc.Work(ctx, job, noop); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRealBacktests runs small real backtests (sma_crossover over a
// year of daily bars) through the real worker, lifecycle and store, at the
// worker's default concurrency, from a backlog enqueued beforehand. One op
// is one backtest. "noop" is River's own limit at the same concurrency: a
// bare no-op worker, River fetching every millisecond, the base of the
// ratios. "shipped" is the worker's own client with the settings'
// defaults; "fetch_Xms" is the same client with another
// WORKER_FETCH_COOLDOWN ("fetch_10ms" was the default before it was a
// setting).
func BenchmarkRealBacktests(b *testing.B) {
	variants := []struct {
		name     string
		cooldown time.Duration
	}{
		{"noop", time.Millisecond},
		{"shipped", 0},
		{"fetch_1ms", time.Millisecond},
		{"fetch_2ms", 2 * time.Millisecond},
		{"fetch_5ms", 5 * time.Millisecond},
		{"fetch_10ms", 10 * time.Millisecond},
	}
	for _, variant := range variants {
		b.Run(variant.name, func(b *testing.B) {
			db := dbtest.New(b)
			ctx := b.Context()
			h := obs.NewHandler(io.Discard, obs.Options{Service: "worker"})
			logger := slog.New(h)
			var client *river.Client[pgx.Tx]
			if variant.name == "noop" {
				client = noopClient(b, db)
				insertNoops(b, client, b.N)
			} else {
				var err error
				client, err = jobs.NewWorkerClient(db.Pool, h, logger, jobs.ClientConfig{FetchCooldown: variant.cooldown})
				if err != nil {
					b.Fatal(err)
				}
				enqueueBacklog(b, db, h, b.N)
			}
			events, cancel := client.SubscribeConfig(&river.SubscribeConfig{
				ChanSize: b.N + 100, Kinds: []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed},
			})
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			if err := client.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = client.Stop(context.WithoutCancel(ctx)) }()
			for done := 0; done < b.N; {
				select {
				case ev := <-events:
					if ev.Job.Kind != jobargs.KindBacktest {
						continue // the periodic reconciliation
					}
					if ev.Kind != river.EventKindJobCompleted {
						b.Fatalf("backtest %d ended %s: %v", ev.Job.ID, ev.Kind, ev.Job.Errors)
					}
					done++
				case <-time.After(time.Minute):
					b.Fatal("backtests stopped completing")
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "backtests/s")
		})
	}
}

// noopClient is a bare River client working backtest jobs with a worker
// that does nothing, at the worker's default concurrency.
func noopClient(b *testing.B, db *dbtest.DB) *river.Client[pgx.Tx] {
	b.Helper()
	workers := river.NewWorkers()
	river.AddWorker(workers, noopWorker{})
	client, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{
		Logger:            slog.New(slog.DiscardHandler),
		Queues:            map[string]river.QueueConfig{jobargs.Queue: {MaxWorkers: config.DefaultWorkerConcurrency}},
		Workers:           workers,
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 5 * time.Millisecond,
	})
	if err != nil {
		b.Fatal(err)
	}
	return client
}

// insertNoops inserts n no-op backtest jobs, with no runs.
func insertNoops(b *testing.B, client *river.Client[pgx.Tx], n int) {
	b.Helper()
	args := noopArgs()
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: args}
	}
	if _, err := client.InsertMany(b.Context(), params); err != nil {
		b.Fatal(err)
	}
}

// enqueueBacklog enqueues n small backtests (sma_crossover over a year).
func enqueueBacklog(b *testing.B, db *dbtest.DB, h slog.Handler, n int) {
	b.Helper()
	enq, user, strategy := fixture.Enqueuer(b, db.Pool, h)
	for range n {
		if _, err := enq.Enqueue(b.Context(), fixture.SmallBacktest(user.ID, strategy.ID)); err != nil {
			b.Fatal(err)
		}
	}
}
