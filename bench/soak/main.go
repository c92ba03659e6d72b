// Command soak runs the server and the worker under steady traffic for a
// while (bounded: -duration) and samples their resident memory, to show
// whether it grows once warm. It makes its own database on the local
// PostgreSQL (-server-url) and drops it at the end.
//
//	go build -o /tmp/bin/ ./cmd/server ./cmd/worker
//	go run ./bench/soak -bin /tmp/bin -duration 5m
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
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
	name := fmt.Sprintf("bt_soak_%d", time.Now().Unix())
	u, err := url.Parse(serverURL)
	if err != nil {
		return fmt.Errorf("server url: %w", err)
	}
	u.Path = "/" + name
	dbURL := u.String()
	defer dropDatabase(serverURL, name)
	env := append(os.Environ(), "DATABASE_URL="+dbURL, "HTTP_ADDR=127.0.0.1:0", "LOG_LEVEL=info")
	if out, err := command(ctx, bin, "server", env, "migrate", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("migrate: %w: %s", err, out)
	}
	keyOut, err := command(ctx, bin, "server", env, "create-api-key", "-user", "soak").Output()
	if err != nil {
		return fmt.Errorf("create key: %w", err)
	}
	key := strings.TrimSpace(string(keyOut))

	server, addr, err := start(ctx, bin, "server", env)
	if err != nil {
		return err
	}
	defer stop(server)
	worker, _, err := start(ctx, bin, "worker", env)
	if err != nil {
		return err
	}
	defer stop(worker)
	base := "http://" + addr
	call := func(method, path string, body any) (map[string]any, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out, nil
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
		s, w := rss(server.Process.Pid), rss(worker.Process.Pid)
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

func command(ctx context.Context, bin, name string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...) //nolint:gosec // our own binaries
	cmd.Env = env
	return cmd
}

// start runs a binary with its log drained, and returns the server's
// address from its server_started line.
func start(ctx context.Context, bin, name string, env []string) (*exec.Cmd, string, error) {
	cmd := command(ctx, bin, name, env)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	rd := bufio.NewReader(stdout)
	for {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			return nil, "", fmt.Errorf("%s ended before it started", name)
		}
		var m map[string]any
		_ = json.Unmarshal(line, &m)
		if m["event"] == name+"_started" {
			go func() { _, _ = io.Copy(io.Discard, rd) }()
			addr, _ := m["addr"].(string)
			return cmd, addr, nil
		}
	}
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
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

func dropDatabase(serverURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
}
