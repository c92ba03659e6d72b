package obs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
)

// Reasons a client's traceparent is ignored, logged as KeyReason.
const (
	TraceparentMultiple           = "multiple_values"
	TraceparentMalformed          = "malformed"
	TraceparentUnsupportedVersion = "unsupported_version"
	TraceparentZeroTraceID        = "zero_trace_id"
	TraceparentZeroParentID       = "zero_parent_id"
)

// traceparentLength is the length of a version 00 traceparent; later
// versions may add fields after it, each after a dash.
const traceparentLength = 55

// TraceContext is a W3C trace context (https://www.w3.org/TR/trace-context/):
// the trace a request belongs to and the span that is its parent.
type TraceContext struct {
	TraceID  string // 32 lowercase hex digits, not all zero
	ParentID string // 16 lowercase hex digits, not all zero: the caller's span
	Sampled  bool   // the caller's sampled flag, the only flag version 00 defines
}

// Traceparent is how a client's traceparent headers were read.
type Traceparent struct {
	Context      TraceContext
	Valid        bool
	Rejected     string // why a value sent was ignored, or ""
	HeaderLength int    // the byte length of the ignored value(s)
}

// ResolveTraceparent reads a request's traceparent header values. None is
// neither valid nor rejected; more than one, or one that does not parse, is
// rejected with the reason in Rejected.
func ResolveTraceparent(values []string) Traceparent {
	var t Traceparent
	for _, v := range values {
		t.HeaderLength += len(v)
	}
	switch len(values) {
	case 0:
		return t
	case 1:
		t.Context, t.Rejected = ParseTraceparent(values[0])
		t.Valid = t.Rejected == ""
	default:
		t.Rejected = TraceparentMultiple
	}
	if !t.Valid {
		t.Context = TraceContext{}
	} else {
		t.HeaderLength = 0
	}
	return t
}

// ParseTraceparent parses one traceparent value as the W3C recommendation's
// level 1 says a version 00 parser must: version-traceid-parentid-flags in
// lowercase hex, version ff invalid, all-zero IDs invalid, and a higher
// version read as 00 with whatever fields it adds after a dash ignored. It
// returns the reason the value is invalid, or "".
func ParseTraceparent(v string) (TraceContext, string) {
	v = strings.Trim(v, " \t") // optional whitespace around a header value
	if len(v) < traceparentLength {
		return TraceContext{}, TraceparentMalformed
	}
	version := v[0:2]
	if !isLowerHex(version) || v[2] != '-' {
		return TraceContext{}, TraceparentMalformed
	}
	switch {
	case version == "ff":
		return TraceContext{}, TraceparentUnsupportedVersion
	case version == "00" && len(v) != traceparentLength:
		return TraceContext{}, TraceparentMalformed
	case len(v) > traceparentLength && v[traceparentLength] != '-':
		return TraceContext{}, TraceparentMalformed
	}
	traceID, parentID, flags := v[3:35], v[36:52], v[53:55]
	if v[35] != '-' || v[52] != '-' || !isLowerHex(traceID) || !isLowerHex(parentID) || !isLowerHex(flags) {
		return TraceContext{}, TraceparentMalformed
	}
	switch {
	case strings.Trim(traceID, "0") == "":
		return TraceContext{}, TraceparentZeroTraceID
	case strings.Trim(parentID, "0") == "":
		return TraceContext{}, TraceparentZeroParentID
	}
	f, _ := hex.DecodeString(flags) // checked above
	return TraceContext{TraceID: traceID, ParentID: parentID, Sampled: f[0]&1 == 1}, ""
}

// String formats the context as a version 00 traceparent value.
func (tc TraceContext) String() string {
	flags := "00"
	if tc.Sampled {
		flags = "01"
	}
	return "00-" + tc.TraceID + "-" + tc.ParentID + "-" + flags
}

// Child returns the context of a new span, a child of tc's parent, in the
// same trace: what this process passes on as the parent of what it calls.
func (tc TraceContext) Child() TraceContext {
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

// WithTrace returns a context whose log lines carry span's trace_id and
// span_id, and from which TraceFrom returns span: span is the work the
// context belongs to (a request, a job's attempt), its ParentID this
// process's span for it.
func WithTrace(ctx context.Context, span TraceContext) context.Context {
	ctx = WithAttrs(ctx, slog.String(KeyTraceID, span.TraceID), slog.String(KeySpanID, span.ParentID))
	return context.WithValue(ctx, traceKey{}, span)
}

// TraceFrom returns the span bound by WithTrace, if any.
func TraceFrom(ctx context.Context) (TraceContext, bool) {
	tc, ok := ctx.Value(traceKey{}).(TraceContext)
	return tc, ok
}
