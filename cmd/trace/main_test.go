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
