// Package queuelatency_test measures how long a backtest waits between the
// commit of its enqueue and its job_started line, on an idle worker with
// the shipped fetch settings.
package queuelatency_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// seen is when the worker wrote a job's job_started and job_completed lines.
type seen struct {
	started, completed chan time.Time
}

// lineWatcher is the worker's log output: it notes the moment each
// backtest's job_started and job_completed lines are written (the obs
// handler writes a line in one call), on this process's monotonic clock.
type lineWatcher struct {
	mu   sync.Mutex
	runs map[string]seen
}

// of is what is seen of runID, whose lines may come before its enqueue
// returns the ID.
func (w *lineWatcher) of(runID string) seen {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.runs[runID]
	if !ok {
		s = seen{started: make(chan time.Time, 1), completed: make(chan time.Time, 1)}
		w.runs[runID] = s
	}
	return s
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	at := time.Now()
	if !bytes.Contains(p, []byte(obs.EventJobStarted)) && !bytes.Contains(p, []byte(obs.EventJobCompleted)) {
		return len(p), nil
	}
	var line map[string]any
	_ = json.Unmarshal(p, &line) // not JSON: no run_id below
	runID, _ := line[obs.KeyRunID].(string)
	if runID == "" {
		return len(p), nil
	}
	s := w.of(runID)
	switch line[obs.KeyEvent] {
	case obs.EventJobStarted:
		s.started <- at
	case obs.EventJobCompleted:
		s.completed <- at
	}
	return len(p), nil
}

// BenchmarkQueueLatency enqueues small backtests one at a time through the
// enqueuer, as POST /backtests does, while the worker's own client
// (jobs.NewWorkerClient, shipped settings) idles on the same schema, and
// measures from the enqueue's commit (the moment Enqueue returns) to the
// moment the worker writes the job's job_started line. One op is one
// backtest; the next is enqueued once the last completed, after a random
// pause. "idle" pauses 150 to 250 ms, longer than River's insert
// notification limit (one NOTIFY per queue per 100 ms from the inserting
// client), so every enqueue wakes the worker; "busy_50ms" pauses 20 to
// 80 ms, as POSTs from many users would arrive, so some enqueues send no
// NOTIFY and wait for the worker's next poll. river-p50-ms and
// river-p99-ms are the same waits from River's job rows (attempted_at -
// created_at, both the database's clock; created_at is the start of the
// enqueue's transaction, so they include its two round trips).
func BenchmarkQueueLatency(b *testing.B) {
	for _, v := range []struct {
		name     string
		min, max time.Duration
	}{
		{"idle", 150 * time.Millisecond, 250 * time.Millisecond},
		{"busy_50ms", 20 * time.Millisecond, 80 * time.Millisecond},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.StopTimer()
			ctx := b.Context()
			db := dbtest.New(b)
			watcher := &lineWatcher{runs: map[string]seen{}}
			h := obs.NewHandler(watcher, obs.Options{Service: "worker"})
			client, err := jobs.NewWorkerClient(db.Pool, h, slog.New(h), jobs.ClientConfig{})
			if err != nil {
				b.Fatal(err)
			}
			if err := client.Start(ctx); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = client.Stop(ctx) })
			enq, user, strategy := fixture.Enqueuer(b, db.Pool, obs.NewHandler(watcher, obs.Options{Service: "server"}))
			// once enqueues one backtest, waits for it to complete, and
			// returns its wait.
			once := func() time.Duration {
				run, err := enq.Enqueue(ctx, fixture.SmallBacktest(user.ID, strategy.ID))
				committed := time.Now()
				if err != nil {
					b.Fatal(err)
				}
				s := watcher.of(run.ID.String())
				var wait time.Duration
				for _, ch := range []chan time.Time{s.started, s.completed} {
					select {
					case at := <-ch:
						if ch == s.started {
							wait = at.Sub(committed)
						}
					case <-time.After(time.Minute):
						b.Fatalf("run %s: no job_started or job_completed within a minute", run.ID)
					}
				}
				return wait
			}
			once() // the worker's first job, and its first connections, uncounted
			waits := make([]time.Duration, 0, b.N)
			for range b.N {
				time.Sleep(v.min + rand.N(v.max-v.min)) //nolint:gosec // a pause, not a secret
				waits = append(waits, once())
			}
			var river []float64
			rows, err := db.Pool.Query(ctx, `SELECT extract(epoch FROM attempted_at - created_at) * 1000
				FROM river_job WHERE kind = 'backtest' ORDER BY id OFFSET 1`)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var ms float64
				if err := rows.Scan(&ms); err != nil {
					b.Fatal(err)
				}
				river = append(river, ms)
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			if len(river) != b.N {
				b.Fatalf("%d backtest jobs attempted, want %d", len(river), b.N)
			}
			ms := make([]float64, len(waits))
			for i, w := range waits {
				ms[i] = float64(w.Microseconds()) / 1000
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(percentile(ms, 50), "p50-ms")
			b.ReportMetric(percentile(ms, 99), "p99-ms")
			b.ReportMetric(slices.Max(ms), "max-ms")
			b.ReportMetric(percentile(river, 50), "river-p50-ms")
			b.ReportMetric(percentile(river, 99), "river-p99-ms")
		})
	}
}

// percentile is the nearest-rank p-th percentile of vals.
func percentile(vals []float64, p int) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100 // ceil(len*p/100), 1-based
	return s[max(i, 1)-1]
}
