package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/obs"
)

// piped is a binary whose stdout is a pipe the test controls.
type piped struct {
	cmd  *exec.Cmd
	out  io.ReadCloser
	rd   *bufio.Reader
	done chan error
}

func startPiped(t *testing.T, name string, env []string) *piped {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, name)) //nolint:gosec // our own binary
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &piped{cmd: cmd, out: out, rd: bufio.NewReader(out), done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done //nolint:errcheck // a killed process's exit status says nothing
	})
	return p
}

// until reads lines up to the first with event, and returns it.
func (p *piped) until(t *testing.T, event string) map[string]any {
	t.Helper()
	for {
		line, err := p.rd.ReadBytes('\n')
		require.NoError(t, err, "stdout ended before %s", event)
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m))
		if m[obs.KeyEvent] == event {
			return m
		}
	}
}

func (p *piped) alive() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return false
	default:
		return true
	}
}

func stdoutEnv(t *testing.T) ([]string, string) {
	t.Helper()
	_, dbURL := dbtest.NewEmpty(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + dbURL, "HTTP_ADDR=127.0.0.1:0", "SHUTDOWN_TIMEOUT=5s"}
	runCommand(t, env, "server", "migrate", "up")
	return env, strings.TrimSpace(runCommand(t, env, "server", "create-api-key", "-user", "e2e"))
}

// A closed stdout (the log reader went away) must not kill either process:
// Go dies of SIGPIPE on a write to a broken stdout unless it is handled.
func TestClosedStdoutKillsNothing(t *testing.T) {
	t.Parallel()
	env, key := stdoutEnv(t)
	server := startPiped(t, "server", env)
	worker := startPiped(t, "worker", env)
	addr, _ := server.until(t, obs.EventServerStarted)[obs.KeyAddr].(string)
	worker.until(t, obs.EventWorkerStarted)
	require.NoError(t, server.out.Close())
	require.NoError(t, worker.out.Close())

	api := client{base: "http://" + addr, key: key}
	strategy := api.createStrategy(t, 5, 20) // logs, into the broken pipe
	for range 3 {
		resp, body := api.do(t, http.MethodPost, "/backtests", "", backtestBody(strategy, "ACME"))
		require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
		runID, _ := body["run_id"].(string)
		require.Equal(t, "succeeded", api.waitFinished(t, runID)["status"], "the worker works on")
	}
	resp, _ := api.do(t, http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, server.alive())
	require.True(t, worker.alive())

	for _, p := range []*piped{server, worker} {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		select {
		case err := <-p.done:
			require.NoError(t, err, "a clean exit, even with nowhere to log")
			p.done <- err
		case <-time.After(20 * time.Second):
			t.Fatal("did not stop")
		}
	}
}

// A stalled stdout (the reader stopped reading; Docker's default blocking
// log mode behaves so when its buffer is full) holds requests until it is
// read again: no line is dropped, so logging waits.
func TestStalledStdoutHoldsRequests(t *testing.T) {
	t.Parallel()
	env, key := stdoutEnv(t)
	server := startPiped(t, "server", env)
	addr, _ := server.until(t, obs.EventServerStarted)[obs.KeyAddr].(string)
	api := client{base: "http://" + addr, key: key}

	// Fill the pipe: each /healthz writes one line, and nobody reads.
	blocked := make(chan time.Duration, 1)
	go func() {
		for i := 0; ; i++ {
			start := time.Now()
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, api.base+"/healthz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			_ = resp.Body.Close()
			if d := time.Since(start); d > 500*time.Millisecond {
				blocked <- d
				return
			}
			if i > 100_000 {
				return
			}
		}
	}()
	select {
	case d := <-blocked:
		t.Fatalf("a request finished after %v with the pipe still full", d)
	case <-time.After(3 * time.Second):
	}
	stall := time.Now()
	go func() { _, _ = io.Copy(io.Discard, server.out) }() // the reader comes back
	select {
	case d := <-blocked:
		t.Logf("a request waited %v; the reader was away for %v", d.Round(time.Millisecond), time.Since(stall)+3*time.Second)
		require.Greater(t, d, 2*time.Second, "it waited for the reader")
	case <-time.After(10 * time.Second):
		t.Fatal("requests did not resume once stdout was read again")
	}
	resp, _ := api.do(t, http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
