// Command soak runs the server and the worker under steady traffic for a
// while (bounded: -duration) and samples their resident memory, to show
// whether it grows once warm. It makes its own database on the local
// PostgreSQL (-server-url) and drops it at the end.
//
//	go build -o /tmp/bin/ ./cmd/server ./cmd/worker
//	go run ./bench/soak -bin /tmp/bin -duration 5m
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/backtestd/backtestd/bench/internal/stack"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding the server and worker binaries")
	duration := flag.Duration("duration", 5*time.Minute, "how long the traffic runs")
	clients := flag.Int("clients", 16, "concurrent clients")
	serverURL := flag.String("server-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "the PostgreSQL server")
	flag.Parse()
	if err := run(*bin, *duration, *clients, *serverURL); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type sample struct {
	at             time.Duration
	server, worker int64 // KiB
}

func run(bin string, duration time.Duration, clients int, serverURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), duration+2*time.Minute)
	defer cancel()
	st, err := stack.New(ctx, bin, serverURL, fmt.Sprintf("bt_soak_%d", time.Now().Unix()), "soak")
	if err != nil {
		return err
	}
	defer st.Close()
	server, err := st.Start(ctx, "server", nil)
	if err != nil {
		return err
	}
	defer server.Stop()
	worker, err := st.Start(ctx, "worker", nil)
	if err != nil {
		return err
	}
	defer worker.Stop()
	api := st.Client(server)
	// The soak only has to send its load: any status will do.
	call := func(method, path string, body any) (map[string]any, error) {
		return api.Call(ctx, method, path, body, 0)
	}
	strategy, err := call(http.MethodPost, "/strategies", map[string]any{
		"kind": "sma_crossover", "params": map[string]int{"fast_window": 5, "slow_window": 20},
	})
	if err != nil {
		return fmt.Errorf("create strategy: %w", err)
	}

	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	var mu sync.Mutex
	requests := 0
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				out, err := call(http.MethodPost, "/backtests", map[string]any{
					"strategy_id": strategy["id"], "symbol": "ACME", "start": "2024-01-01", "end": "2024-07-01", "initial_cash": 1000,
				})
				if err != nil {
					return
				}
				id, _ := out["run_id"].(string)
				_, _ = call(http.MethodGet, "/backtests/"+id, nil)
				mu.Lock()
				requests += 2
				mu.Unlock()
			}
		}()
	}
	var samples []sample
	began := time.Now()
	for time.Now().Before(deadline) {
		s, w := rss(server.Cmd.Process.Pid), rss(worker.Cmd.Process.Pid)
		samples = append(samples, sample{at: time.Since(began), server: s, worker: w})
		time.Sleep(10 * time.Second)
	}
	wg.Wait()
	report(samples, requests, duration)
	return nil
}

func report(samples []sample, requests int, duration time.Duration) {
	warm := samples[0]
	for _, s := range samples {
		if s.at >= time.Minute {
			warm = s
			break
		}
	}
	last := samples[len(samples)-1]
	maxOf := func(f func(sample) int64) int64 {
		m := int64(0)
		for _, s := range samples {
			m = max(m, f(s))
		}
		return m
	}
	fmt.Printf("%v of traffic, %d requests, %d samples\n\n", duration, requests, len(samples))
	fmt.Println("| process | RSS after 1 min | RSS at the end | max | growth after warm-up |")
	fmt.Println("|---|---|---|---|---|")
	for _, p := range []struct {
		name string
		f    func(sample) int64
	}{{"server", func(s sample) int64 { return s.server }}, {"worker", func(s sample) int64 { return s.worker }}} {
		w, l := p.f(warm), p.f(last)
		fmt.Printf("| %s | %d MiB | %d MiB | %d MiB | %+.1f%% |\n", p.name, w>>10, l>>10, maxOf(p.f)>>10, 100*float64(l-w)/float64(w))
	}
}

// rss is a process's resident set, in KiB.
func rss(pid int) int64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
