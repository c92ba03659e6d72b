package jobs_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
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
