package timeline

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/backtestd/backtestd/internal/obs"
)

// FanOutRuns is the number of runs above which a selection is a fan-out (a
// sweep, a trace with many requests): Summarize's summary, rather than
// every line, is what a person can read. A timeline of 20 runs is some 300
// lines; one of a 1,000-run sweep is 15,000.
const FanOutRuns = 20

// Runs returns how many distinct runs (run_id) the entries belong to.
func Runs(entries []Entry) int {
	seen := map[string]bool{}
	for _, e := range entries {
		if id := e.String(obs.KeyRunID); id != "" {
			seen[id] = true
		}
	}
	return len(seen)
}

// Limits of a summary, so that a fan-out whose every run failed still
// prints a page, not the whole log.
const (
	// slowest is how many of the slowest attempts are listed.
	slowest = 5
	// maxFailureLines is how many warn and error lines are shown in full.
	maxFailureLines = 30
	// maxOtherLines is how many lines outside any run (the request's, the
	// sweep's) are shown in full.
	maxOtherLines = 20
)

// outcome names for runs whose last line says nothing final.
const outcomeUnfinished = "unfinished"

// levels are the columns of the events table.
var levels = []string{"debug", "info", "warn", "error"}

// RenderSummary writes a summary of a fan-out's entries: counts of lines
// per event and level, runs per outcome, the slowest attempts, the lines
// outside any run (the request's, the sweep's) and the warn and error
// lines in full, and how to see one run. runCmd is the command that shows
// one run's timeline, completed with a run's ID (e.g. "trace --run").
func RenderSummary(w io.Writer, entries []Entry, runCmd string, opts Options) error {
	bw := bufio.NewWriter(w)
	s := summarize(entries)
	if opts.Origin.IsZero() && len(entries) > 0 {
		opts.Origin, _ = time.Parse(time.RFC3339Nano, entries[0].Timestamp)
	}
	fmt.Fprintf(bw, "%d lines of %d runs, %s from the first to the last\n", len(entries), len(s.outcome), s.span)

	fmt.Fprintf(bw, "\nlines per event:\n  %-26s %7s %7s %7s %7s %7s\n", "event", "debug", "info", "warn", "error", "total")
	for _, ev := range s.events {
		byLevel := s.perEvent[ev]
		total := 0
		fmt.Fprintf(bw, "  %-26s", ev)
		for _, l := range levels {
			fmt.Fprintf(bw, " %7d", byLevel[l])
			total += byLevel[l]
		}
		fmt.Fprintf(bw, " %7d\n", total)
	}

	fmt.Fprintf(bw, "\nruns per outcome:\n")
	for _, o := range s.outcomes() {
		fmt.Fprintf(bw, "  %-26s %7d\n", o.name, o.runs)
	}

	if len(s.attempts) > 0 {
		fmt.Fprintf(bw, "\nslowest attempts:\n")
		for _, a := range s.attempts[:min(slowest, len(s.attempts))] {
			fmt.Fprintf(bw, "  %8d ms  run_id=%s attempt=%s %s\n", a.ms, a.run, a.attempt, a.event)
		}
	}

	if err := section(bw, "lines outside any run", s.other, maxOtherLines, opts); err != nil {
		return err
	}
	if err := section(bw, "warn and error lines", s.failures, maxFailureLines, opts); err != nil {
		return err
	}
	example := "RUN_ID"
	if s.example != "" {
		example = s.example
	}
	fmt.Fprintf(bw, "\none run's timeline: %s %s\n", runCmd, example)
	return bw.Flush()
}

// section writes a titled timeline of at most limit entries, saying how
// many were left out.
func section(bw *bufio.Writer, title string, entries []Entry, limit int, opts Options) error {
	if len(entries) == 0 {
		return nil
	}
	fmt.Fprintf(bw, "\n%s (%d):\n", title, len(entries))
	for _, e := range entries[:min(limit, len(entries))] {
		// One at a time: lines of different runs, each shown with all its
		// fields rather than what changed since the line before.
		if err := Render(bw, []Entry{e}, opts); err != nil {
			return err
		}
	}
	if len(entries) > limit {
		fmt.Fprintf(bw, "  ... %d more (--json prints every line)\n", len(entries)-limit)
	}
	return nil
}

// summary is what RenderSummary prints, gathered in one pass.
type summary struct {
	span     string
	events   []string // in order of first appearance
	perEvent map[string]map[string]int
	// outcome is each run's final status, as its last final line says.
	outcome  map[string]string
	attempts []attempt // slowest first
	other    []Entry
	failures []Entry
	// example is a run to show how to see one: the first failed, else the
	// first.
	example string
}

// attempt is an ended attempt and how long it took.
type attempt struct {
	run, attempt, event string
	ms                  int64
}

type outcomeCount struct {
	name string
	runs int
}

// outcomes counts the runs per outcome, most first, then by name.
func (s summary) outcomes() []outcomeCount {
	counts := map[string]int{}
	for _, o := range s.outcome {
		counts[o]++
	}
	out := make([]outcomeCount, 0, len(counts))
	for name, n := range counts {
		out = append(out, outcomeCount{name, n})
	}
	slices.SortFunc(out, func(a, b outcomeCount) int {
		return cmp.Or(cmp.Compare(b.runs, a.runs), cmp.Compare(a.name, b.name))
	})
	return out
}

func summarize(entries []Entry) summary {
	s := summary{perEvent: map[string]map[string]int{}, outcome: map[string]string{}, span: "0.000s"}
	firstFailed := ""
	for _, e := range entries {
		ev, level, run := e.String(obs.KeyEvent), e.String(obs.KeyLevel), e.String(obs.KeyRunID)
		if s.perEvent[ev] == nil {
			s.perEvent[ev] = map[string]int{}
			s.events = append(s.events, ev)
		}
		s.perEvent[ev][level]++
		if level == "warn" || level == "error" {
			s.failures = append(s.failures, e)
		}
		if run == "" {
			s.other = append(s.other, e)
			continue
		}
		if s.example == "" {
			s.example = run
		}
		if _, ok := s.outcome[run]; !ok {
			s.outcome[run] = outcomeUnfinished
		}
		if o := finalOutcome(e); o != "" {
			s.outcome[run] = o
			if o == "failed" && firstFailed == "" {
				firstFailed = run
			}
		}
		if ev == obs.EventJobCompleted || ev == obs.EventJobFailed || ev == obs.EventJobCancelled {
			if ms, err := strconv.ParseInt(string(e.Get(obs.KeyDurationMS)), 10, 64); err == nil {
				s.attempts = append(s.attempts, attempt{run: run, attempt: string(e.Get(obs.KeyAttempt)), event: ev, ms: ms})
			}
		}
	}
	if firstFailed != "" {
		s.example = firstFailed
	}
	slices.SortStableFunc(s.attempts, func(a, b attempt) int { return cmp.Compare(b.ms, a.ms) })
	if len(entries) > 0 {
		first, err1 := time.Parse(time.RFC3339Nano, entries[0].Timestamp)
		last, err2 := time.Parse(time.RFC3339Nano, entries[len(entries)-1].Timestamp)
		if err1 == nil && err2 == nil {
			s.span = fmt.Sprintf("%.3fs", last.Sub(first).Seconds())
		}
	}
	return s
}

// finalOutcome is the run's final status that line e says, or "" for a
// line that does not end it.
func finalOutcome(e Entry) string {
	switch e.String(obs.KeyEvent) {
	case obs.EventJobCompleted:
		return "succeeded"
	case obs.EventJobCancelled:
		return "cancelled"
	case obs.EventRunFailed:
		return "failed"
	case obs.EventJobFailed:
		var retry bool
		if json.Unmarshal(e.Get(obs.KeyWillRetry), &retry) != nil || retry {
			return ""
		}
		if e.String(obs.KeyLevel) == "warn" { // a cancel asked meanwhile stopped the retry
			return "cancelled"
		}
		return "failed"
	case obs.EventRunReconciled:
		switch st := e.String(obs.KeyStatus); st {
		case "succeeded", "failed", "cancelled":
			return st
		default:
			return outcomeUnfinished
		}
	default:
		return ""
	}
}
