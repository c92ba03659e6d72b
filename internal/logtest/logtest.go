// Package logtest collects log lines in tests: a writer safe for the
// goroutines of a server or a River client, read back as parsed JSON and
// checked against the log contract, so that every test that logs enforces
// the catalog of package obs.
package logtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/backtestd/backtestd/internal/logcatalog"
)

// Sink is an io.Writer that keeps what is written to it.
type Sink struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// checked counts the lines already checked against the contract: the
	// polling tests read the same lines many times.
	checked int
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
// a JSON object and marking it failed for a line that breaks the log
// contract (see Check). It only marks the failure, so that it can be called
// from the goroutine of require.Eventually.
func (s *Sink) Lines(tb testing.TB) []map[string]any {
	tb.Helper()
	s.mu.Lock()
	checked := s.checked
	s.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace([]byte(s.String())), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			tb.Fatalf("not a JSON line: %q: %v", line, err)
		}
		if len(out) >= checked {
			if err := Check(line); err != nil {
				tb.Error(err)
			}
		}
		out = append(out, m)
	}
	s.mu.Lock()
	s.checked = max(s.checked, len(out))
	s.mu.Unlock()
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

// schema is the log contract, compiled once: the catalog it comes from is
// fixed when the tests run.
var schema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	raw, err := logcatalog.Schema()
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse the log schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(logcatalog.SchemaID, doc); err != nil {
		return nil, fmt.Errorf("add the log schema: %w", err)
	}
	compiled, err := c.Compile(logcatalog.SchemaID)
	if err != nil {
		return nil, fmt.Errorf("compile the log schema: %w", err)
	}
	return compiled, nil
})

// Check returns an error when line breaks the log contract: an event the
// catalog (internal/logcatalog) does not know, a required key missing,
// a key the event does not list, a value of the wrong shape, a level or a
// service the event is not written at. It checks the line against the
// JSON Schema generated from the catalog, the one in docs/log-schema.json.
func Check(line []byte) error {
	s, err := schema()
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return fmt.Errorf("not a JSON line: %q: %w", line, err)
	}
	if err := s.Validate(inst); err != nil {
		return fmt.Errorf("log line breaks the contract of internal/logcatalog:\n%s\n%w", line, err)
	}
	return nil
}
