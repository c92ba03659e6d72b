// Package tracecontext reads W3C trace context (the traceparent header) and
// binds a request's or a job's span to its context, so that its log lines
// carry trace_id and span_id.
package tracecontext

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"

	"github.com/backtestd/backtestd/internal/obs"
)

// Reasons a client's traceparent is ignored, logged as KeyReason.
const (
	RejectMultiple           = "multiple_values"
	RejectMalformed          = "malformed"
	RejectUnsupportedVersion = "unsupported_version"
	RejectZeroTraceID        = "zero_trace_id"
	RejectZeroParentID       = "zero_parent_id"
)

// traceparentLength is the length of a version 00 traceparent; later
// versions may add fields after it, each after a dash.
const traceparentLength = 55

// Span is a W3C trace context (https://www.w3.org/TR/trace-context/):
// the trace a request belongs to and the span that is its parent.
type Span struct {
	TraceID  string // 32 lowercase hex digits, not all zero
	ParentID string // 16 lowercase hex digits, not all zero: the caller's span
	Sampled  bool   // the caller's sampled flag, the only flag version 00 defines
}

// Header is how a client's traceparent headers were read.
type Header struct {
	Context      Span
	Valid        bool
	Rejected     string // why a value sent was ignored, or ""
	HeaderLength int    // the byte length of the ignored value(s)
}

// Resolve reads a request's traceparent header values. None is
// neither valid nor rejected; more than one, or one that does not parse, is
// rejected with the reason in Rejected.
func Resolve(values []string) Header {
	var t Header
	for _, v := range values {
		t.HeaderLength += len(v)
	}
	switch len(values) {
	case 0:
		return t
	case 1:
		t.Context, t.Rejected = Parse(values[0])
		t.Valid = t.Rejected == ""
	default:
		t.Rejected = RejectMultiple
	}
	if !t.Valid {
		t.Context = Span{}
	} else {
		t.HeaderLength = 0
	}
	return t
}

// Parse parses one traceparent value as the W3C recommendation's
// level 1 says a version 00 parser must: version-traceid-parentid-flags in
// lowercase hex, version ff invalid, all-zero IDs invalid, and a higher
// version read as 00 with whatever fields it adds after a dash ignored. It
// returns the reason the value is invalid, or "".
func Parse(v string) (Span, string) {
	v = strings.Trim(v, " \t") // optional whitespace around a header value
	if len(v) < traceparentLength {
		return Span{}, RejectMalformed
	}
	version := v[0:2]
	if !isLowerHex(version) || v[2] != '-' {
		return Span{}, RejectMalformed
	}
	switch {
	case version == "ff":
		return Span{}, RejectUnsupportedVersion
	case version == "00" && len(v) != traceparentLength:
		return Span{}, RejectMalformed
	case len(v) > traceparentLength && v[traceparentLength] != '-':
		return Span{}, RejectMalformed
	}
	traceID, parentID, flags := v[3:35], v[36:52], v[53:55]
	if v[35] != '-' || v[52] != '-' || !isLowerHex(traceID) || !isLowerHex(parentID) || !isLowerHex(flags) {
		return Span{}, RejectMalformed
	}
	switch {
	case strings.Trim(traceID, "0") == "":
		return Span{}, RejectZeroTraceID
	case strings.Trim(parentID, "0") == "":
		return Span{}, RejectZeroParentID
	}
	f, _ := hex.DecodeString(flags) // checked above
	return Span{TraceID: traceID, ParentID: parentID, Sampled: f[0]&1 == 1}, ""
}

// String formats the context as a version 00 traceparent value.
func (tc Span) String() string {
	flags := "00"
	if tc.Sampled {
		flags = "01"
	}
	return "00-" + tc.TraceID + "-" + tc.ParentID + "-" + flags
}

// Child returns the context of a new span, a child of tc's parent, in the
// same trace: what this process passes on as the parent of what it calls.
func (tc Span) Child() Span {
	tc.ParentID = NewSpanID()
	return tc
}

// NewSpanID returns 8 random bytes in lowercase hex, never all zero.
func NewSpanID() string {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
		if b != [8]byte{} {
			return hex.EncodeToString(b[:])
		}
	}
}

func isLowerHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

type traceKey struct{}

// With returns a context whose log lines carry span's trace_id and
// span_id, and from which From returns span: span is the work the
// context belongs to (a request, a job's attempt), its ParentID this
// process's span for it.
func With(ctx context.Context, span Span) context.Context {
	ctx = obs.WithAttrs(ctx, slog.String(obs.KeyTraceID, span.TraceID), slog.String(obs.KeySpanID, span.ParentID))
	return context.WithValue(ctx, traceKey{}, span)
}

// From returns the span bound by With, if any.
func From(ctx context.Context) (Span, bool) {
	tc, ok := ctx.Value(traceKey{}).(Span)
	return tc, ok
}
