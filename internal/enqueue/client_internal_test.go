package enqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// River's error lines under a context the caller cancelled (an HTTP client
// that left) are written at info; under a live context or one past its
// deadline they stay errors.
func TestCallerLeftLowersOnlyCancelledErrors(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancelExpired := context.WithDeadline(t.Context(), time.Unix(0, 0))
	t.Cleanup(cancelExpired)
	tests := []struct {
		name      string
		ctx       context.Context
		level     slog.Level
		wantLevel string
	}{
		{"error, live context", t.Context(), slog.LevelError, "error"},
		{"error, caller left", cancelled, slog.LevelError, "info"},
		{"error, deadline passed", expired, slog.LevelError, "error"},
		{"warn, caller left", cancelled, slog.LevelWarn, "warn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			h := callerLeft{obs.NewLibraryLogger(obs.NewHandler(&buf, obs.Options{Service: "server"}), obs.EventRiverLog, slog.LevelWarn).Handler()}
			slog.New(h).With(slog.String("queues", "backtests")).Log(tt.ctx, tt.level, "Client: Failed to send job insert notification")
			var line map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
			require.Equal(t, tt.wantLevel, line[obs.KeyLevel])
			require.Equal(t, obs.EventRiverLog, line[obs.KeyEvent])
			require.Equal(t, "backtests", line["queues"], "attributes survive With")
		})
	}
}
