// Package enqueue_test measures POST /backtests against a bare two-insert
// transaction loop on the same pool.
package enqueue_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/backtestd/backtestd/bench/internal/loadgen"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

// BenchmarkEnqueuePath compares POST /backtests end to end (HTTP, auth,
// validation, the bound on unfinished runs, run row and River job in one
// transaction, the log lines) with a bare loop doing the same two inserts
// in one transaction on the same pool, at the same concurrency. One op is
// one backtest enqueued. In "api" the clients are one user, whose
// enqueues take turns on the lock of the user's row that the bound needs;
// in "api_users" each client is a user of its own.
func BenchmarkEnqueuePath(b *testing.B) {
	const concurrency = 8
	for _, variant := range []string{"bare", "api", "api_users"} {
		b.Run(variant, func(b *testing.B) {
			db := dbtest.New(b)
			ctx := b.Context()
			h := obs.NewHandler(io.Discard, obs.Options{Service: "server"})
			inserter, err := enqueue.NewInsertClient(db.Pool, h)
			if err != nil {
				b.Fatal(err)
			}
			q := store.New(db.Pool)
			users := 1
			if variant == "api_users" {
				users = concurrency
			}
			type client struct {
				user     store.User
				key      string
				strategy store.Strategy
			}
			clients := make([]client, users)
			for u := range clients {
				c := &clients[u]
				if c.user, err = q.EnsureUser(ctx, fmt.Sprintf("bench-%d", u)); err != nil {
					b.Fatal(err)
				}
				var hash []byte
				c.key, hash = httpx.NewAPIKey()
				if err := q.AddAPIKey(ctx, c.user.ID, hash); err != nil {
					b.Fatal(err)
				}
				if c.strategy, err = q.CreateStrategy(ctx, store.NewStrategy{
					UserID: c.user.ID, Name: "s", Kind: "buy_and_hold", Params: []byte(`{}`),
				}); err != nil {
					b.Fatal(err)
				}
			}
			user, strategy := clients[0].user, clients[0].strategy
			srv := httptest.NewServer(httpx.NewServer(slog.New(h), httpx.Deps{
				Queries: q, Enqueuer: enqueue.NewEnqueuer(db.Pool, inserter, 0), DB: db.Pool,
			}))
			defer srv.Close()
			// Each client has its own keep-alive connection, driven by
			// loadgen rather than net/http's client, whose own CPU cost
			// would be charged to the API on these two shared cores.
			reqs := make([][]byte, concurrency)
			for g := range reqs {
				c := clients[g%users]
				body, _ := json.Marshal(map[string]any{
					"strategy_id": c.strategy.ID, "symbol": "ACME", "start": "2020-01-01", "end": "2021-01-01", "initial_cash": 1000,
				})
				reqs[g] = loadgen.Request(http.MethodPost, "/backtests",
					[]string{"Authorization: Bearer " + c.key, "Content-Type: application/json"}, body)
			}
			conns := make([]*loadgen.Conn, concurrency)
			if variant != "bare" {
				for g := range conns {
					if conns[g], err = loadgen.Dial(ctx, srv.Listener.Addr().String()); err != nil {
						b.Fatal(err)
					}
					defer conns[g].Close()
				}
			}

			once := func(g int) error {
				if variant != "bare" {
					status, err := conns[g].Do(reqs[g])
					if err == nil && status != http.StatusAccepted {
						err = fmt.Errorf("status %d", status)
					}
					return err
				}
				return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
					runID := uuid.Must(uuid.NewV7())
					res, err := inserter.InsertTx(ctx, tx, jobargs.Backtest{
						RunID: runID, CorrelationID: "bench",
						UserID: user.ID, StrategyID: strategy.ID,
					}, nil)
					if err != nil {
						return err
					}
					_, err = tx.Exec(ctx, `INSERT INTO backtest_runs
						(id, user_id, strategy_id, correlation_id, river_job_id, symbol, start_date, end_date, initial_cash)
						VALUES ($1, $2, $3, 'bench', $4, 'ACME', '2020-01-01', '2021-01-01', 1000)`,
						runID, user.ID, strategy.ID, res.Job.ID)
					return err
				})
			}

			latencies := make([][]time.Duration, concurrency)
			var wg sync.WaitGroup
			work := make(chan struct{}, b.N)
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			b.ResetTimer()
			start := time.Now()
			for g := range concurrency {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						t0 := time.Now()
						if err := once(g); err != nil {
							b.Error(err)
							return
						}
						latencies[g] = append(latencies[g], time.Since(t0))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			all := slices.Concat(latencies...)
			slices.Sort(all)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "enqueues/s")
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}
