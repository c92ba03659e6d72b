// Command benchhttp measures the request middleware: the same gorilla/mux
// "hello" route served with no middleware, with ours, with go-chi/httplog v3
// behind chi's RequestID, and with gorilla/handlers' LoggingHandler. Each
// server runs as its own process limited to one core (GOMAXPROCS=1), its log
// on a pipe that a reader drains (as under Docker); the load comes from this
// process over loopback, in rounds that alternate the variants. It reports
// requests per second and the server's CPU time per request, as median
// ratios (min-max) to no middleware.
//
//	go build -o /tmp/benchserver ./scripts/benchhttp/server
//	go run ./scripts/benchhttp -server /tmp/benchserver
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	server := flag.String("server", "", "the benchmark server binary")
	rounds := flag.Int("rounds", 5, "rounds")
	duration := flag.Duration("duration", 2*time.Second, "load per variant and round")
	conns := flag.Int("conns", 32, "concurrent keep-alive connections")
	flag.Parse()
	if err := run(*server, *rounds, *duration, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "benchhttp:", err)
		os.Exit(1)
	}
}

var variants = []string{"none", "ours", "httplog", "gorilla"}

type sample struct{ rps, cpuPerReq float64 }

func run(server string, rounds int, duration time.Duration, conns int) error {
	results := map[string][]sample{}
	for round := range rounds {
		fmt.Fprintf(os.Stderr, "round %d of %d\n", round+1, rounds)
		for _, v := range variants {
			s, err := measure(server, v, duration, conns)
			if err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
			results[v] = append(results[v], s)
		}
	}
	fmt.Printf("One core for the server, %d connections, %v per variant and round, %d rounds.\n\n", conns, duration, rounds)
	fmt.Println("| middleware | median req/s | req/s ratio to none: median (min-max) | server CPU µs/req | CPU ratio to none: median (min-max) |")
	fmt.Println("|---|---|---|---|---|")
	for _, v := range variants {
		var rps, cpu, rr, cr []float64
		for i, s := range results[v] {
			base := results["none"][i]
			rps, cpu = append(rps, s.rps), append(cpu, s.cpuPerReq)
			rr, cr = append(rr, s.rps/base.rps), append(cr, s.cpuPerReq/base.cpuPerReq)
		}
		fmt.Printf("| %s | %.0f | %.2f (%.2f-%.2f) | %.1f | %.2f (%.2f-%.2f) |\n", v, median(rps),
			median(rr), slices.Min(rr), slices.Max(rr), median(cpu), median(cr), slices.Min(cr), slices.Max(cr))
	}
	return nil
}

func measure(server, variant string, duration time.Duration, conns int) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, server, "-variant", variant)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return sample{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return sample{}, err
	}
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	go func() { _, _ = io.Copy(io.Discard, stdout) }() // the log reader
	addr, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		return sample{}, fmt.Errorf("read address: %w", err)
	}
	url := "http://" + strings.TrimSpace(addr) + "/hello"
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}}

	load := func(d time.Duration) (int64, error) {
		var n atomic.Int64
		var firstErr atomic.Value
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
					resp, err := hc.Do(req)
					if err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		if err, ok := firstErr.Load().(error); ok {
			return n.Load(), err
		}
		return n.Load(), nil
	}
	if _, err := load(duration / 4); err != nil { // warm-up
		return sample{}, err
	}
	cpu0, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	n, err := load(duration)
	elapsed := time.Since(start)
	if err != nil {
		return sample{}, err
	}
	cpu1, err := cpuTime(cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	return sample{rps: float64(n) / elapsed.Seconds(), cpuPerReq: float64((cpu1 - cpu0).Microseconds()) / float64(n)}, nil
}

// cpuTime is a process's user plus system time, from /proc.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat: %w", err)
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

func median(vals []float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	return s[len(s)/2]
}
