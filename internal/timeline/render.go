package timeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/backtestd/backtestd/internal/obs"
)

// Options configures Render.
type Options struct {
	// Color marks levels with ANSI colours: for a terminal only.
	Color bool
	// Origin, if set, is the instant offsets count from, instead of the
	// first entry's: a summary shows extracts of one timeline.
	Origin time.Time
}

// header keys are shown in the fixed columns, not among the fields.
var header = map[string]bool{
	obs.KeyTimestamp: true, obs.KeyLevel: true, obs.KeyEvent: true, obs.KeyService: true, obs.KeyTraceback: true,
}

// sticky keys repeat on every line of a request or job; a field of these is
// shown only when its value changes, so each line shows what is new.
var sticky = map[string]bool{
	obs.KeyCorrelationID: true, obs.KeyUserID: true, obs.KeyStrategyID: true, obs.KeyRunID: true, obs.KeyJobKind: true,
}

var levelColor = map[string]string{"debug": "\x1b[90m", "info": "\x1b[36m", "warn": "\x1b[33m", "error": "\x1b[31m"}

const colorReset = "\x1b[0m"

// Render writes entries as a timeline: offset from the first line, service,
// level, event and the other fields, with tracebacks as indented frames.
func Render(w io.Writer, entries []Entry, opts Options) error {
	bw := bufio.NewWriter(w)
	t0 := opts.Origin
	for _, e := range entries {
		if !t0.IsZero() {
			break
		}
		if t, err := time.Parse(time.RFC3339Nano, e.Timestamp); err == nil {
			t0 = t
			break
		}
	}
	seen := map[string]string{}
	for _, e := range entries {
		offset := "?"
		if t, err := time.Parse(time.RFC3339Nano, e.Timestamp); err == nil && !t0.IsZero() {
			offset = fmt.Sprintf("+%.3fs", t.Sub(t0).Seconds())
		}
		level := e.String(obs.KeyLevel)
		shownLevel := fmt.Sprintf("%-5s", level)
		if c, ok := levelColor[level]; ok && opts.Color {
			shownLevel = c + shownLevel + colorReset
		}
		fmt.Fprintf(bw, "%9s  %-8s %s  %-24s", offset, e.String(obs.KeyService), shownLevel, e.String(obs.KeyEvent))
		for _, f := range e.Fields {
			if header[f.Key] {
				continue
			}
			v := formatValue(f.Value)
			if sticky[f.Key] {
				if seen[f.Key] == v {
					continue
				}
				seen[f.Key] = v
			}
			fmt.Fprintf(bw, " %s=%s", f.Key, v)
		}
		_ = bw.WriteByte('\n') // a bufio error resurfaces at Flush
		writeTraceback(bw, e.Get(obs.KeyTraceback))
	}
	return bw.Flush()
}

// formatValue shows a JSON value compactly: plain strings bare, others as
// JSON.
func formatValue(v json.RawMessage) string {
	var s string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil {
		if s != "" && !strings.ContainsAny(s, " \t\r\n\"=\\") && isPrint(s) {
			return s
		}
		return string(v)
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) == nil {
		return buf.String()
	}
	return string(v)
}

func isPrint(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' || r == '\u202e' {
			return false
		}
	}
	return true
}

func writeTraceback(w io.Writer, raw json.RawMessage) {
	var frames obs.Traceback
	if raw == nil || json.Unmarshal(raw, &frames) != nil {
		return
	}
	for _, f := range frames {
		if f.File == "" {
			fmt.Fprintf(w, "%13s%s\n", "", f.Function) // a "frames skipped" marker
			continue
		}
		fmt.Fprintf(w, "%13sat %s (%s:%d)\n", "", f.Function, f.File, f.Line)
	}
}
