package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// lnavFormat is the lnav format file docs/logging.md tells operators to
// install.
const lnavFormat = "../docs/lnav/backtestd.json"

// lnavLine is a row of lnav's all_logs joined with the format's own table.
type lnavLine struct {
	Line    int     `json:"log_line"`
	Time    string  `json:"log_time"`
	Level   string  `json:"log_level"`
	Format  string  `json:"log_format"`
	OpID    *string `json:"log_opid"`
	Path    string  `json:"log_path"`
	Raw     string  `json:"log_raw_text"`
	Service string  `json:"service"`
	Event   string  `json:"event"`
}

// lnavRunner runs the real lnav headless, with the format installed in a
// configuration directory of its own and a local time zone other than UTC.
type lnavRunner struct {
	bin string
	env []string
}

func newLnav(t *testing.T) *lnavRunner {
	t.Helper()
	bin, err := exec.LookPath("lnav")
	require.NoError(t, err, "the lnav format test needs lnav: apt-get install lnav (.ci/run installs it)")
	home := t.TempDir()
	l := &lnavRunner{bin: bin, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"TZ=Asia/Tokyo", "TERM=dumb",
	}}
	out := l.run(t, "-i", lnavFormat)
	require.Contains(t, out, "installed", "lnav -i %s", lnavFormat)
	return l
}

// run runs lnav with args and returns what it printed, stdout then stderr.
func (l *lnavRunner) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin, args...) //nolint:gosec // the lnav on PATH, our own arguments
	cmd.Env = l.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "lnav %v: %s", args, stderr.String())
	// lnav reports a bad command or query on stderr and exits 0.
	require.NotContains(t, stderr.String(), "error", "lnav %v", args)
	return stdout.String() + stderr.String()
}

// query runs an SQL query over files and decodes its rows into rows.
func (l *lnavRunner) query(t *testing.T, rows any, sql string, files ...string) {
	t.Helper()
	out := l.run(t, append([]string{"-n", "-q", "-c", ";" + sql, "-c", ":write-json-to -"}, files...)...)
	require.NoError(t, json.Unmarshal([]byte(out), rows), "lnav printed: %s", out)
}

// lnav, with the format of docs/lnav, reads the server's and the worker's
// lines: timestamp, level, event and service, and the correlation ID as the
// operation ID; it merges both files in time order, and a filter on an ID
// keeps the lines of both files.
func TestLnavReadsBothLogs(t *testing.T) {
	t.Parallel()
	lnav := newLnav(t)
	st := newStack(t, "FAULT_INJECTION=1")
	good := st.api.createStrategy(t, 5, 20)
	gappy := st.api.createStrategy(t, 5, 100)
	suffix := uuid.NewString()[:8]
	okID, failID := "lnav-ok-"+suffix, "lnav-fail-"+suffix
	var runIDs []string
	// GAP gives the worker half the range's bars: a run that fails.
	for id, run := range map[string][2]string{okID: {good, "ACME"}, failID: {gappy, "GAP"}} {
		resp, body := st.api.do(t, http.MethodPost, "/backtests", id, map[string]any{
			"strategy_id": run[0], "symbol": run[1], "start": "2025-01-01", "end": "2025-07-01", "initial_cash": 10000,
		})
		require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
		runID, _ := body["run_id"].(string)
		runIDs = append(runIDs, runID)
	}
	for _, runID := range runIDs {
		st.api.waitFinished(t, runID)
	}
	st.api.do(t, http.MethodGet, "/healthz", "bad value", nil) // a warn line
	st.server.stop(t)
	st.worker.stop(t)
	files := map[string][][]byte{st.server.stdout: st.server.rawLines(t), st.worker.stdout: st.worker.rawLines(t)}

	var rows []lnavLine
	lnav.query(t, &rows, `SELECT a.log_line, a.log_time, a.log_level, a.log_format, a.log_opid, a.log_path,
		a.log_raw_text, b.service, b.event
		FROM all_logs a JOIN backtestd_log b ON b.log_line = a.log_line ORDER BY a.log_line`,
		st.server.stdout, st.worker.stdout)
	require.Len(t, rows, len(files[st.server.stdout])+len(files[st.worker.stdout]), "every line of both files is a message")

	lnavLevel := map[string]string{"debug": "debug", "info": "info", "warn": "warning", "error": "error"}
	levels := map[string]bool{}
	seen := map[string]int{}       // lines of each file so far
	lastRaw := map[string]string{} // the latest timestamp of each file so far
	var services []string          // the service of each row, in lnav's order
	for i, r := range rows {
		if i > 0 {
			// A message takes more than one line of lnav's view when it
			// shows its error under it.
			require.Greater(t, r.Line, rows[i-1].Line)
		}
		require.Equal(t, "backtestd_log", r.Format, "line %d: %s", i, r.Raw)
		fileLines := files[r.Path]
		require.Less(t, seen[r.Path], len(fileLines), "line %d from %s", i, r.Path)
		require.Equal(t, string(fileLines[seen[r.Path]]), r.Raw, "each file's lines keep their order")
		seen[r.Path]++

		var raw map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.Raw), &raw))
		require.Equal(t, raw[obs.KeyService], r.Service)
		require.Equal(t, raw[obs.KeyEvent], r.Event)
		level, _ := raw[obs.KeyLevel].(string)
		require.Equal(t, lnavLevel[level], r.Level, "line %d: %s", i, r.Raw)
		levels[r.Level] = true
		if cid, ok := raw[obs.KeyCorrelationID].(string); ok {
			require.NotNil(t, r.OpID, "line %d: %s", i, r.Raw)
			require.Equal(t, cid, *r.OpID)
		} else {
			require.Nil(t, r.OpID, "line %d: %s", i, r.Raw)
		}
		// The time as written, to lnav's millisecond, in UTC whatever the
		// local zone: "2026-11-26T10:31:37.196657Z" is "2026-11-26 10:31:37.196".
		ts, _ := raw[obs.KeyTimestamp].(string)
		want := strings.Replace(ts[:len("2006-01-02T15:04:05.000")], "T", " ", 1)
		if ts >= lastRaw[r.Path] {
			require.Equal(t, want, r.Time, "line %d: %s", i, r.Raw)
		} else {
			// A line written just after a later-stamped one of another
			// goroutine: lnav keeps a file's time from going backwards.
			require.GreaterOrEqual(t, r.Time, want)
		}
		lastRaw[r.Path] = max(lastRaw[r.Path], ts)
		if i > 0 {
			require.GreaterOrEqual(t, r.Time, rows[i-1].Time, "merged in time order: line %d", i)
		}
		services = append(services, r.Service)
	}
	require.Equal(t, map[string]bool{"info": true, "warning": true, "error": true}, levels)
	// The job's lines come between the POST and the server's shutdown:
	// merged, not one file after the other.
	order := strings.Join(services, " ")
	require.Regexp(t, `server.* worker .*server`, order)

	// :filter-in on an ID keeps that request's and that job's lines, from
	// both files.
	want := 0
	for _, lines := range files {
		for _, line := range lines {
			var raw map[string]any
			require.NoError(t, json.Unmarshal(line, &raw))
			if raw[obs.KeyCorrelationID] == failID {
				want++
			}
		}
	}
	message := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} +(server|worker) `)
	got := map[string]int{}
	for line := range strings.SplitSeq(lnav.run(t, "-n", "-c", ":filter-in "+failID, st.server.stdout, st.worker.stdout), "\n") {
		m := message.FindStringSubmatch(line)
		if m == nil {
			continue // a message's second line (its error), or lnav's own
		}
		require.Contains(t, line, failID)
		got[m[1]]++
	}
	require.Equal(t, want, got["server"]+got["worker"], "filter-in %s: %v", failID, got)
	require.Positive(t, got["server"], "the request's lines")
	require.Positive(t, got["worker"], "the job's lines")

	// The queries of docs/logging.md.
	recipes := docRecipes(t, "lnav-sql")
	require.Len(t, recipes, 2)
	for _, r := range recipes {
		var found []map[string]any
		lnav.query(t, &found, strings.ReplaceAll(r.text, "bug-1234", failID), st.server.stdout, st.worker.stdout)
		switch r.name {
		case "follow":
			require.Len(t, found, want, r.name)
			events := map[string]string{}
			for _, f := range found {
				ev, _ := f[obs.KeyEvent].(string)
				svc, _ := f[obs.KeyService].(string)
				events[ev] = svc
			}
			require.Equal(t, "server", events[obs.EventBacktestEnqueued], "%s: %v", r.name, found)
			require.Equal(t, "worker", events[obs.EventJobFailed], "%s: %v", r.name, found)
		case "routes":
			requests := map[string]float64{}
			for _, f := range found {
				requests[fmt.Sprintf("%v %v", f[obs.KeyRoute], f[obs.KeyStatusCode])], _ = f["requests"].(float64)
			}
			require.InDelta(t, 2, requests["/backtests 202"], 0, "%s: %v", r.name, found)
		default:
			t.Fatalf("a query of docs/logging.md without a check: %s", r.name)
		}
	}
}
