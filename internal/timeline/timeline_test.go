package timeline_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/timeline"
)

var update = flag.Bool("update", false, "rewrite the golden timelines")

const fixture = "testdata/compose.log"

// The IDs recorded in the fixture.
const (
	succeededRun = "01a21769-2bf6-730c-badd-1d1f093bbf81"
	failedJobID  = "2"
)

func selectFile(t *testing.T, sel timeline.Selector) []timeline.Entry {
	t.Helper()
	f, err := os.Open(fixture)
	require.NoError(t, err)
	defer f.Close()
	entries, err := timeline.Select(f, sel)
	require.NoError(t, err)
	return entries
}

func TestGoldenTimelines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		golden string
		sel    timeline.Selector
		color  bool
	}{
		{"bug-1234.golden", timeline.Selector{Field: "correlation_id", Value: "bug-1234"}, false},
		{"bug-5678.golden", timeline.Selector{Field: "correlation_id", Value: "bug-5678"}, false},
		{"bug-5678-color.golden", timeline.Selector{Field: "correlation_id", Value: "bug-5678"}, true},
		{"run.golden", timeline.Selector{Field: "run_id", Value: succeededRun}, false},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			require.NoError(t, timeline.Render(&out, selectFile(t, tt.sel), timeline.Options{Color: tt.color}))
			path := filepath.Join("testdata", tt.golden)
			if *update {
				require.NoError(t, os.WriteFile(path, out.Bytes(), 0o600))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(want), out.String())
		})
	}
}

func TestSelectSortsSkipsAndStrips(t *testing.T) {
	t.Parallel()
	entries := selectFile(t, timeline.Selector{Field: "correlation_id", Value: "bug-1234"})
	require.Len(t, entries, 14, "request, enqueue, start, ten checkpoints, completion")
	for i, e := range entries {
		require.Equal(t, byte('{'), e.Raw[0], "the compose prefix is stripped")
		require.Equal(t, "bug-1234", e.String("correlation_id"))
		if i > 0 {
			require.LessOrEqual(t, entries[i-1].Timestamp, e.Timestamp, "sorted by timestamp")
		}
	}
	require.Equal(t, "backtest_enqueued", entries[0].String("event"), "the out-of-order job_started is put back")
}

// The trace's selection is the documented jq recipe's, line for line.
func TestSelectionEqualsTheJQRecipe(t *testing.T) {
	t.Parallel()
	_, err := exec.LookPath("jq")
	require.NoError(t, err, "this test needs the jq binary")
	tests := []struct {
		sel    timeline.Selector
		filter string
	}{
		{timeline.Selector{Field: "correlation_id", Value: "bug-1234"}, `select(.correlation_id == $id)`},
		{timeline.Selector{Field: "correlation_id", Value: "bug-5678"}, `select(.correlation_id == $id)`},
		{timeline.Selector{Field: "run_id", Value: succeededRun}, `select(.run_id == $id)`},
		{timeline.Selector{Field: "job_id", Value: failedJobID}, `select(.job_id == ($id | tonumber))`},
		{timeline.Selector{Field: "correlation_id", Value: "nobody"}, `select(.correlation_id == $id)`},
	}
	for _, tt := range tests {
		t.Run(tt.sel.Field+"="+tt.sel.Value, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			script := `jq -cR --arg id "$1" 'sub("^[^{]*"; "") | fromjson? | objects | ` + tt.filter + `' "$2" | jq -sc 'sort_by(.timestamp)[]'`
			want, err := exec.CommandContext(ctx, "sh", "-c", script, "sh", tt.sel.Value, fixture).Output()
			require.NoError(t, err)

			var got bytes.Buffer
			for _, e := range selectFile(t, tt.sel) {
				got.Write(canonical(t, e.Raw))
				got.WriteByte('\n')
			}
			require.Equal(t, string(want), got.String())
		})
	}
}

// canonical re-encodes a line the way jq -c prints it.
func canonical(t *testing.T, raw []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "jq", "-c", ".")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	require.NoError(t, err)
	return bytes.TrimSuffix(out, []byte("\n"))
}

func TestSelectOddInput(t *testing.T) {
	t.Parallel()
	line := func(ts, id string) string {
		return `{"timestamp":"` + ts + `","level":"info","event":"x","service":"worker","correlation_id":"` + id + `"}`
	}
	long := `{"correlation_id":"id-1","pad":"` + strings.Repeat("x", 5<<20) + `"}`
	input := strings.Join([]string{
		line("2026-01-01T00:00:02.000000Z", "id-1"),
		long, // over 1 MiB: skipped, and the next line still found
		"worker-1  | " + line("2026-01-01T00:00:01.000000Z", "id-1") + "\r",
		`"id-1"`,                    // JSON, but not an object
		`{"correlation_id":"id-1",`, // cut short
		line("2026-01-01T00:00:03.000000Z", "id-10"), // contains the id, is another
		line("2026-01-01T00:00:00.000000Z", "id-1"),  // the last line, no newline
	}, "\n")
	readers := map[string]func() io.Reader{
		"in chunks":          func() io.Reader { return strings.NewReader(input) },
		"one byte at a time": func() io.Reader { return iotest.OneByteReader(strings.NewReader(input)) },
	}
	for name, reader := range readers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			entries, err := timeline.Select(reader(), timeline.Selector{Field: "correlation_id", Value: "id-1"})
			require.NoError(t, err)
			var got []string
			for _, e := range entries {
				got = append(got, e.Timestamp)
			}
			require.Equal(t, []string{"2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z", "2026-01-01T00:00:02.000000Z"}, got)
		})
	}
}
