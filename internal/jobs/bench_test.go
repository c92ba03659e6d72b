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

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// noopArgs carry a backtest's fields, so the lifecycle binds what it binds
// for real jobs; the work itself is nothing.
type noopArgs struct {
	RunID         string `json:"run_id"`
	CorrelationID string `json:"correlation_id"`
	UserID        string `json:"user_id"`
	StrategyID    string `json:"strategy_id"`
}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// BenchmarkWorkerPath measures River's throughput on no-op jobs with and
// without the lifecycle middleware (binding, job_started, job_completed
// written through the real handler to io.Discard). One op is one job.
func BenchmarkWorkerPath(b *testing.B) {
	for _, variant := range []string{"bare", "lifecycle"} {
		b.Run(variant, func(b *testing.B) {
			db := dbtest.New(b)
			logger := obs.NewLogger(io.Discard, obs.Options{Service: "worker"})
			workers := river.NewWorkers()
			river.AddWorker(workers, noopWorker{})
			cfg := &river.Config{
				Logger:  slog.New(slog.DiscardHandler),
				Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 100}},
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
			args := noopArgs{RunID: uuid.NewString(), CorrelationID: uuid.NewString(), UserID: uuid.NewString(), StrategyID: uuid.NewString()}
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
// the job's fields, job_started and job_completed through the real handler
// (to io.Discard), around a job that does nothing. Divided by the bare
// per-job time of BenchmarkWorkerPath, it is the middleware's share of a
// no-op job, without the noise of the database round trips around it.
func BenchmarkLifecycleOverhead(b *testing.B) {
	lc := jobs.NewLifecycle(obs.NewLogger(io.Discard, obs.Options{Service: "worker"}), nil)
	args, err := json.Marshal(noopArgs{
		RunID: uuid.NewString(), CorrelationID: uuid.NewString(),
		UserID: uuid.NewString(), StrategyID: uuid.NewString(),
	})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	job := &rivertype.JobRow{
		ID: 42, Kind: "bench_noop", Attempt: 1, MaxAttempts: 5, EncodedArgs: args,
		AttemptedAt: &now, ScheduledAt: now,
	}
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
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
// is one backtest. "shipped" is the worker's own client, whose River fetch
// settings (at most one fetch per 100 ms) cap it; "fast_fetch" is the same
// worker with River fetching every millisecond, to show the work itself.
func BenchmarkRealBacktests(b *testing.B) {
	for _, variant := range []string{"shipped", "fast_fetch"} {
		b.Run(variant, func(b *testing.B) {
			db := dbtest.New(b)
			ctx := b.Context()
			h := obs.NewHandler(io.Discard, obs.Options{Service: "worker"})
			logger := slog.New(h)
			var client *river.Client[pgx.Tx]
			var err error
			if variant == "shipped" {
				client, err = jobs.NewWorkerClient(db.Pool, h, logger, jobs.ClientConfig{})
			} else {
				workers := river.NewWorkers()
				river.AddWorker(workers, jobs.NewWorker(db.Pool, logger, jobs.WorkerConfig{}))
				client, err = river.NewClient(riverpgxv5.New(db.Pool), &river.Config{
					Logger:            slog.New(slog.DiscardHandler),
					Queues:            map[string]river.QueueConfig{jobs.Queue: {MaxWorkers: jobs.DefaultConcurrency}},
					Workers:           workers,
					Middleware:        []rivertype.Middleware{jobs.NewLifecycle(logger, db.Pool)},
					FetchCooldown:     time.Millisecond,
					FetchPollInterval: 5 * time.Millisecond,
				})
			}
			if err != nil {
				b.Fatal(err)
			}
			inserter, err := jobs.NewInsertClient(db.Pool, h)
			if err != nil {
				b.Fatal(err)
			}
			q := store.New(db.Pool)
			user, err := q.EnsureUser(ctx, "bench")
			if err != nil {
				b.Fatal(err)
			}
			strategy, err := q.CreateStrategy(ctx, store.NewStrategy{
				UserID: user.ID, Name: "s", Kind: "sma_crossover", Params: []byte(`{"fast_window":10,"slow_window":50}`),
			})
			if err != nil {
				b.Fatal(err)
			}
			enq := jobs.NewEnqueuer(db.Pool, inserter, 0)
			for range b.N {
				if _, err := enq.Enqueue(ctx, jobs.NewBacktest{
					UserID: user.ID, StrategyID: strategy.ID, CorrelationID: "bench", Symbol: "ACME",
					Start: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC),
					InitialCash: 10_000,
				}); err != nil {
					b.Fatal(err)
				}
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
					if ev.Job.Kind != (jobs.BacktestArgs{}).Kind() {
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
