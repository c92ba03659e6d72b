// Package timeline gathers the log lines of one correlation ID, run or job
// from the output of several processes and renders them as a timeline: the
// bug-report workflow of the trace command.
package timeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/backtestd/backtestd/internal/obs"
)

// Selector picks lines whose Field (a top-level key) equals Value.
type Selector struct {
	Field string // obs.KeyCorrelationID, obs.KeyRunID, obs.KeyJobID or obs.KeyTraceID
	Value string
}

// Entry is one selected line.
type Entry struct {
	// Raw is the line's JSON object, without any compose prefix.
	Raw []byte
	// Fields are the object's top-level keys and raw values, in order.
	Fields []Field
	// Timestamp is the line's timestamp string ("" if it has none).
	Timestamp string
}

// Field is one top-level key of a line and its raw JSON value.
type Field struct {
	Key   string
	Value json.RawMessage
}

// Get returns the raw value of key, or nil.
func (e Entry) Get(key string) json.RawMessage {
	for i := len(e.Fields) - 1; i >= 0; i-- { // the last one wins, as in jq
		if e.Fields[i].Key == key {
			return e.Fields[i].Value
		}
	}
	return nil
}

// String returns the value of key if it is a JSON string.
func (e Entry) String(key string) string {
	var s string
	if v := e.Get(key); v != nil && json.Unmarshal(v, &s) == nil {
		return s
	}
	return ""
}

// maxLine bounds the lines looked at; the log contract's are at most 16 KiB.
const maxLine = 1 << 20

// Select reads r and returns the lines sel picks, sorted by timestamp (lines
// with equal timestamps keep their input order). It reads in large chunks
// and looks for the selected value in the raw bytes first, so only lines
// that contain it are parsed: gigabytes stream through at close to the
// speed of reading them. A line may carry a prefix before its JSON object
// (docker compose's "server-1  | "); lines that are not JSON objects, and
// lines over 1 MiB, are skipped.
func Select(r io.Reader, sel Selector) ([]Entry, error) {
	needle := []byte(sel.Value)
	if len(needle) == 0 {
		return nil, errors.New("nothing to select: the value is empty")
	}
	var entries []Entry
	err := scanMatches(r, needle, func(line []byte) {
		if e, ok := match(line, sel); ok {
			entries = append(entries, e)
		}
	})
	slices.SortStableFunc(entries, func(a, b Entry) int { return strings.Compare(a.Timestamp, b.Timestamp) })
	return entries, err
}

// scanMatches calls fn with each line of r that contains needle. It looks
// for needle across a whole chunk at once and finds the line around each
// hit, instead of looking at every line.
func scanMatches(r io.Reader, needle []byte, fn func(line []byte)) error {
	buf := make([]byte, 4<<20)
	held := 0         // bytes of buf holding input not yet looked at
	skipping := false // inside a line too long for buf
	for {
		n, err := r.Read(buf[held:])
		fresh := buf[held : held+n] // only new bytes are searched for newlines
		held += n
		eof := errors.Is(err, io.EOF)
		if err != nil && !eof {
			return fmt.Errorf("read: %w", err)
		}
		if skipping {
			i := bytes.IndexByte(fresh, '\n')
			if i < 0 {
				held = 0
				if eof {
					return nil
				}
				continue
			}
			held = copy(buf, fresh[i+1:])
			fresh = buf[:held]
			skipping = false
		}
		data := buf[:held]
		if eof {
			eachMatch(data, needle, fn) // the last line may lack its newline
			return nil
		}
		if j := bytes.LastIndexByte(fresh, '\n'); j >= 0 {
			last := held - len(fresh) + j
			eachMatch(data[:last], needle, fn)
			held = copy(buf, data[last+1:])
		}
		if held == len(buf) {
			skipping, held = true, 0
		}
	}
}

// eachMatch calls fn with each line of region (newline-separated) that
// contains needle.
func eachMatch(region, needle []byte, fn func(line []byte)) {
	for off := 0; off < len(region); {
		i := bytes.Index(region[off:], needle)
		if i < 0 {
			return
		}
		i += off
		ls := bytes.LastIndexByte(region[:i], '\n') + 1
		le := len(region)
		if j := bytes.IndexByte(region[i:], '\n'); j >= 0 {
			le = i + j
		}
		if le-ls <= maxLine {
			fn(region[ls:le])
		}
		off = le + 1
	}
}

// match parses a candidate line and checks the selector exactly, as the jq
// recipe does: sub("^[^{]*"; "") | fromjson? | objects | select(.F == V).
func match(line []byte, sel Selector) (Entry, bool) {
	i := bytes.IndexByte(line, '{')
	if i < 0 {
		return Entry{}, false
	}
	raw := bytes.TrimRight(line[i:], "\r")
	fields, ok := parseObject(raw)
	if !ok {
		return Entry{}, false
	}
	e := Entry{Fields: fields}
	v := e.Get(sel.Field)
	if v == nil || !equalValue(v, sel.Value) {
		return Entry{}, false
	}
	e.Raw = append([]byte(nil), raw...)
	for k := range e.Fields { // detach from the read buffer
		e.Fields[k].Value = append(json.RawMessage(nil), e.Fields[k].Value...)
	}
	e.Timestamp = e.String(obs.KeyTimestamp)
	return e, true
}

// equalValue compares a raw JSON value with the selected value: a string
// equal to it, or, for numeric IDs such as job_id, a number equal to it.
func equalValue(v json.RawMessage, want string) bool {
	switch {
	case len(v) > 0 && v[0] == '"':
		var s string
		return json.Unmarshal(v, &s) == nil && s == want
	case len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')):
		a, err1 := strconv.ParseFloat(string(v), 64)
		b, err2 := strconv.ParseFloat(want, 64)
		return err1 == nil && err2 == nil && a == b
	default:
		return false
	}
}

// parseObject splits a JSON object into its top-level fields, keeping their
// order; it fails on anything that is not exactly one valid object.
func parseObject(raw []byte) ([]Field, bool) {
	if !json.Valid(raw) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var fields []Field
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		fields = append(fields, Field{Key: key, Value: v})
	}
	return fields, true
}
