// Package sweep_test measures accepting one sweep of 10,000 runs
// (POST /sweeps) against 10,000 single POST /backtests, through the real
// API handler, enqueuer and PostgreSQL.
package sweep_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/bench/internal/loadgen"
	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

const (
	// runs is what each variant enqueues per op: the most one sweep may
	// make by default (config.DefaultMaxSweepRuns).
	runs = 10_000
	// clients post the singles concurrently, as in bench/enqueue.
	clients = 8
)

// sweepBody is a sweep of exactly runs runs, none refused: 50 fast windows
// below 100 slow windows, over two symbols, the range and cash of each
// single below.
func sweepBody() []byte {
	fast := make([]int, 50)
	for i := range fast {
		fast[i] = 5 + i // 5..54
	}
	slow := make([]int, 100)
	for i := range slow {
		slow[i] = 60 + i // 60..159
	}
	body, _ := json.Marshal(map[string]any{
		"kind": "sma_crossover", "params_grid": map[string]any{"fast_window": fast, "slow_window": slow},
		"symbols": []string{"ACME", "BETA"}, "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000,
	})
	return body
}

// timedSweeps times the enqueuer's EnqueueSweep (the one transaction that
// inserts the sweep, its strategies, runs and jobs) inside the request.
type timedSweeps struct {
	*enqueue.Enqueuer

	insert atomic.Int64 // nanoseconds
}

func (t *timedSweeps) EnqueueSweep(ctx context.Context, ns enqueue.NewSweep) (store.Sweep, error) {
	t0 := time.Now()
	s, err := t.Enqueuer.EnqueueSweep(ctx, ns)
	t.insert.Add(int64(time.Since(t0)))
	return s, err
}

// user is a user with an API key and a strategy of its own.
type user struct {
	key      string
	strategy uuid.UUID
}

func newUsers(b *testing.B, q *store.Queries, n int) []user {
	b.Helper()
	out := make([]user, n)
	for i := range out {
		u, err := q.EnsureUser(b.Context(), fmt.Sprintf("bench-%d", i))
		if err != nil {
			b.Fatal(err)
		}
		var hash []byte
		out[i].key, hash = httpx.NewAPIKey()
		if err := q.AddAPIKey(b.Context(), u.ID, hash); err != nil {
			b.Fatal(err)
		}
		out[i].strategy = fixture.Strategy(b, q, u.ID, backtest.KindSMACrossover, `{"fast_window":10,"slow_window":100}`).ID
	}
	return out
}

// BenchmarkSweepEnqueue enqueues 10,000 backtests per op, on a schema of
// its own each op: "sweep" as one POST /sweeps (one transaction, jobs by
// COPY), "singles" as 10,000 POST /backtests from 8 concurrent clients,
// each a user of its own (one user's enqueues would take turns on the lock
// its bound on unfinished runs takes; the default bound, 50,000, leaves
// room for both), and "singles_one_user" as the same from one user over 8
// connections: the requests a sweep replaces. The ratio of the two ns/op is the sweep's share of the
// singles' time (target: under 1/20). The sweep also reports insert-µs/run,
// the cost per run of its transaction alone.
func BenchmarkSweepEnqueue(b *testing.B) {
	for _, variant := range []string{"singles", "singles_one_user", "sweep"} {
		b.Run(variant, func(b *testing.B) {
			// Only the requests are timed: enqueueOnce starts and stops
			// the timer around them.
			b.StopTimer()
			var elapsed, insert time.Duration
			for range b.N {
				e, i := enqueueOnce(b, variant)
				elapsed += e
				insert += i
			}
			b.ReportMetric(float64(b.N*runs)/elapsed.Seconds(), "runs/s")
			b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N*runs), "µs/run")
			if variant == "sweep" {
				b.ReportMetric(float64(insert.Microseconds())/float64(b.N*runs), "insert-µs/run")
			}
		})
	}
}

// enqueueOnce sets up a schema and a server, then enqueues runs backtests
// as variant says. It returns the time taken by the requests alone, and for
// a sweep the time of its transaction; it fails unless every run and job
// is in the database afterwards.
func enqueueOnce(b *testing.B, variant string) (elapsed, insert time.Duration) {
	b.Helper()
	ctx := b.Context()
	db := dbtest.New(b)
	h := obs.NewHandler(io.Discard, obs.Options{Service: "server"})
	inserter, err := enqueue.NewInsertClient(db.Pool, h)
	if err != nil {
		b.Fatal(err)
	}
	q := store.New(db.Pool)
	enq := enqueue.NewEnqueuer(db.Pool, inserter, 0)
	sweeps := &timedSweeps{Enqueuer: enq}
	srv := httptest.NewServer(httpx.NewServer(slog.New(h), httpx.Deps{
		Queries: q, Enqueuer: enq, DB: db.Pool, Sweeps: sweeps,
	}))
	defer srv.Close()

	if variant == "sweep" {
		u := newUsers(b, q, 1)[0]
		body := sweepBody()
		b.StartTimer()
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/sweeps", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+u.key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var got struct {
			RunCount     int `json:"run_count"`
			SkippedCount int `json:"skipped_count"`
		}
		decodeErr := json.NewDecoder(resp.Body).Decode(&got)
		_ = resp.Body.Close()
		elapsed = time.Since(start)
		b.StopTimer()
		if resp.StatusCode != http.StatusAccepted || decodeErr != nil || got.RunCount != runs || got.SkippedCount != 0 {
			b.Fatalf("POST /sweeps: status %d, %+v, %v", resp.StatusCode, got, decodeErr)
		}
		insert = time.Duration(sweeps.insert.Load())
	} else {
		users := newUsers(b, q, clients)
		if variant == "singles_one_user" {
			// One user's 10,000 runs over the same 8 connections: what a
			// sweep replaces. Its enqueues take turns on the user's lock.
			users = slices.Repeat(users[:1], clients)
		}
		elapsed = postSingles(b, srv.Listener.Addr().String(), users)
	}

	var nRuns, nJobs int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM backtest_runs), (SELECT count(*) FROM river_job)`).
		Scan(&nRuns, &nJobs); err != nil {
		b.Fatal(err)
	}
	if nRuns != runs || nJobs != runs {
		b.Fatalf("%s: %d runs and %d jobs in the database, want %d of each", variant, nRuns, nJobs, runs)
	}
	return elapsed, insert
}

// postSingles posts runs single backtests from one keep-alive connection
// per user, all at once, and returns how long they took.
func postSingles(b *testing.B, addr string, users []user) time.Duration {
	b.Helper()
	reqs := make([][]byte, len(users))
	conns := make([]*loadgen.Conn, len(users))
	for i, u := range users {
		body, _ := json.Marshal(map[string]any{
			"strategy_id": u.strategy, "symbol": "ACME", "start": "2018-01-01", "end": "2021-12-31", "initial_cash": 10000,
		})
		reqs[i] = loadgen.Request(http.MethodPost, "/backtests",
			[]string{"Authorization: Bearer " + u.key, "Content-Type: application/json"}, body)
		var err error
		if conns[i], err = loadgen.Dial(b.Context(), addr); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	work := make(chan struct{}, runs)
	for range runs {
		work <- struct{}{}
	}
	close(work)
	var wg sync.WaitGroup
	b.StartTimer()
	start := time.Now()
	for i := range users {
		wg.Go(func() {
			for range work {
				status, err := conns[i].Do(reqs[i])
				if err == nil && status != http.StatusAccepted {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if b.Failed() {
		b.FailNow()
	}
	return elapsed
}
