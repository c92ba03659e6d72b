package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// logSchema is docs/log-schema.json, compiled once: the file the catalog
// generates, which the binaries' lines must keep.
var logSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	f, err := os.Open(filepath.Join("..", "docs", "log-schema.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("log-schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("log-schema.json")
})

// requireSchema validates every line against docs/log-schema.json: the
// catalog's events, each with its required keys and no key it does not
// list.
func requireSchema(t *testing.T, lines [][]byte) {
	t.Helper()
	schema, err := logSchema()
	require.NoError(t, err)
	for _, line := range lines {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
		require.NoError(t, err)
		require.NoError(t, schema.Validate(inst), "%s", line)
	}
}

// composeLogs renders what `docker compose logs` prints for the two
// services: lines interleaved in time order, a few lines of a database that
// are not JSON, and, when prefixed, compose's "service-1  | " prefixes.
func composeLogs(server, worker [][]byte, prefixed bool) []byte {
	type tagged struct {
		service string
		line    []byte
		ts      string
	}
	var all []tagged
	for _, src := range []struct {
		name  string
		lines [][]byte
	}{{"server", server}, {"worker", worker}} {
		for _, l := range src.lines {
			var h struct{ Timestamp string }
			_ = json.Unmarshal(l, &h)
			all = append(all, tagged{src.name, l, h.Timestamp})
		}
	}
	slices.SortStableFunc(all, func(a, b tagged) int { return strings.Compare(a.ts, b.ts) })
	postgres := []string{
		"PostgreSQL init process complete; ready for start up.",
		"2026-11-26 10:00:00.000 UTC [1] LOG:  database system is ready to accept connections",
	}
	var out bytes.Buffer
	write := func(service, line string) {
		if prefixed {
			out.WriteString(service + "-1  | ")
		}
		out.WriteString(line + "\n")
	}
	for _, p := range postgres {
		write("postgres", p)
	}
	for i, l := range all {
		if i == len(all)/2 {
			write("postgres", "2026-11-26 10:00:05.000 UTC [42] LOG:  checkpoint starting: time")
		}
		write(l.service, string(l.line))
	}
	return out.Bytes()
}

// recipe is a shell or SQL block of docs/logging.md.
type recipe struct {
	name, text string
}

func docRecipes(t *testing.T, kind string) []recipe {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "logging.md"))
	require.NoError(t, err)
	re := regexp.MustCompile("(?s)<!-- " + kind + ": ([a-z-]+) -->\n```[a-z]+\n(.*?)```")
	var out []recipe
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		out = append(out, recipe{name: m[1], text: m[2]})
	}
	return out
}

// exampleValue is a recipe's line that sets its example's value (ID=...).
var exampleValue = regexp.MustCompile(`^[A-Z]+=`)

// runRecipe runs a documented shell recipe with the logs in place of
// `docker compose logs` and vars in place of its example values.
func runRecipe(t *testing.T, r recipe, logs string, vars map[string]string) []map[string]any {
	t.Helper()
	var script []string
	for _, line := range strings.Split(r.text, "\n") {
		if exampleValue.MatchString(line) {
			continue // the example's own value; ours comes from vars
		}
		script = append(script, line)
	}
	text := strings.Join(script, "\n")
	compose := regexp.MustCompile(`docker compose logs --no-log-prefix [a-z ]+?\\?\n`)
	require.Regexp(t, compose, text, "recipe %s must read docker compose logs", r.name)
	text = compose.ReplaceAllLiteralString(text, "cat \"$LOGS\" \\\n")

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", text)
	cmd.Env = append(os.Environ(), "LOGS="+logs)
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "recipe %s: %s", r.name, stderr.String())
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(l, &m), "recipe %s printed %q", r.name, l)
		lines = append(lines, m)
	}
	return lines
}

// requireRecipes runs every recipe of docs/logging.md over both forms of
// the compose output and checks each result against the lines themselves.
func requireRecipes(t *testing.T, server, worker [][]byte, correlationID, runID string) {
	t.Helper()
	var all []map[string]any
	for _, l := range append(slices.Clone(server), worker...) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(l, &m))
		all = append(all, m)
	}
	count := func(pred func(map[string]any) bool) int {
		n := 0
		for _, l := range all {
			if pred(l) {
				n++
			}
		}
		return n
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736" // TestTraceparentAndMetricsAcrossBothProcesses sends one
	vars := map[string]string{"ID": correlationID, "RUN": runID, "MS": "0", "TRACE": traceID}
	checks := map[string]func(t *testing.T, out []map[string]any){
		"follow": func(t *testing.T, out []map[string]any) {
			t.Helper()
			require.Len(t, out, count(func(l map[string]any) bool { return l[obs.KeyCorrelationID] == correlationID }))
			for i, l := range out {
				require.Equal(t, correlationID, l[obs.KeyCorrelationID])
				if i > 0 {
					require.LessOrEqual(t, out[i-1][obs.KeyTimestamp], l[obs.KeyTimestamp], "sorted by time")
				}
			}
		},
		"errors": func(t *testing.T, out []map[string]any) {
			t.Helper()
			require.Len(t, out, count(func(l map[string]any) bool { return l[obs.KeyLevel] == "error" }))
			require.NotEmpty(t, out, "the failed run logged an error")
			for _, l := range out {
				if l[obs.KeyEvent] == obs.EventJobFailed {
					require.NotEmpty(t, l[obs.KeyTraceback])
				}
			}
		},
		"run": func(t *testing.T, out []map[string]any) {
			t.Helper()
			require.Len(t, out, count(func(l map[string]any) bool { return l[obs.KeyRunID] == runID }))
			var events []any
			for _, l := range out {
				events = append(events, l[obs.KeyEvent])
			}
			require.Contains(t, events, obs.EventBacktestEnqueued)
			require.Contains(t, events, obs.EventJobStarted)
			require.Contains(t, events, obs.EventJobCompleted)
		},
		"slow": func(t *testing.T, out []map[string]any) {
			t.Helper()
			require.Len(t, out, count(func(l map[string]any) bool { return l[obs.KeyEvent] == obs.EventRequestFinished }))
			for i := 1; i < len(out); i++ {
				prev, _ := out[i-1][obs.KeyDurationMS].(float64)
				cur, _ := out[i][obs.KeyDurationMS].(float64)
				require.GreaterOrEqual(t, prev, cur, "slowest first")
			}
		},
		"trace": func(t *testing.T, out []map[string]any) {
			t.Helper()
			require.Len(t, out, count(func(l map[string]any) bool { return l[obs.KeyTraceID] == traceID }))
		},
		"sweep": func(t *testing.T, out []map[string]any) {
			t.Helper()
			// A single run's correlation ID: no run_count, its one run by outcome.
			require.Equal(t, []map[string]any{{
				"run_count": nil,
				"succeeded": float64(count(func(l map[string]any) bool {
					return l[obs.KeyCorrelationID] == correlationID && l[obs.KeyEvent] == obs.EventJobCompleted
				})),
				"failed": float64(0), "cancelled": float64(0),
			}}, out)
		},
		"rejected": func(t *testing.T, out []map[string]any) {
			t.Helper()
			require.Len(t, out, count(func(l map[string]any) bool { return l[obs.KeyEvent] == obs.EventCorrelationIDRejected }))
			require.NotEmpty(t, out)
			require.Equal(t, obs.RejectInvalid, out[0][obs.KeyReason])
		},
	}
	recipes := docRecipes(t, "recipe")
	var names []string
	for _, r := range recipes {
		names = append(names, r.name)
	}
	require.ElementsMatch(t, []string{"follow", "errors", "run", "slow", "rejected", "trace", "sweep"}, names)

	dir := t.TempDir()
	for _, prefixed := range []bool{false, true} {
		path := filepath.Join(dir, map[bool]string{false: "no-prefix.log", true: "prefixed.log"}[prefixed])
		require.NoError(t, os.WriteFile(path, composeLogs(server, worker, prefixed), 0o600))
		for _, r := range recipes {
			t.Run(r.name+map[bool]string{false: "", true: " prefixed"}[prefixed], func(t *testing.T) {
				t.Parallel()
				checks[r.name](t, runRecipe(t, r, path, vars))
			})
		}
	}
}

// requireSQLRecipes runs the SQL of docs/logging.md for one correlation ID
// (the disagree recipe, for every run: the stack is at rest).
func requireSQLRecipes(t *testing.T, dbURL, correlationID, wantStatus string) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	recipes := docRecipes(t, "sql")
	var names []string
	for _, r := range recipes {
		names = append(names, r.name)
	}
	require.ElementsMatch(t, []string{"runs", "jobs", "attempts", "disagree"}, names)
	for _, r := range recipes {
		sql := strings.ReplaceAll(r.text, "'bug-1234'", "$1::text")
		var args []any
		if r.name != "disagree" {
			require.NotEqual(t, r.text, sql, "recipe %s must use the example ID", r.name)
			args = append(args, correlationID)
		}
		rows, err := conn.Query(ctx, sql, args...)
		require.NoError(t, err, r.name)
		got, err := pgx.CollectRows(rows, pgx.RowToMap)
		require.NoError(t, err, r.name)
		switch r.name {
		case "disagree":
			require.Empty(t, got, "at rest, every run matches its job")
		case "attempts":
			require.Len(t, got, 1, "one attempt")
			require.Equal(t, wantStatus, got[0]["outcome"])
		default:
			require.Len(t, got, 1, r.name)
		}
		if r.name == "runs" {
			require.Equal(t, wantStatus, got[0]["status"])
			require.NotNil(t, got[0]["job_state"], "the River job is still there")
		}
	}
}
