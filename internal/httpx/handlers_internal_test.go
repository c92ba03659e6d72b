package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
)

// A strategy that does not parse is the client's mistake when ParseStrategy
// says which fields are wrong; any other error would be the server's, and is
// answered and logged as one instead of saving an empty strategy.
func TestStrategyInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantParams []string
		wantLogged bool
	}{
		{
			name:       "validation error",
			err:        &backtest.ValidationError{Field: "params.fast_window", Message: "is required"},
			wantStatus: http.StatusUnprocessableEntity,
			wantParams: []string{"params.fast_window"},
		},
		{
			name: "several validation errors",
			err: backtest.ValidationErrors{
				{Field: "params.period", Message: "must be between 2 and 1000"},
				{Field: "params.oversold", Message: "must be between 0 and 100"},
			},
			wantStatus: http.StatusUnprocessableEntity,
			wantParams: []string{"params.period", "params.oversold"},
		},
		{
			name:       "validation error, wrapped",
			err:        fmt.Errorf("parse: %w", &backtest.ValidationError{Field: "kind", Message: "is required"}),
			wantStatus: http.StatusUnprocessableEntity,
			wantParams: []string{"kind"},
		},
		{
			name:       "any other error",
			err:        errors.New("strategy table corrupt"),
			wantStatus: http.StatusInternalServerError,
			wantLogged: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			logs := &logtest.Sink{}
			logger := obs.NewLogger(logs, obs.Options{Service: "server", Level: slog.LevelDebug})
			ctx := obs.WithAttrs(t.Context(), slog.String(obs.KeyCorrelationID, "cid-strategy"))
			rec := httptest.NewRecorder()
			req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/strategies", nil)
			if invalid, ok := strategyInvalid(logger, rec, req, tt.err); ok {
				writeInvalidParams(rec, req, invalid)
			}

			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			var problem Problem
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &problem))
			require.Equal(t, "cid-strategy", problem.CorrelationID)
			require.NotContains(t, rec.Body.String(), "corrupt", "a server fault is not described to the client")

			failed := logs.Find(t, obs.EventRequestFailed)
			if !tt.wantLogged {
				require.Nil(t, failed)
				var names []string
				for _, p := range problem.InvalidParams {
					names = append(names, p.Name)
				}
				require.Equal(t, tt.wantParams, names)
				require.Equal(t, "/problems/unprocessable", problem.Type)
				return
			}
			require.NotNil(t, failed)
			require.Equal(t, "error", failed[obs.KeyLevel])
			require.Equal(t, "cid-strategy", failed[obs.KeyCorrelationID])
			require.Equal(t, "parse strategy: strategy table corrupt", failed[obs.KeyError])
			require.NotEmpty(t, failed[obs.KeyTraceback])
		})
	}
}
