// Command scale measures how a sweep's throughput grows with the number of
// worker processes on one database, and checks that every run of it ran
// exactly once. For each count of workers it makes a fresh database
// (`server migrate up`), a key (`server create-api-key`), starts the real
// server and that many real workers, posts one sweep of -runs runs and
// polls GET /sweeps/{id} every 200 ms until it is finished. Then it checks
// every run succeeded with one attempt row and one job_completed line
// across the workers' logs, and that runs and jobs agree (the disagree
// recipe of docs/logging.md, read from the document itself: -doc). While
// the sweep drains it samples the CPU of the server, the workers, the
// database's backends and the whole machine from /proc, to say which
// saturates. Run it from the repository's root:
//
//	go build -o /tmp/bin/ ./cmd/server ./cmd/worker
//	go run ./bench/scale -bin /tmp/bin -workers 1,2,3 -rounds 2
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backtestd/backtestd/bench/internal/stack"
)

// pollEvery is how often GET /sweeps/{id} is asked whether the sweep is
// finished, and how often CPU is sampled.
const pollEvery = 200 * time.Millisecond

// clockTicks is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times
// (100 on every Linux this runs on).
const clockTicks = 100

// recipeBlock finds a recipe of docs/logging.md: the fenced block after
// its <!-- kind: name --> marker, as the end-to-end tests find them.
var recipeBlock = regexp.MustCompile("(?s)<!-- ([a-z-]+): ([a-z-]+) -->\n```[a-z]+\n(.*?)```")

// disagreeCount reads docs/logging.md's disagree recipe (runs whose status
// says something their job's state does not) from the document at path,
// and returns it counted.
func disagreeCount(path string) (string, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the disagree recipe: %w", err)
	}
	for _, m := range recipeBlock.FindAllStringSubmatch(string(doc), -1) {
		if m[1] == "sql" && m[2] == "disagree" {
			return "SELECT count(*) FROM (" + strings.TrimSuffix(strings.TrimSpace(m[3]), ";") + ") disagreeing", nil
		}
	}
	return "", fmt.Errorf("%s has no disagree recipe (<!-- sql: disagree -->)", path)
}

type options struct {
	bin         string
	serverURL   string
	workers     []int
	rounds      int
	runs        int
	concurrency string
	// disagreeSQL counts the runs that disagree with their jobs.
	disagreeSQL string
}

func main() {
	var o options
	workers := flag.String("workers", "1,2,3", "counts of worker processes, comma-separated")
	flag.StringVar(&o.bin, "bin", "bin", "directory holding the server and worker binaries")
	flag.StringVar(&o.serverURL, "server-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "the PostgreSQL server")
	flag.IntVar(&o.rounds, "rounds", 1, "rounds of every count of workers, alternating")
	flag.IntVar(&o.runs, "runs", 10_000, "runs of the sweep: an even number, at most 10000 (MAX_SWEEP_RUNS)")
	flag.StringVar(&o.concurrency, "concurrency", "", "WORKER_CONCURRENCY of each worker (empty: the default)")
	doc := flag.String("doc", "docs/logging.md", "the document whose disagree recipe is run")
	flag.Parse()
	for _, w := range strings.Split(*workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "scale: -workers: %q is not a count\n", w)
			os.Exit(2)
		}
		o.workers = append(o.workers, n)
	}
	if o.runs < 2 || o.runs%2 != 0 || o.runs > 10_000 {
		fmt.Fprintln(os.Stderr, "scale: -runs must be even, 2 to 10000")
		os.Exit(2)
	}
	var err error
	if o.disagreeSQL, err = disagreeCount(*doc); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// result is one sweep's measurement with N workers.
type result struct {
	workers       int
	accept        time.Duration // POST /sweeps until its answer
	drain         time.Duration // POST /sweeps until GET reports finished
	runs          int
	cpu           cpuShare
	completedDup  int // runs with more than one job_completed line
	completedMiss int // runs with none
	completedXtra int // job_completed lines of runs not in the sweep
	notSucceeded  int
	badAttempts   int // runs without exactly one attempt row
	disagree      int
	jobBytes      int64 // river_job's size after the sweep, per run
	runBytes      int64 // backtest_runs' and backtest_run_attempts', per run
	walBytes      int64 // WAL written by the whole cluster during the drain, per run
}

// cpuShare is each part's CPU over the drain, in cores.
type cpuShare struct {
	server, workers, backends, postgres, machine float64
}

func run(o options) error {
	var results []result
	for round := 1; round <= o.rounds; round++ {
		for _, n := range o.workers {
			fmt.Fprintf(os.Stderr, "round %d: %d worker(s)\n", round, n)
			r, err := measure(o, n, round)
			if err != nil {
				return fmt.Errorf("%d workers: %w", n, err)
			}
			results = append(results, r)
			fmt.Fprintf(os.Stderr, "  %.0f runs/s\n", float64(r.runs)/r.drain.Seconds())
		}
	}
	return report(o, results)
}

func report(o options, results []result) error {
	// Each sweep is compared with one worker's mean rate over the rounds:
	// with one or two rounds a median says no more.
	base := map[int]float64{}
	count := map[int]int{}
	for _, r := range results {
		base[r.workers] += float64(r.runs) / r.drain.Seconds()
		count[r.workers]++
	}
	one := base[1] / float64(max(count[1], 1))
	fmt.Printf("sweep of %d runs, WORKER_CONCURRENCY=%s per worker, %d round(s); CPU in cores (this machine has %d)\n\n",
		o.runs, orDefault(o.concurrency), o.rounds, cores())
	fmt.Println("| workers | accepted in | drained in | runs/s | vs 1 worker | CPU: workers | server | our db's backends | all postgres | machine busy | exactly once | bytes per run: river_job | runs, attempts | WAL (whole cluster) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	failed := false
	for _, r := range results {
		rate := float64(r.runs) / r.drain.Seconds()
		ratio := "-"
		if one > 0 {
			ratio = fmt.Sprintf("%.2f", rate/one)
		}
		once := "yes"
		if r.completedDup+r.completedMiss+r.completedXtra+r.notSucceeded+r.badAttempts+r.disagree > 0 {
			once = fmt.Sprintf("**no**: %d duplicate, %d missing, %d extra job_completed; %d not succeeded; %d without one attempt; %d disagree",
				r.completedDup, r.completedMiss, r.completedXtra, r.notSucceeded, r.badAttempts, r.disagree)
			failed = true
		}
		fmt.Printf("| %d | %.2f s | %.2f s | %.0f | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %d | %d | %d |\n",
			r.workers, r.accept.Seconds(), r.drain.Seconds(), rate, ratio,
			r.cpu.workers, r.cpu.server, r.cpu.backends, r.cpu.postgres, r.cpu.machine, once,
			r.jobBytes, r.runBytes, r.walBytes)
	}
	if failed {
		return errors.New("a sweep did not run every run exactly once")
	}
	return nil
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

func measure(o options, n, round int) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var env []string
	if o.concurrency != "" {
		env = append(env, "WORKER_CONCURRENCY="+o.concurrency)
	}
	st, err := stack.New(ctx, o.bin, o.serverURL, fmt.Sprintf("bt_scale_%d_%d_%d", time.Now().Unix(), n, round), "scale", env...)
	if err != nil {
		return result{}, err
	}
	defer st.Close()
	server, err := st.Start(ctx, "server", nil)
	if err != nil {
		return result{}, err
	}
	defer server.Stop()
	completed := &completions{byRun: map[string]int{}}
	workers := make([]*stack.Process, 0, n)
	defer func() {
		for _, w := range workers {
			w.Stop()
		}
	}()
	for range n {
		w, err := st.Start(ctx, "worker", completed.scan)
		if err != nil {
			return result{}, err
		}
		workers = append(workers, w)
	}
	conn, err := pgx.Connect(ctx, st.DBURL)
	if err != nil {
		return result{}, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)

	api := st.Client(server)
	half := o.runs / 2 // fast windows × slow windows × 2 symbols
	fast, slow := grid(half)
	began := time.Now()
	sampler := newSampler(conn, st.Name, server.Cmd.Process.Pid, pids(workers))
	sampler.sample(ctx)
	var walStart string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walStart); err != nil {
		return result{}, fmt.Errorf("wal position: %w", err)
	}
	created, err := api.Call(ctx, http.MethodPost, "/sweeps", map[string]any{
		"kind": "sma_crossover", "params_grid": map[string][]int{"fast_window": fast, "slow_window": slow},
		"symbols": []string{"ACME", "BETA"}, "start": "2023-01-01", "end": "2023-12-31", "initial_cash": 10000,
	}, http.StatusAccepted)
	if err != nil {
		return result{}, fmt.Errorf("post sweep: %w", err)
	}
	accept := time.Since(began)
	id, _ := created["sweep_id"].(string)
	if rc, _ := created["run_count"].(float64); int(rc) != o.runs {
		return result{}, fmt.Errorf("sweep made %v runs, want %d", created["run_count"], o.runs)
	}
	for {
		time.Sleep(pollEvery)
		sampler.sample(ctx)
		got, err := api.Call(ctx, http.MethodGet, "/sweeps/"+id, nil, http.StatusOK)
		if err != nil {
			return result{}, fmt.Errorf("get sweep: %w", err)
		}
		if got["status"] == "finished" {
			break
		}
		if st, _ := got["status"].(string); st == "cancelled" {
			return result{}, fmt.Errorf("sweep %s cancelled", id)
		}
	}
	drain := time.Since(began)
	cpu := sampler.share(drain)
	var wal int64
	if err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint`, walStart).Scan(&wal); err != nil {
		return result{}, fmt.Errorf("wal written: %w", err)
	}

	// Every job_completed line is written once the worker stops: its log
	// drained to the end.
	for _, w := range workers {
		w.Stop()
	}
	workers = nil
	r := result{workers: n, accept: accept, drain: drain, runs: o.runs, cpu: cpu, walBytes: wal / int64(o.runs)}
	if err := check(ctx, conn, o.disagreeSQL, id, completed, &r); err != nil {
		return result{}, err
	}
	return r, nil
}

// grid is fast and slow windows whose cross product is half runs, every
// fast window below every slow one: none refused.
func grid(half int) (fast, slow []int) {
	nf := 1
	for f := 50; f >= 1; f-- {
		if half%f == 0 {
			nf = f
			break
		}
	}
	for i := range nf {
		fast = append(fast, 2+i)
	}
	for i := range half / nf {
		slow = append(slow, 60+i)
	}
	return fast, slow
}

func check(ctx context.Context, conn *pgx.Conn, disagreeSQL, sweepID string, completed *completions, r *result) error {
	rows, err := conn.Query(ctx, `SELECT id::text, status, (SELECT count(*) FROM backtest_run_attempts a WHERE a.run_id = r.id)
		FROM backtest_runs r WHERE sweep_id = $1`, sweepID)
	if err != nil {
		return fmt.Errorf("runs: %w", err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var id, status string
		var attempts int
		if err := rows.Scan(&id, &status, &attempts); err != nil {
			return fmt.Errorf("runs: %w", err)
		}
		seen[id] = true
		if status != "succeeded" {
			r.notSucceeded++
		}
		if attempts != 1 {
			r.badAttempts++
		}
		switch completed.byRun[id] {
		case 0:
			r.completedMiss++
		case 1:
		default:
			r.completedDup++
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("runs: %w", err)
	}
	if len(seen) != r.runs {
		return fmt.Errorf("the sweep has %d runs in the database, want %d", len(seen), r.runs)
	}
	for id := range completed.byRun {
		if !seen[id] {
			r.completedXtra++
		}
	}
	if err := conn.QueryRow(ctx, disagreeSQL).Scan(&r.disagree); err != nil {
		return fmt.Errorf("disagree: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT pg_total_relation_size('river_job'),
		pg_total_relation_size('backtest_runs') + pg_total_relation_size('backtest_run_attempts')`).Scan(&r.jobBytes, &r.runBytes); err != nil {
		return fmt.Errorf("table sizes: %w", err)
	}
	r.jobBytes /= int64(r.runs)
	r.runBytes /= int64(r.runs)
	return nil
}

// completions counts job_completed lines by run_id across the workers.
type completions struct {
	mu    sync.Mutex
	byRun map[string]int
}

func (c *completions) scan(line []byte) {
	if !bytes.Contains(line, []byte(`"job_completed"`)) {
		return
	}
	var m struct {
		Event string `json:"event"`
		RunID string `json:"run_id"`
	}
	if json.Unmarshal(line, &m) != nil || m.Event != "job_completed" {
		return
	}
	c.mu.Lock()
	c.byRun[m.RunID]++
	c.mu.Unlock()
}

// sampler adds up the CPU ticks of the processes of a measurement between
// its first and last sample.
type sampler struct {
	conn              *pgx.Conn
	db                string
	server            int
	workers           []int
	first, last       map[int]int64 // ticks by pid, at first and last sight
	role              map[int]string
	machine0, machine [2]int64 // busy, total jiffies of /proc/stat
}

func newSampler(conn *pgx.Conn, db string, server int, workers []int) *sampler {
	return &sampler{
		conn: conn, db: db, server: server, workers: workers,
		first: map[int]int64{}, last: map[int]int64{}, role: map[int]string{},
	}
}

func (s *sampler) sample(ctx context.Context) {
	see := func(pid int, role string) {
		t, ok := ticks(pid)
		if !ok {
			return
		}
		if _, seen := s.first[pid]; !seen {
			s.first[pid] = t
			s.role[pid] = role
		}
		s.last[pid] = t
	}
	see(s.server, "server")
	for _, w := range s.workers {
		see(w, "workers")
	}
	// Our database's backends: the sampling connection's own is among them,
	// idle but for these queries.
	rows, err := s.conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, s.db)
	if err == nil {
		for rows.Next() {
			var pid int
			if rows.Scan(&pid) == nil {
				see(pid, "backends")
			}
		}
		rows.Close()
	}
	// Every postgres process, others' databases and the WAL writer and
	// checkpointer included: the machine is shared.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(comm)) == "postgres" {
			if _, ok := s.role[pid]; !ok || s.role[pid] == "postgres" {
				see(pid, "postgres")
			}
		}
	}
	busy, total := machineJiffies()
	if s.machine0 == [2]int64{} {
		s.machine0 = [2]int64{busy, total}
	}
	s.machine = [2]int64{busy, total}
}

func (s *sampler) share(over time.Duration) cpuShare {
	sum := map[string]float64{}
	for pid, f := range s.first {
		sum[s.role[pid]] += float64(s.last[pid]-f) / clockTicks
	}
	secs := over.Seconds()
	out := cpuShare{
		server: sum["server"] / secs, workers: sum["workers"] / secs,
		backends: sum["backends"] / secs, postgres: (sum["backends"] + sum["postgres"]) / secs,
	}
	if d := s.machine[1] - s.machine0[1]; d > 0 {
		out.machine = float64(cores()) * float64(s.machine[0]-s.machine0[0]) / float64(d)
	}
	return out
}

// ticks is a process's user and system CPU time so far, in clock ticks.
func ticks(pid int) (int64, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing one.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime, true
}

// machineJiffies is the whole machine's busy and total CPU time.
func machineJiffies() (busy, total int64) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

func cores() int {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(stat), "\n") {
		if strings.HasPrefix(line, "cpu") && !strings.HasPrefix(line, "cpu ") {
			n++
		}
	}
	return n
}

func pids(ps []*stack.Process) []int {
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Cmd.Process.Pid)
	}
	return out
}
