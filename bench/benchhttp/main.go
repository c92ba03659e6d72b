// Command benchhttp measures the request middleware: the same small
// /healthz route served with no middleware, with ours, with go-chi/httplog v3
// behind chi's RequestID, and with gorilla/handlers' LoggingHandler. Each
// server runs as its own process on one core (GOMAXPROCS=1, pinned with
// taskset to the first core when there are two or more), its log on a pipe
// that a reader drains (as under Docker); the load comes from this process,
// on the other cores, over loopback, in short windows that alternate the
// variants round after round. It reports requests per second and the
// server's CPU time per request, as median ratios (min-max) to no
// middleware.
//
//	go build -o /tmp/benchserver ./bench/benchhttp/server
//	go run ./bench/benchhttp -server /tmp/benchserver
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
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backtestd/backtestd/bench/internal/loadgen"
)

func main() {
	server := flag.String("server", "", "the benchmark server binary")
	rounds := flag.Int("rounds", 20, "rounds")
	duration := flag.Duration("duration", 500*time.Millisecond, "load per variant and round")
	conns := flag.Int("conns", 32, "concurrent keep-alive connections")
	profiles := flag.String("cpuprofile-dir", "", "write each server's CPU profile to this directory as <variant>.pprof (the last round's)")
	flag.Parse()
	if err := run(*server, *rounds, *duration, *conns, *profiles); err != nil {
		fmt.Fprintln(os.Stderr, "benchhttp:", err)
		os.Exit(1)
	}
}

// variants are compared with "none". "none-again" is the same server as
// "none", measured as if it were a contender: how far its ratio strays from
// 1 is the noise of the machine. "ours-unlogged" is ours without the access
// line, to tell the line's cost from the correlation ID's.
var variants = []string{"none", "none-again", "ours", "ours-unlogged", "httplog", "gorilla"}

// sample is one variant's round: its throughput, the server's CPU time per
// request, and how busy the server kept its core (near 100% means the load
// saturated it, so throughput measures the server and not the load).
type sample struct{ rps, cpuPerReq, busy float64 }

func run(server string, rounds int, duration time.Duration, conns int, profiles string) error {
	ctx := context.Background()
	prefix := pin(ctx)
	servers := map[string]*target{}
	for _, v := range variants {
		t, err := start(ctx, prefix, server, v, profiles)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		defer t.stop()
		servers[v] = t
		if _, err := t.window(conns, duration); err != nil { // warm-up
			return fmt.Errorf("%s: warm up: %w", v, err)
		}
	}
	results := map[string][]sample{}
	for round := range rounds {
		fmt.Fprintf(os.Stderr, "round %d of %d\n", round+1, rounds)
		for _, v := range variants {
			s, err := servers[v].window(conns, duration)
			if err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
			results[v] = append(results[v], s)
		}
	}
	pinned := "not pinned (no taskset or one core)"
	if prefix != nil {
		pinned = "pinned to core 0, the load on the others"
	}
	fmt.Printf("One core for the server (GOMAXPROCS=1, %s), %d connections, %v per variant and round, %d rounds.\n\n",
		pinned, conns, duration, rounds)
	fmt.Println("| middleware | median req/s | req/s ratio to none: median (min-max) | server CPU µs/req | CPU ratio to none: median (min-max) | server core busy |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, v := range variants {
		var rps, cpu, rr, cr, busy []float64
		for i, s := range results[v] {
			base := results["none"][i]
			rps, cpu, busy = append(rps, s.rps), append(cpu, s.cpuPerReq), append(busy, s.busy)
			rr, cr = append(rr, s.rps/base.rps), append(cr, s.cpuPerReq/base.cpuPerReq)
		}
		fmt.Printf("| %s | %.0f | %.2f (%.2f-%.2f) | %.1f | %.2f (%.2f-%.2f) | %.0f%% |\n", v, median(rps),
			median(rr), slices.Min(rr), slices.Max(rr), median(cpu), median(cr), slices.Min(cr), slices.Max(cr), 100*median(busy))
	}
	return nil
}

// target is one variant's server process, started once and loaded in short
// windows that alternate with the other variants': the machine's neighbours
// change its speed from second to second, and alternating often puts the
// variants of a round under the same conditions.
type target struct {
	cmd   *exec.Cmd
	stdin io.Closer
	addr  string
}

func start(ctx context.Context, prefix []string, server, variant, profiles string) (*target, error) {
	args := append(slices.Clone(prefix), server, "-variant", variant)
	if profiles != "" {
		args = append(args, "-cpuprofile", filepath.Join(profiles, variant+".pprof"))
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...) //nolint:gosec // the binary the caller named
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &target{cmd: cmd, stdin: stdin}
	go func() { _, _ = io.Copy(io.Discard, stdout) }() // the log reader
	addr, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		t.stop()
		return nil, fmt.Errorf("read address: %w", err)
	}
	t.addr = strings.TrimSpace(addr)
	return t, nil
}

func (t *target) stop() {
	_ = t.stdin.Close() // the server stops when its stdin closes
	_ = t.cmd.Wait()
}

// window loads the server from conns connections for d and measures it.
func (t *target) window(conns int, d time.Duration) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cpu0, err := cpuTime(t.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	var n atomic.Int64
	var firstErr atomic.Value
	begin := time.Now()
	deadline := begin.Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := requests(ctx, t.addr, deadline)
			n.Add(k)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if err, ok := firstErr.Load().(error); ok {
		return sample{}, err
	}
	cpu1, err := cpuTime(t.cmd.Process.Pid)
	if err != nil {
		return sample{}, err
	}
	return sample{
		rps:       float64(n.Load()) / elapsed.Seconds(),
		cpuPerReq: float64((cpu1 - cpu0).Microseconds()) / float64(n.Load()),
		busy:      (cpu1 - cpu0).Seconds() / elapsed.Seconds(),
	}, nil
}

// request is the one request the load sends, over and over.
var request = loadgen.Request(http.MethodGet, "/healthz", nil, nil)

// requests sends GET /healthz on one keep-alive connection until the deadline
// and returns how many succeeded. loadgen's client rather than net/http's:
// the load shares a core with the log reader, and a cheap client leaves the
// measurement to the server.
func requests(ctx context.Context, addr string, deadline time.Time) (int64, error) {
	conn, err := loadgen.Dial(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var n int64
	for time.Now().Before(deadline) {
		status, err := conn.Do(request)
		if err != nil {
			return n, err
		}
		if status != http.StatusOK {
			return n, fmt.Errorf("status %d", status)
		}
		n++
	}
	return n, nil
}

// pin confines this process to every core but the first, and returns the
// command prefix that puts the server on the first: the issue asks for the
// server pinned to one core, and a load generator competing for that core
// would blur the comparison. Without taskset or a second core, nothing is
// pinned.
func pin(ctx context.Context) []string {
	if runtime.NumCPU() < 2 {
		return nil
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil
	}
	rest := fmt.Sprintf("1-%d", runtime.NumCPU()-1)
	if err := exec.CommandContext(ctx, "taskset", "-a", "-p", "-c", rest, strconv.Itoa(os.Getpid())).Run(); err != nil {
		return nil
	}
	return []string{"taskset", "-c", "0"}
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
