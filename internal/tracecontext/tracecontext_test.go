package tracecontext_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/tracecontext"
)

// The cases of the W3C trace-context test suite (test/test.py) for the
// traceparent header, and the recommendation's examples.
func TestParseTraceparent(t *testing.T) {
	t.Parallel()
	const (
		traceID  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parentID = "00f067aa0ba902b7"
	)
	tests := []struct {
		name        string
		value       string
		wantReason  string
		wantSampled bool
	}{
		{name: "version 00, sampled", value: "00-" + traceID + "-" + parentID + "-01", wantSampled: true},
		{name: "version 00, not sampled", value: "00-" + traceID + "-" + parentID + "-00"},
		{name: "unknown flags are read, only sampled kept", value: "00-" + traceID + "-" + parentID + "-ff", wantSampled: true},
		{name: "surrounding whitespace", value: " \t00-" + traceID + "-" + parentID + "-01\t ", wantSampled: true},
		{name: "future version", value: "cc-" + traceID + "-" + parentID + "-01", wantSampled: true},
		{name: "future version with more fields", value: "cc-" + traceID + "-" + parentID + "-01-what-the-future-will-be-like", wantSampled: true},
		{name: "future version, more without a dash", value: "cc-" + traceID + "-" + parentID + "-01what-the-future-will-be-like", wantReason: tracecontext.RejectMalformed},
		{name: "version 00 with more fields", value: "00-" + traceID + "-" + parentID + "-01-what-the-future-will-be-like", wantReason: tracecontext.RejectMalformed},
		{name: "version ff", value: "ff-" + traceID + "-" + parentID + "-01", wantReason: tracecontext.RejectUnsupportedVersion},
		{name: "version uppercase", value: "0A-" + traceID + "-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "version not hex", value: "0g-" + traceID + "-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "version one digit", value: "0-" + traceID + "-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "trace id uppercase", value: "00-" + strings.ToUpper(traceID) + "-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "trace id all zero", value: "00-00000000000000000000000000000000-" + parentID + "-01", wantReason: tracecontext.RejectZeroTraceID},
		{name: "trace id too short", value: "00-" + traceID[1:] + "-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "trace id too long", value: "00-" + traceID + "0-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "trace id not hex", value: "00-" + traceID[:31] + ".-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "parent id uppercase", value: "00-" + traceID + "-00F067AA0BA902B7-01", wantReason: tracecontext.RejectMalformed},
		{name: "parent id all zero", value: "00-" + traceID + "-0000000000000000-01", wantReason: tracecontext.RejectZeroParentID},
		{name: "parent id too short", value: "00-" + traceID + "-" + parentID[1:] + "-01", wantReason: tracecontext.RejectMalformed},
		{name: "flags not hex", value: "00-" + traceID + "-" + parentID + "-0.", wantReason: tracecontext.RejectMalformed},
		{name: "flags uppercase", value: "00-" + traceID + "-" + parentID + "-0A", wantReason: tracecontext.RejectMalformed},
		{name: "flags one digit", value: "00-" + traceID + "-" + parentID + "-1", wantReason: tracecontext.RejectMalformed},
		{name: "underscores for dashes", value: "00_" + traceID + "_" + parentID + "_01", wantReason: tracecontext.RejectMalformed},
		{name: "empty", value: "", wantReason: tracecontext.RejectMalformed},
		{name: "two values in one header", value: "00-" + traceID + "-" + parentID + "-01,00-" + traceID + "-" + parentID + "-01", wantReason: tracecontext.RejectMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tc, reason := tracecontext.Parse(tt.value)
			require.Equal(t, tt.wantReason, reason)
			if tt.wantReason != "" {
				require.Equal(t, tracecontext.Span{}, tc)
				return
			}
			require.Equal(t, tracecontext.Span{TraceID: traceID, ParentID: parentID, Sampled: tt.wantSampled}, tc)
		})
	}
}

func TestResolveTraceparent(t *testing.T) {
	t.Parallel()
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name       string
		values     []string
		wantValid  bool
		wantReason string
		wantLength int
	}{
		{name: "none", values: nil},
		{name: "one valid", values: []string{valid}, wantValid: true},
		{name: "two, even if equal", values: []string{valid, valid}, wantReason: tracecontext.RejectMultiple, wantLength: 2 * len(valid)},
		{name: "one invalid", values: []string{"00-xyz"}, wantReason: tracecontext.RejectMalformed, wantLength: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := tracecontext.Resolve(tt.values)
			require.Equal(t, tt.wantValid, got.Valid)
			require.Equal(t, tt.wantReason, got.Rejected)
			require.Equal(t, tt.wantLength, got.HeaderLength)
			if !tt.wantValid {
				require.Equal(t, tracecontext.Span{}, got.Context)
			}
		})
	}
}

func TestTraceContextChild(t *testing.T) {
	t.Parallel()
	parent, reason := tracecontext.Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	require.Empty(t, reason)
	child := parent.Child()
	require.Equal(t, parent.TraceID, child.TraceID)
	require.NotEqual(t, parent.ParentID, child.ParentID)
	// What this process sends on parses back to itself.
	again, reason := tracecontext.Parse(child.String())
	require.Empty(t, reason)
	require.Equal(t, child, again)
}
