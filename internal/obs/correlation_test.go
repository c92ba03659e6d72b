package obs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

func TestResolveCorrelationID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		values       []string
		wantReused   bool
		wantRejected string
		wantLength   int
	}{
		{name: "absent header gets a new id", values: nil},
		{name: "uuid v4 is reused", values: []string{"0b7f1d3e-7f5a-4c1e-9a57-2f1a4b6c8d90"}, wantReused: true},
		{name: "32-hex nginx id is reused", values: []string{"4bf92f3577b34da6a3ce929d0e0e4736"}, wantReused: true},
		{name: "ulid is reused", values: []string{"01ARZ3NDEKTSV4RRFFQ69G5FAV"}, wantReused: true},
		{name: "every allowed punctuation", values: []string{"a.b_c:d+e=f/g@h-i"}, wantReused: true},
		{name: "128 characters is reused", values: []string{strings.Repeat("a", 128)}, wantReused: true},
		{name: "empty", values: []string{""}, wantRejected: obs.RejectEmpty},
		{name: "whitespace only", values: []string{"   "}, wantRejected: obs.RejectInvalid, wantLength: 3},
		{name: "inner space", values: []string{"a b"}, wantRejected: obs.RejectInvalid, wantLength: 3},
		{name: "129 characters", values: []string{strings.Repeat("a", 129)}, wantRejected: obs.RejectTooLong, wantLength: 129},
		{name: "CR LF with a forged line", values: []string{"x\r\n{\"level\":\"error\"}"}, wantRejected: obs.RejectInvalid, wantLength: 20},
		{name: "NUL byte", values: []string{"a\x00b"}, wantRejected: obs.RejectInvalid, wantLength: 3},
		{name: "ESC sequence", values: []string{"\x1b[31mred"}, wantRejected: obs.RejectInvalid, wantLength: 8},
		{name: "non-ASCII", values: []string{"caf\u00e9"}, wantRejected: obs.RejectInvalid, wantLength: 5},
		{name: "right-to-left override", values: []string{"a\u202eb"}, wantRejected: obs.RejectInvalid, wantLength: 5},
		{name: "quotes and backslash", values: []string{`a"b\c`}, wantRejected: obs.RejectInvalid, wantLength: 5},
		{name: "semicolon", values: []string{"a;b"}, wantRejected: obs.RejectInvalid, wantLength: 3},
		{name: "duplicate header", values: []string{"abc", "abc"}, wantRejected: obs.RejectMultiple, wantLength: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := obs.ResolveCorrelationID(tt.values)
			if len(tt.values) == 1 {
				require.Equal(t, tt.wantReused, obs.ValidCorrelationID(tt.values[0]), "one rule for the header and the query")
			}
			require.Equal(t, tt.wantRejected, got.Rejected)
			require.Equal(t, tt.wantLength, got.HeaderLength)
			if tt.wantReused {
				require.Equal(t, tt.values[0], got.ID)
				return
			}
			id, err := uuid.Parse(got.ID)
			require.NoError(t, err, "a generated id must be a UUID")
			require.Equal(t, uuid.Version(7), id.Version())
			require.Equal(t, uuid.RFC4122, id.Variant())
		})
	}
}

func TestNewCorrelationIDIsTimeOrdered(t *testing.T) {
	t.Parallel()
	a := obs.NewCorrelationID()
	ua, err := uuid.Parse(a)
	require.NoError(t, err)
	sec, nsec := ua.Time().UnixTime()
	require.InDelta(t, float64(time.Now().UnixMilli()), float64(sec*1000+nsec/1e6), 5000)
	require.NotEqual(t, a, obs.NewCorrelationID())
}
