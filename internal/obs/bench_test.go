package obs_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/backtestd/backtestd/internal/obs"
)

// The regression guard of the job-scoped line: six fields bound to the job's
// context, three at the call site. The comparison with slog, zap and zerolog
// is in the bench module (make bench).
func BenchmarkJobLine(b *testing.B) {
	ctx := obs.WithAttrs(context.Background(),
		slog.String(obs.KeyCorrelationID, "01a2175f-386b-7761-8b43-c03581273143"),
		slog.String(obs.KeyUserID, "01a2175f-1c3f-713c-8372-a4f7c790b938"),
		slog.String(obs.KeyStrategyID, "01a2175f-3852-7557-9ea6-462d12c4e90d"),
		slog.String(obs.KeyRunID, "01a2175f-386b-7761-8b43-c03581273144"),
		slog.Int64(obs.KeyJobID, 123456), slog.Int(obs.KeyAttempt, 1))
	logger := obs.NewLogger(io.Discard, obs.Options{Service: "worker"})
	b.ReportAllocs()
	for b.Loop() {
		logger.LogAttrs(ctx, slog.LevelInfo, obs.EventJobProgress,
			slog.Int(obs.KeyProgressPct, 40), slog.Int64(obs.KeyDurationMS, 12), slog.String(obs.KeyStatus, "running"))
	}
}

// The request-scoped line: a request binds its correlation ID, and its
// access line pays for pre-formatting it once.
func BenchmarkRequestLine(b *testing.B) {
	logger := obs.NewLogger(io.Discard, obs.Options{Service: "server"})
	base := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ctx := obs.WithAttrs(base, slog.String(obs.KeyCorrelationID, "01a2175f-386b-7761-8b43-c03581273143"))
		logger.LogAttrs(ctx, slog.LevelInfo, obs.EventRequestFinished,
			slog.String(obs.KeyMethod, "GET"), slog.String(obs.KeyPath, "/backtests/01a2175f-386b-7761-8b43-c03581273144"),
			slog.String(obs.KeyRoute, "/backtests/{id}"), slog.Int(obs.KeyStatusCode, 200), slog.Int64(obs.KeyDurationMS, 3))
	}
}
