// Package e2e runs the real binaries against a fresh schema and checks the
// log contract on their combined output with the real jq.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	apidoc "github.com/backtestd/backtestd/api"
	apiclient "github.com/backtestd/backtestd/api/client"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// binDir holds the built binaries once built is closed, unless buildErr
// says why not.
var (
	binDir   string
	built    = make(chan struct{})
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "backtestd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// The build runs while the tests start: they make their schemas
	// meanwhile, and wait for it only to start a binary (binary).
	go func() {
		defer close(built)
		buildErr = buildBinaries(dir)
	}()
	code := dbtest.Main(m)
	<-built // the build may outlast a run that starts no binary
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinaries builds the server and the worker into dir, in one go build
// (which links them in parallel).
func buildBinaries(dir string) error {
	// The binaries run with the race detector, unless E2E_NO_RACE is set:
	// for figures (memory, say) of the binaries as they ship.
	// The worker is built with fault injection (-tags faultinject): the
	// fault tests need its fault symbols, which a production build lacks.
	args := []string{"build", "-race", "-tags", "faultinject", "-o", dir + string(os.PathSeparator), "../cmd/server", "../cmd/worker"}
	if os.Getenv("E2E_NO_RACE") != "" {
		args = slices.Delete(args, 1, 2)
	}
	build := exec.CommandContext(context.Background(), "go", args...)
	var out bytes.Buffer
	build.Stdout, build.Stderr = &out, &out
	if err := build.Run(); err != nil {
		return fmt.Errorf("build binaries: %w\n%s", err, out.String())
	}
	return nil
}

// exitSleep is the GORACE option the binaries run with. ThreadSanitizer,
// under the race detector, sleeps atexit_sleep_ms (1 s by default) before
// every exit, to let other threads finish a report: a second on every stop
// and every command of every test. 50 ms still lets a report in progress
// finish, and a race still makes the exit status 66, which fails the test.
const exitSleep = "atexit_sleep_ms=50"

// goraceEnv is the GORACE entry of the binaries' environment: exitSleep,
// then the test process's own GORACE, which wins.
func goraceEnv() string {
	return "GORACE=" + strings.TrimSpace(exitSleep+" "+os.Getenv("GORACE"))
}

// binary returns the command that runs one of the built binaries with env
// (and goraceEnv), once they are built; ctx ends it.
func binary(ctx context.Context, t *testing.T, name string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	select {
	case <-built:
	case <-ctx.Done():
		t.Fatalf("waiting for the build of the binaries: %v", ctx.Err())
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...) //nolint:gosec // our own binary
	cmd.Env = append(slices.Clip(env), goraceEnv())
	return cmd
}

// process is a running binary whose stdout goes to a file.
type process struct {
	cmd    *exec.Cmd
	stdout string
	stderr *bytes.Buffer
	done   chan error
}

func start(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(out)
	require.NoError(t, err)
	// Killed when the test ends, if a failed test did not stop it.
	cmd := binary(t.Context(), t, name, env, args...)
	cmd.Stdout = f
	p := &process{cmd: cmd, stdout: out, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	require.NoError(t, cmd.Start())
	go func() {
		p.done <- cmd.Wait()
		_ = f.Close()
	}()
	// Every line of every test keeps the log contract. Registered first, so
	// it runs last: after the process has exited and its file is closed.
	t.Cleanup(func() {
		if !t.Failed() {
			requireSchema(t, p.rawLines(t))
		}
	})
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done //nolint:errcheck // a killed process's exit status says nothing
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		require.NoError(t, err, "stderr: %s", p.stderr)
		p.done <- err // for Cleanup
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop", p.cmd.Path)
	}
}

func (p *process) rawLines(t *testing.T) [][]byte {
	t.Helper()
	data, err := os.ReadFile(p.stdout)
	require.NoError(t, err)
	return splitLines(string(data))
}

// splitLines returns the non-empty lines of output.
func splitLines(output string) [][]byte {
	data := []byte(output)
	var out [][]byte
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

func (p *process) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range p.rawLines(t) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "not JSON: %q", line)
		out = append(out, m)
	}
	return out
}

// pollLines spaces the reads of a process's output while a test waits for
// a line.
const pollLines = 50 * time.Millisecond

// awaitLine reads p's lines until find returns one of them, and returns
// it. It fails t after within, or as soon as p has exited without the
// line; what names the line in a failure. Every wait for a line is this
// one loop.
func (p *process) awaitLine(t *testing.T, within time.Duration, what string,
	find func([]map[string]any) map[string]any,
) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if l := find(p.lines(t)); l != nil {
			return l
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("no %s line from %s within %v", what, p.cmd.Path, within)
		}
		select {
		case err := <-p.done:
			p.done <- err // for Cleanup, which would wait for it forever
			// The process wrote its output itself: all of it is in the
			// file now, the line perhaps last.
			if l := find(p.lines(t)); l != nil {
				return l
			}
			t.Fatalf("%s exited (%v) before %s; stderr: %s", p.cmd.Path, err, what, p.stderr)
		case <-time.After(pollLines):
		}
	}
}

// waitLine waits up to within for the first line of p that match accepts.
func (p *process) waitLine(t *testing.T, within time.Duration, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	return p.awaitLine(t, within, what, func(lines []map[string]any) map[string]any {
		for _, l := range lines {
			if match(l) {
				return l
			}
		}
		return nil
	})
}

// waitFor waits for p's first line of event.
func (p *process) waitFor(t *testing.T, event string) map[string]any {
	t.Helper()
	return p.waitLine(t, time.Minute, event, func(l map[string]any) bool { return l[obs.KeyEvent] == event })
}

func runCommand(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := binary(t.Context(), t, name, env, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %v: %s", name, args, stderr.String())
	return string(out)
}

// client talks to the API with one user's key.
type client struct {
	base, key string
}

func (c client) do(t *testing.T, method, path, correlationID string, body any) (*http.Response, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, c.base+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	if correlationID != "" {
		req.Header.Set("X-Correlation-ID", correlationID)
	}
	resp, err := checkedClient(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return resp, m
}

// Events that belong to a process, not to a request or a job.
var processEvents = map[string]bool{
	obs.EventServerStarted: true, obs.EventServerStopping: true, obs.EventServerStopped: true,
	obs.EventWorkerStarted: true, obs.EventWorkerStopping: true, obs.EventWorkerStopped: true,
	obs.EventRiverLog: true, obs.EventHTTPServerLog: true, obs.EventGooseLog: true,
	obs.EventKeyListenerStarted: true, obs.EventKeyListenerFailed: true, obs.EventAPIKeyInvalidated: true,
}

// stack is the service running from its binaries on a fresh schema.
type stack struct {
	server, worker *process
	api            client
	dbURL          string
	// db is a pool on the stack's schema (or database), for the test's
	// own reads and writes.
	db  *pgxpool.Pool
	env []string // the processes' environment
}

// newStack migrates a new schema, creates an API key, and starts the server
// and the worker with extraEnv.
func newStack(t *testing.T, extraEnv ...string) *stack {
	t.Helper()
	return newStackWith(t, stackOptions{env: extraEnv})
}

// stackOptions vary a stack for the fault tests.
type stackOptions struct {
	env []string
	// via, if set, gives the database URL the processes use (a proxy's).
	via func(dbURL string) string
	// workerEnv is added to the worker's environment only.
	workerEnv []string
	// ownDatabase gives the stack a database of its own, which `server
	// migrate up` creates, rather than a schema of the test process's
	// database: for tests of what reaches a whole database (NOTIFY).
	ownDatabase bool
}

func newStackWith(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	var (
		dbURL, key string
		db         *pgxpool.Pool
	)
	envOf := func() []string {
		return append([]string{
			"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL, "HTTP_ADDR=127.0.0.1:0",
			"SHUTDOWN_TIMEOUT=5s", "WORKER_CONCURRENCY=2",
		}, opts.env...)
	}
	if opts.ownDatabase {
		// The operator's way, with the binaries: `server migrate up` creates
		// and migrates the database, `server create-api-key` makes the key.
		_, dbURL = dbtest.NewEmpty(t)
		requireSchema(t, splitLines(runCommand(t, envOf(), "server", "migrate", "up")))
		key = strings.TrimSpace(runCommand(t, envOf(), "server", "create-api-key", "-user", "e2e"))
		var err error
		db, err = pgxpool.New(t.Context(), dbURL) // no connection until used
		require.NoError(t, err)
		t.Cleanup(db.Close)
	} else {
		var schema *dbtest.DB
		schema, key = migratedSchema(t)
		dbURL, db = schema.URL, schema.Pool
	}
	env := envOf()
	require.True(t, strings.HasPrefix(key, "bt_"))
	if opts.via != nil {
		env = append(env, "DATABASE_URL="+opts.via(dbURL)) // the last one wins
	}
	s := &stack{server: start(t, "server", env), worker: start(t, "worker", append(slices.Clip(env), opts.workerEnv...)), dbURL: dbURL, db: db, env: env}
	addr, _ := s.server.waitFor(t, obs.EventServerStarted)[obs.KeyAddr].(string)
	// Until its key listener listens, the server caches no key: a test that
	// counts on a cached key (a limited address, a frozen database) would
	// depend on how fast the listener started.
	s.server.waitFor(t, obs.EventKeyListenerStarted)
	s.worker.waitFor(t, obs.EventWorkerStarted)
	s.api = client{base: "http://" + addr, key: key}
	return s
}

// migratedSchema returns a new migrated schema of the test process's
// database (its URL reaches it through search_path), and an API key of its
// user "e2e", both made in-process: a database costs seconds to create and
// drop on a busy machine, each start of a race-built binary about one, and
// the binaries' migrations would take turns on goose's database-wide lock.
// The tests on databases of their own cover `migrate up` and
// `create-api-key`.
func migratedSchema(t *testing.T) (db *dbtest.DB, key string) {
	t.Helper()
	db = dbtest.New(t)
	q := store.New(db.Pool)
	u, err := q.EnsureUser(t.Context(), "e2e")
	require.NoError(t, err)
	key, hash := httpx.NewAPIKey()
	_, err = q.CreateAPIKey(t.Context(), u.ID, hash, httpx.PublicPrefix(key))
	require.NoError(t, err)
	return db, key
}

// createStrategy saves an sma_crossover strategy, through the generated
// client, and returns its ID.
func (c client) createStrategy(t *testing.T, fast, slow int) string {
	t.Helper()
	name := "e2e"
	resp, err := c.generated(t).CreateStrategyWithResponse(t.Context(), nil, apiclient.NewStrategy{
		Name: &name, Kind: apiclient.SmaCrossover, Params: &apiclient.StrategyParams{FastWindow: &fast, SlowWindow: &slow},
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, resp.StatusCode(), string(resp.Body))
	require.NotNil(t, resp.JSON201)
	return resp.JSON201.Id.String()
}

// waitFinished polls a run, through the generated client, until it is
// final, and returns it.
func (c client) waitFinished(t *testing.T, runID string) map[string]any {
	t.Helper()
	gc := c.generated(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := gc.GetBacktestWithResponse(t.Context(), runID, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
		switch resp.JSON200.Status {
		case apiclient.RunStatusSucceeded, apiclient.RunStatusFailed, apiclient.RunStatusCancelled:
			var body map[string]any
			require.NoError(t, json.Unmarshal(resp.Body, &body))
			return body
		}
		require.True(t, time.Now().Before(deadline), "run %s did not finish", runID)
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRequestAndJobShareOneCorrelationID(t *testing.T) {
	t.Parallel()
	jq, err := exec.LookPath("jq")
	require.NoError(t, err, "the end-to-end test needs the jq binary")
	// GAP (fault injection) gives the worker half the range's bars: how a
	// run can still fail for too few bars, the API refusing short ranges.
	st := newStack(t, "FAULT_INJECTION=1")
	server, worker, api, dbURL := st.server, st.worker, st.api, st.dbURL
	gc := api.generated(t)
	good := api.createStrategy(t, 5, 20)
	gappy := api.createStrategy(t, 5, 100)
	tooLong := api.createStrategy(t, 5, 200)
	backtestOf := func(strategy, symbol string) apiclient.NewBacktest {
		return apiclient.NewBacktest{
			StrategyId: uuid.MustParse(strategy), Symbol: symbol,
			Start: apiDate(t, "2025-01-01"), End: apiDate(t, "2025-07-01"), InitialCash: 10000,
		}
	}

	// The document the server serves is the one the client was made from.
	doc, err := gc.GetOpenAPIWithResponse(t.Context(), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, doc.StatusCode())
	require.Equal(t, string(apidoc.JSON()), string(doc.Body))

	// A range too short for the strategy is refused up front, writing
	// nothing: 200 bars wanted, about 130 in the range.
	refused, err := gc.CreateBacktestWithResponse(t.Context(), nil, backtestOf(tooLong, "ACME"))
	require.NoError(t, err)
	require.Equal(t, http.StatusUnprocessableEntity, refused.StatusCode(), string(refused.Body))
	problem := refused.ApplicationproblemJSON422
	require.NotNil(t, problem)
	require.Equal(t, "/problems/unprocessable", problem.Type)
	require.NotNil(t, problem.InvalidParams)
	require.Len(t, *problem.InvalidParams, 1)
	require.Equal(t, "end", (*problem.InvalidParams)[0].Name)
	require.Contains(t, (*problem.InvalidParams)[0].Reason, "needs at least 200 bars")
	require.Equal(t, refused.HTTPResponse.Header.Get("X-Correlation-ID"), problem.CorrelationId)

	type submitted struct {
		name, correlationID, runID string
		wantStatus                 string
	}
	given := "bug-report-" + uuid.NewString()[:8]
	runs := []*submitted{
		{name: "with header", correlationID: given, wantStatus: "succeeded"},
		{name: "without header", wantStatus: "succeeded"},
		{name: "fails at run time", wantStatus: "failed"},
	}
	for _, r := range runs {
		nb := backtestOf(good, "ACME")
		if r.wantStatus == "failed" {
			nb = backtestOf(gappy, "GAP") // 100 bars wanted, about 65 given
		}
		resp, err := gc.CreateBacktestWithResponse(t.Context(), nil, nb, withCorrelationID(r.correlationID))
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, resp.StatusCode(), string(resp.Body))
		cid := resp.HTTPResponse.Header.Get("X-Correlation-ID")
		require.Equal(t, cid, resp.JSON202.CorrelationId)
		require.Equal(t, apiclient.RunStatusQueued, resp.JSON202.Status)
		if r.correlationID != "" {
			require.Equal(t, r.correlationID, cid, "a valid client ID is reused")
		} else {
			u, err := uuid.Parse(cid)
			require.NoError(t, err)
			require.Equal(t, uuid.Version(7), u.Version())
			r.correlationID = cid
		}
		r.runID = resp.JSON202.RunId.String()
		require.Equal(t, "/backtests/"+r.runID, resp.HTTPResponse.Header.Get("Location"))
	}

	// A client's unusable ID is replaced, and logged once.
	resp, _ := api.do(t, http.MethodGet, "/healthz", "bad value", nil)
	require.NotEqual(t, "bad value", resp.Header.Get("X-Correlation-ID"))

	for _, r := range runs {
		body := api.waitFinished(t, r.runID)
		require.Equal(t, r.wantStatus, body["status"], r.name)
		require.Equal(t, r.correlationID, body["correlation_id"])
		if r.wantStatus == "failed" {
			e, _ := body["error"].(map[string]any)
			require.Contains(t, e["message"], "needs at least 100 bars")
			require.NotContains(t, e, "traceback", "the API shows no stack")
		}
		resp, body := api.do(t, http.MethodGet, "/backtests?correlation_id="+r.correlationID, "", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		found, _ := body["runs"].([]any)
		require.Len(t, found, 1, "runs are found by correlation ID")
	}

	server.stop(t)
	worker.stop(t)

	// Every line of both processes is JSON; request and job lines all carry
	// a correlation ID.
	all := append(server.lines(t), worker.lines(t)...)
	scoped, withID := 0, 0
	for _, l := range all {
		for _, k := range []string{obs.KeyTimestamp, obs.KeyLevel, obs.KeyEvent, obs.KeyService} {
			require.NotEmpty(t, l[k], "%s missing: %v", k, l)
		}
		if ev, _ := l[obs.KeyEvent].(string); processEvents[ev] {
			continue
		}
		scoped++
		if l[obs.KeyCorrelationID] != nil && l[obs.KeyCorrelationID] != "" {
			withID++
		}
	}
	require.Equal(t, scoped, withID, "every request and job line carries correlation_id")
	for _, p := range []*process{server, worker} {
		out := string(readAll(t, p.stdout))
		require.NotContains(t, out, api.key, "API keys never reach the logs")
		require.NotContains(t, out, "Bearer")
		require.NotContains(t, strings.ToLower(out), "authorization")
	}
	t.Logf("lines: %d in all, %d request or job lines, %d (%.0f%%) with correlation_id",
		len(all), scoped, withID, 100*float64(withID)/float64(max(scoped, 1)))
	require.Equal(t, obs.EventServerStopped, server.lines(t)[len(server.lines(t))-1][obs.KeyEvent])
	require.Equal(t, obs.EventWorkerStopped, worker.lines(t)[len(worker.lines(t))-1][obs.KeyEvent])

	// The developer's recipe, with the real jq, over both outputs merged.
	merged := filepath.Join(t.TempDir(), "merged.log")
	var both []byte
	for _, p := range []*process{server, worker} {
		both = append(both, readAll(t, p.stdout)...)
	}
	require.NoError(t, os.WriteFile(merged, both, 0o600))
	runIDs := map[string]bool{}
	for _, r := range runs {
		runIDs[r.runID] = true
	}
	for _, r := range runs {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		out, err := exec.CommandContext(ctx, jq, "-cR", "--arg", "id", r.correlationID,
			`fromjson? | select(.correlation_id == $id)`, merged).Output()
		cancel()
		require.NoError(t, err)
		events := map[string]int{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(make([]byte, obs.MaxLineBytes), obs.MaxLineBytes)
		for sc.Scan() {
			var l map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
			ev, _ := l[obs.KeyEvent].(string)
			events[ev]++
			if rid, ok := l[obs.KeyRunID].(string); ok {
				require.Equal(t, r.runID, rid, "%s: a line of another run: %v", r.name, l)
			}
			if l[obs.KeyService] == "worker" {
				for _, k := range []string{obs.KeyUserID, obs.KeyStrategyID, obs.KeyRunID, obs.KeyJobID, obs.KeyAttempt} {
					require.NotEmpty(t, l[k], "%s: job line without %s: %v", r.name, k, l)
				}
			}
			if ev == obs.EventJobFailed {
				tb, _ := l[obs.KeyTraceback].([]any)
				require.NotEmpty(t, tb, "job_failed carries a traceback")
				require.Equal(t, false, l[obs.KeyWillRetry])
			}
		}
		require.NoError(t, sc.Err())
		// Exactly the POST's lines, then the job's.
		require.Equal(t, 1, events[obs.EventRequestFinished], "%s: %v", r.name, events)
		require.Equal(t, 1, events[obs.EventBacktestEnqueued], "%s: %v", r.name, events)
		require.Equal(t, 1, events[obs.EventJobStarted], "%s: %v", r.name, events)
		if r.wantStatus == "succeeded" {
			require.Equal(t, 10, events[obs.EventJobProgress], "%s: %v", r.name, events)
			require.Equal(t, 1, events[obs.EventJobCompleted], "%s: %v", r.name, events)
			require.Equal(t, 0, events[obs.EventJobFailed])
		} else {
			// Too few bars is found before the first checkpoint: no progress.
			require.Equal(t, 1, events[obs.EventJobFailed], "%s: %v", r.name, events)
			require.Equal(t, 0, events[obs.EventJobCompleted])
		}
		known := events[obs.EventRequestFinished] + events[obs.EventBacktestEnqueued] + events[obs.EventJobStarted] +
			events[obs.EventJobProgress] + events[obs.EventJobCompleted] + events[obs.EventJobFailed]
		total := 0
		for _, n := range events {
			total += n
		}
		require.Equal(t, known, total, "%s: unexpected lines: %v", r.name, events)
	}

	// The contract, checked on this real output: the schema, every recipe of
	// docs/logging.md over what docker compose would show, the SQL recipes.
	requireSchema(t, append(server.rawLines(t), worker.rawLines(t)...))
	requireRecipes(t, server.rawLines(t), worker.rawLines(t), runs[0].correlationID, runs[0].runID)
	requireSQLRecipes(t, dbURL, runs[0].correlationID, "succeeded")
	requireSQLRecipes(t, dbURL, runs[2].correlationID, "failed")
}

// readAll is the content of the file at path.
func readAll(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data
}
