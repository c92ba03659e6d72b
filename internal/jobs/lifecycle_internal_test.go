package jobs

import (
	"encoding/json"
	"testing"

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
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, readJobFields([]byte(tt.args)), tt.name)
	}
}
