package main

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

const fixture = "../../internal/timeline/testdata/compose.log"

// runMainEnv, set in the environment of this test binary run again, makes
// it the trace command itself: main, its exit code and all.
const runMainEnv = "TRACE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" { //nolint:forbidigo // how the test binary knows to be trace
		main()
		os.Exit(0) //nolint:forbidigo // main returned: trace's success
	}
	os.Exit(m.Run()) //nolint:forbidigo // TestMain's exit
}

func noEnv(string) string { return "" }

func TestTrace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int // 0: no error
		check    func(t *testing.T, out string)
	}{
		{name: "timeline from a file", args: []string{"bug-5678", fixture}, check: func(t *testing.T, out string) {
			t.Helper()
			require.Contains(t, out, "job_failed")
			require.Contains(t, out, "at github.com/backtestd/backtestd/internal/jobs.(*Worker).Work")
			require.NotContains(t, out, "\x1b[", "no colour off a terminal")
		}},
		{
			name: "json lines from stdin", args: []string{"--json", "--job", "1"}, stdin: "garbage\n" +
				`worker-1  | {"timestamp":"2026-01-01T00:00:01.000000Z","job_id":1,"event":"b"}` + "\n" +
				`{"timestamp":"2026-01-01T00:00:00.000000Z","job_id":1,"event":"a"}` + "\n",
			check: func(t *testing.T, out string) {
				t.Helper()
				lines := strings.Split(strings.TrimSpace(out), "\n")
				require.Len(t, lines, 2)
				require.JSONEq(t, `{"timestamp":"2026-01-01T00:00:00.000000Z","job_id":1,"event":"a"}`, lines[0])
				require.JSONEq(t, `{"timestamp":"2026-01-01T00:00:01.000000Z","job_id":1,"event":"b"}`, lines[1])
				require.True(t, strings.HasPrefix(lines[1], "{"), "the compose prefix is stripped")
			},
		},
		{
			name: "a trace's lines", args: []string{"--json", "--trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"},
			stdin: `{"timestamp":"2026-01-01T00:00:00.000000Z","correlation_id":"a","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","event":"a"}` + "\n" +
				`{"timestamp":"2026-01-01T00:00:01.000000Z","correlation_id":"b","event":"b"}` + "\n" +
				`{"timestamp":"2026-01-01T00:00:02.000000Z","correlation_id":"c","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","event":"c"}` + "\n",
			check: func(t *testing.T, out string) {
				t.Helper()
				lines := strings.Split(strings.TrimSpace(out), "\n")
				require.Len(t, lines, 2)
				require.Contains(t, lines[0], `"event":"a"`)
				require.Contains(t, lines[1], `"event":"c"`)
			},
		},
		{name: "nothing matches", args: []string{"no-such-id", fixture}, wantCode: 1},
		{name: "trace and run", args: []string{"--trace-id", "a", "--run", "b"}, wantCode: 2},
		{name: "no id", args: nil, wantCode: 2},
		{name: "run and job", args: []string{"--run", "a", "--job", "1"}, wantCode: 2},
		{name: "bad colour", args: []string{"--color", "pink", "x"}, wantCode: 2},
		{name: "missing file", args: []string{"x", "/nonexistent/file.log"}, wantCode: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(t.Context(), append([]string{"trace"}, tt.args...), noEnv, strings.NewReader(tt.stdin), &out, &errOut, false)
			var exit exitError
			switch tt.wantCode {
			case 0:
				require.NoError(t, err, errOut.String())
				tt.check(t, out.String())
			case -1:
				require.ErrorIs(t, err, fs.ErrNotExist)
				require.ErrorContains(t, err, "/nonexistent/file.log", "the error names the file")
			default:
				require.ErrorAs(t, err, &exit)
				require.Equal(t, tt.wantCode, exit.code)
			}
		})
	}
}

// Correlation IDs may start with '-' (the service's rule allows it): given
// with --id or after "--", they select their own lines and are never read
// as flags.
func TestTraceIDsThatLookLikeFlags(t *testing.T) {
	t.Parallel()
	const otherRun = "01a2175f-386b-7761-8b43-c03581273143"
	line := func(cid, runID, event string) string {
		return `{"timestamp":"2026-01-01T00:00:00.000000Z","level":"info","service":"server","event":"` + event +
			`","correlation_id":"` + cid + `","run_id":"` + runID + `"}` + "\n"
	}
	logs := line("-h", "r-h", "ev_dash_h") + line("--json", "r-json", "ev_dash_json") +
		line("--run="+otherRun, "r-run", "ev_dash_run") + line("victim", otherRun, "ev_other_run")

	tests := []struct {
		name      string
		args      []string
		wantEvent string // the only event selected
		wantJSON  bool   // the output is the JSON lines, not a timeline
	}{
		{name: "-h after --", args: []string{"--", "-h"}, wantEvent: "ev_dash_h"},
		{name: "-h with --id", args: []string{"--id", "-h"}, wantEvent: "ev_dash_h"},
		{name: "-h with --id and --json", args: []string{"--json", "--id", "-h"}, wantEvent: "ev_dash_h", wantJSON: true},
		{name: "--json after --", args: []string{"--", "--json"}, wantEvent: "ev_dash_json"},
		{name: "--json with --id", args: []string{"--id", "--json"}, wantEvent: "ev_dash_json"},
		{name: "--json with --id=", args: []string{"--id=--json"}, wantEvent: "ev_dash_json"},
		{name: "--run=<run> after --", args: []string{"--", "--run=" + otherRun}, wantEvent: "ev_dash_run"},
		{name: "--run=<run> with --id", args: []string{"--json", "--id", "--run=" + otherRun}, wantEvent: "ev_dash_run", wantJSON: true},
		{name: "--run=<run> with --id=", args: []string{"--id=--run=" + otherRun}, wantEvent: "ev_dash_run"},
		{name: "the other run itself", args: []string{"--run", otherRun}, wantEvent: "ev_other_run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(t.Context(), append([]string{"trace"}, tt.args...), noEnv, strings.NewReader(logs), &out, &errOut, false)
			require.NoError(t, err, errOut.String())
			require.Empty(t, errOut.String(), "no usage text")
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			require.Len(t, lines, 1, out.String())
			require.Contains(t, lines[0], tt.wantEvent)
			require.Equal(t, tt.wantJSON, strings.HasPrefix(lines[0], "{"), lines[0])
		})
	}

	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"trace", "--id", "-h", "--run", otherRun}, noEnv, strings.NewReader(logs), &out, &errOut, false)
	var exit exitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 2, exit.code, "one selector at a time")
}

// Colour is on for a terminal unless NO_COLOR says otherwise, read through
// run's getenv like every other setting of the mains.
func TestTraceColor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		tty       bool
		color     string
		env       map[string]string
		wantColor bool
	}{
		{name: "terminal", tty: true, color: "auto", wantColor: true},
		{name: "terminal with NO_COLOR", tty: true, color: "auto", env: map[string]string{"NO_COLOR": "1"}},
		{name: "not a terminal", color: "auto"},
		{name: "always despite NO_COLOR", color: "always", env: map[string]string{"NO_COLOR": "1"}, wantColor: true},
		{name: "never on a terminal", tty: true, color: "never"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			getenv := func(k string) string { return tt.env[k] }
			err := run(t.Context(), []string{"trace", "--color", tt.color, "bug-5678", fixture}, getenv, nil, &out, &errOut, tt.tty)
			require.NoError(t, err, errOut.String())
			require.Contains(t, out.String(), "job_failed")
			require.Equal(t, tt.wantColor, strings.Contains(out.String(), "\x1b["), out.String())
		})
	}
}

// failingWriter fails every write with err, as a file does on a full disk or
// a pipe whose reader left.
type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// Output that cannot be written is an error, unless its reader left: a
// timeline cut short by a full disk must not pass for a whole one.
func TestTraceWriteErrors(t *testing.T) {
	t.Parallel()
	full := &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.ENOSPC}
	gone := &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}
	tests := []struct {
		name    string
		args    []string
		err     error
		wantErr bool
	}{
		{name: "timeline, disk full", args: []string{"bug-5678", fixture}, err: full, wantErr: true},
		{name: "json, disk full", args: []string{"--json", "bug-5678", fixture}, err: full, wantErr: true},
		{name: "timeline, reader gone", args: []string{"bug-5678", fixture}, err: gone},
		{name: "json, reader gone", args: []string{"--json", "bug-5678", fixture}, err: gone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var errOut bytes.Buffer
			err := run(t.Context(), append([]string{"trace"}, tt.args...), noEnv, nil, failingWriter{tt.err}, &errOut, false)
			if !tt.wantErr {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, syscall.ENOSPC)
			require.ErrorContains(t, err, "write output")
		})
	}
}

// The exit codes of the command itself, with its real standard output: a
// full disk (/dev/full) fails it, a reader that left (a closed pipe, as in
// trace ID | head) does not.
func TestTraceExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		stdout     func(t *testing.T) *os.File
		wantCode   int
		wantStderr string
	}{
		{name: "disk full", args: []string{"bug-5678", fixture}, stdout: devFull, wantCode: 2, wantStderr: "trace: write output"},
		{name: "json, disk full", args: []string{"--json", "bug-5678", fixture}, stdout: devFull, wantCode: 2, wantStderr: "trace: write output"},
		{name: "reader gone", args: []string{"bug-5678", fixture}, stdout: closedPipe},
		{name: "json, reader gone", args: []string{"--json", "bug-5678", fixture}, stdout: closedPipe},
		{name: "no match", args: []string{"no-such-id", fixture}, stdout: devNull, wantCode: 1, wantStderr: "trace: no lines with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], tt.args...)
			cmd.Env = append(os.Environ(), runMainEnv+"=1")
			cmd.Stdout = tt.stdout(t)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if tt.wantCode == 0 {
				require.NoError(t, err, stderr.String())
				require.Empty(t, stderr.String())
				return
			}
			require.ErrorAs(t, err, &exit)
			require.Equal(t, tt.wantCode, exit.ExitCode(), stderr.String())
			require.Contains(t, stderr.String(), tt.wantStderr)
		})
	}
}

func devFull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func devNull(t *testing.T) *os.File {
	t.Helper()
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// closedPipe is the write end of a pipe whose read end is already closed.
func closedPipe(t *testing.T) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	require.NoError(t, r.Close())
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// Input that never ends (docker compose logs -f | trace ID) does not hold
// trace past its context: main cancels it on Ctrl-C.
func TestTraceStopsWithItsContext(t *testing.T) {
	t.Parallel()
	stdin, feed := io.Pipe()
	t.Cleanup(func() { _ = feed.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"trace", "bug-5678"}, noEnv, stdin, io.Discard, io.Discard, false)
	}()
	// A line is read before the cancel: trace is waiting on its input.
	_, err := io.WriteString(feed, `{"timestamp":"2026-01-01T00:00:00.000000Z","correlation_id":"bug-5678","event":"a"}`+"\n")
	require.NoError(t, err)
	cancel()
	err = <-done
	var exit exitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 130, exit.code)
}
