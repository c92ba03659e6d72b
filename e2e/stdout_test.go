package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
	cmd := binary(t.Context(), t, name, env)
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
	db, key := migratedSchema(t)
	return []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + db.URL, "HTTP_ADDR=127.0.0.1:0", "SHUTDOWN_TIMEOUT=5s"}, key
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
// read again: no line is dropped, so logging waits. The test follows the
// events, not the clock: the kernel says when the pipe is full, and a
// request may complete only after the reader is back.
func TestStalledStdoutHoldsRequests(t *testing.T) {
	t.Parallel()
	env, key := stdoutEnv(t)
	server := startPiped(t, "server", env)
	addr, _ := server.until(t, obs.EventServerStarted)[obs.KeyAddr].(string)
	api := client{base: "http://" + addr, key: key}

	// Requests one after another, each writing one line, while nobody reads.
	var completed atomic.Int64
	ctx, stopLoad := context.WithCancel(t.Context())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, api.base+"/healthz", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			_ = resp.Body.Close()
			completed.Add(1)
		}
	}()
	require.Eventually(t, func() bool { return blockedOnPipe(t, server.cmd.Process.Pid) }, 60*time.Second, 10*time.Millisecond,
		"the pipe fills up and the server waits to write its next line")
	before := completed.Load()
	require.True(t, blockedOnPipe(t, server.cmd.Process.Pid), "still waiting")
	require.Equal(t, before, completed.Load(), "no request completed meanwhile")
	finished := make(chan int64, 1)
	go func() { // the reader comes back
		var n int64
		for {
			line, err := server.rd.ReadBytes('\n')
			if err != nil {
				finished <- n
				return
			}
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m[obs.KeyEvent] == obs.EventRequestFinished {
				n++
			}
		}
	}()
	require.Eventually(t, func() bool { return completed.Load() > before+10 }, 30*time.Second, 10*time.Millisecond,
		"requests resume once stdout is read again")
	stopLoad()
	<-loadDone
	resp, _ := api.do(t, http.MethodGet, "/readyz", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, server.cmd.Process.Signal(syscall.SIGTERM))
	lines := <-finished // stdout closes when the server exits
	// Every completed request logged its line; a request cut by the end of
	// the load may have logged one without completing.
	require.GreaterOrEqual(t, lines, completed.Load()+1, "no line was dropped (the /readyz included)")
	require.LessOrEqual(t, lines, completed.Load()+2)
}

// blockedOnPipe reports whether a thread of the process pid is blocked
// writing to a full pipe, as the kernel tells (its wait channel).
func blockedOnPipe(t *testing.T, pid int) bool {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	require.NoError(t, err)
	for _, task := range tasks {
		wchan, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/wchan", pid, task.Name()))
		if err == nil && strings.HasSuffix(string(wchan), "pipe_write") { // anon_pipe_write, or pipe_write before Linux 6.x
			return true
		}
	}
	return false
}
