package jobs

import (
	"encoding/json"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestReadJobFields(t *testing.T) {
	t.Parallel()
	ours, err := json.Marshal(BacktestArgs{CorrelationID: "bug-1234"})
	require.NoError(t, err)
	tests := []struct {
		name string
		args string
		want jobFields
	}{
		{"ours", string(ours), jobFields{
			RunID: "00000000-0000-0000-0000-000000000000", CorrelationID: "bug-1234",
			UserID: "00000000-0000-0000-0000-000000000000", StrategyID: "00000000-0000-0000-0000-000000000000",
		}},
		{
			"escaped value falls back to encoding/json", `{"correlation_id":"a\"b","run_id":"r"}`,
			jobFields{CorrelationID: `a"b`, RunID: "r"},
		},
		{"spaces after colons fall back too", `{"correlation_id": "c", "run_id": "r"}`, jobFields{CorrelationID: "c", RunID: "r"}},
		{"not ours", `{}`, jobFields{}},
		{"not JSON", `garbage`, jobFields{}},
		{"other keys fall back", `{"kind":"x","run_id":"r"}`, jobFields{RunID: "r"}},
		{"keys in another case fall back", `{"RUN_ID":"r"}`, jobFields{RunID: "r"}},
		{"a number falls back", `{"run_id":"r","n":1}`, jobFields{RunID: "r"}},
		{"trailing bytes fall back and fail", `{"run_id":"r"}x`, jobFields{}},
		{"unterminated", `{"run_id":"r"`, jobFields{}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, readJobFields([]byte(tt.args)), tt.name)
	}
}

// TestReadJobFieldsAgreesWithEncodingJSON cuts and splices real args every
// way and requires the fast reader to agree with encoding/json wherever
// encoding/json accepts the input.
func TestReadJobFieldsAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	ours, err := json.Marshal(BacktestArgs{
		RunID: uuid.MustParse("11111111-1111-7111-8111-111111111111"), CorrelationID: "bug-1234",
		UserID: uuid.MustParse("22222222-2222-7222-8222-222222222222"), StrategyID: uuid.MustParse("33333333-3333-7333-8333-333333333333"),
	})
	require.NoError(t, err)
	inputs := []string{string(ours)}
	for i := range len(ours) + 1 {
		inputs = append(inputs, string(ours[:i]), string(ours[i:]), string(ours[:i])+`"`+string(ours[i:]),
			string(ours[:i])+`\\`+string(ours[i:]), string(ours[:i])+` `+string(ours[i:]))
	}
	for _, in := range inputs {
		var want jobFields
		if json.Unmarshal([]byte(in), &want) != nil {
			continue // River's own decoding reports these
		}
		require.Equal(t, want, readJobFields([]byte(in)), "%s", in)
	}
}
