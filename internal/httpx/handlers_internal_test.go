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
// says which field is wrong; any other error would be the server's, and is
// answered and logged as one instead of saving an empty strategy.
func TestStrategyError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantLogged bool
	}{
		{
			name:       "validation error",
			err:        &backtest.ValidationError{Field: "params.fast_window", Message: "is required"},
			wantStatus: http.StatusUnprocessableEntity,
		},
		{
			name:       "validation error, wrapped",
			err:        fmt.Errorf("parse: %w", &backtest.ValidationError{Field: "kind", Message: "is required"}),
			wantStatus: http.StatusUnprocessableEntity,
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
			strategyError(logger, rec, httptest.NewRequestWithContext(ctx, http.MethodPost, "/strategies", nil), tt.err)

			require.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			var problem Problem
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &problem))
			require.Equal(t, "cid-strategy", problem.CorrelationID)
			require.NotContains(t, rec.Body.String(), "corrupt", "a server fault is not described to the client")

			failed := logs.Find(t, obs.EventRequestFailed)
			if !tt.wantLogged {
				require.Nil(t, failed)
				require.Len(t, problem.InvalidParams, 1)
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
