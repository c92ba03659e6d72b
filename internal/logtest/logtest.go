// Package logtest collects log lines in tests: a writer safe for the
// goroutines of a server or a River client, read back as parsed JSON.
package logtest

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
)

// Sink is an io.Writer that keeps what is written to it.
type Sink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps p.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *Sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Lines parses every line written so far, failing tb on a line that is not
// a JSON object.
func (s *Sink) Lines(tb testing.TB) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(s.String())), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			tb.Fatalf("not a JSON line: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Find returns the first line whose event is event, or nil.
func (s *Sink) Find(tb testing.TB, event string) map[string]any {
	tb.Helper()
	for _, l := range s.Lines(tb) {
		if l["event"] == event {
			return l
		}
	}
	return nil
}
