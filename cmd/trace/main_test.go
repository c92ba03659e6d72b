package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const fixture = "../../internal/timeline/testdata/compose.log"

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
		{name: "nothing matches", args: []string{"no-such-id", fixture}, wantCode: 1},
		{name: "no id", args: nil, wantCode: 2},
		{name: "run and job", args: []string{"--run", "a", "--job", "1"}, wantCode: 2},
		{name: "bad colour", args: []string{"--color", "pink", "x"}, wantCode: 2},
		{name: "missing file", args: []string{"x", "/nonexistent/file.log"}, wantCode: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			err := run(t.Context(), append([]string{"trace"}, tt.args...), strings.NewReader(tt.stdin), &out, &errOut, false)
			var exit exitError
			switch tt.wantCode {
			case 0:
				require.NoError(t, err, errOut.String())
				tt.check(t, out.String())
			case -1:
				require.ErrorContains(t, err, "open /nonexistent/file.log")
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
			err := run(t.Context(), append([]string{"trace"}, tt.args...), strings.NewReader(logs), &out, &errOut, false)
			require.NoError(t, err, errOut.String())
			require.Empty(t, errOut.String(), "no usage text")
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			require.Len(t, lines, 1, out.String())
			require.Contains(t, lines[0], tt.wantEvent)
			require.Equal(t, tt.wantJSON, strings.HasPrefix(lines[0], "{"), lines[0])
		})
	}

	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"trace", "--id", "-h", "--run", otherRun}, strings.NewReader(logs), &out, &errOut, false)
	var exit exitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 2, exit.code, "one selector at a time")
}
