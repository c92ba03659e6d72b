package obs_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/backtestd/backtestd/internal/obs"
)

// A job-scoped line: six fields bound to the context, three at the call.
func jobContext() context.Context {
	return obs.WithAttrs(context.Background(),
		slog.String(obs.KeyCorrelationID, "01a2175f-386b-7761-8b43-c03581273143"),
		slog.String(obs.KeyUserID, "01a2175f-1c3f-713c-8372-a4f7c790b938"),
		slog.String(obs.KeyStrategyID, "01a2175f-3852-7557-9ea6-462d12c4e90d"),
		slog.String(obs.KeyRunID, "01a2175f-386b-7761-8b43-c03581273143"),
		slog.Int64(obs.KeyJobID, 123456),
		slog.Int(obs.KeyAttempt, 1))
}

func BenchmarkJobLine(b *testing.B) {
	b.Run("obs", func(b *testing.B) {
		l := obs.NewLogger(io.Discard, obs.Options{Service: "worker"})
		ctx := jobContext()
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(ctx, slog.LevelInfo, obs.EventJobProgress,
				slog.Int(obs.KeyProgressPct, 40), slog.Int64(obs.KeyDurationMS, 12), slog.String(obs.KeyStatus, "running"))
		}
	})
	b.Run("slog_json_inline", func(b *testing.B) {
		l := slog.New(slog.NewJSONHandler(io.Discard, nil)) //nolint:sloglint // the baseline: its encoding cost is what is measured
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			l.LogAttrs(ctx, slog.LevelInfo, obs.EventJobProgress,
				slog.String(obs.KeyCorrelationID, "01a2175f-386b-7761-8b43-c03581273143"),
				slog.String(obs.KeyUserID, "01a2175f-1c3f-713c-8372-a4f7c790b938"),
				slog.String(obs.KeyStrategyID, "01a2175f-3852-7557-9ea6-462d12c4e90d"),
				slog.String(obs.KeyRunID, "01a2175f-386b-7761-8b43-c03581273143"),
				slog.Int64(obs.KeyJobID, 123456), slog.Int(obs.KeyAttempt, 1),
				slog.Int(obs.KeyProgressPct, 40), slog.Int64(obs.KeyDurationMS, 12), slog.String(obs.KeyStatus, "running"))
		}
	})
	b.Run("obs_disabled_debug", func(b *testing.B) {
		l := obs.NewLogger(io.Discard, obs.Options{Service: "worker"})
		ctx := jobContext()
		b.ReportAllocs()
		for b.Loop() {
			l.DebugContext(ctx, obs.EventJobProgress, slog.Int(obs.KeyProgressPct, 40))
		}
	})
}
