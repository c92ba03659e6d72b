// Package logline_test compares the cost of one job-scoped log line through
// the service's logger with slog's JSON handler, zap and zerolog, each set up
// to write the log contract's line.
package logline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backtestd/backtestd/internal/obs"
)

// The job-scoped line of the performance target: six fields bound to the
// job's context, three at the call site.
var (
	benchIDs = []string{
		"01a2175f-386b-7761-8b43-c03581273143", "01a2175f-1c3f-713c-8372-a4f7c790b938",
		"01a2175f-3852-7557-9ea6-462d12c4e90d", "01a2175f-386b-7761-8b43-c03581273144",
	}
	layout = "2006-01-02T15:04:05.000000Z"
)

func jobContext() context.Context {
	return obs.WithAttrs(context.Background(),
		slog.String(obs.KeyCorrelationID, benchIDs[0]), slog.String(obs.KeyUserID, benchIDs[1]),
		slog.String(obs.KeyStrategyID, benchIDs[2]), slog.String(obs.KeyRunID, benchIDs[3]),
		slog.Int64(obs.KeyJobID, 123456), slog.Int(obs.KeyAttempt, 1))
}

// peers writes the same line with each logger, configured for the log
// contract's shape (keys, level names, UTC microsecond timestamps).
type peer struct {
	name     string
	line     func()
	disabled func()
}

func peers(w io.Writer) []peer {
	ctx := jobContext()
	ours := obs.NewLogger(w, obs.Options{Service: "worker"})

	slogJSON := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{ //nolint:sloglint // the baseline
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey:
				return slog.String(obs.KeyTimestamp, a.Value.Time().UTC().Format(layout))
			case slog.LevelKey:
				return slog.String(obs.KeyLevel, "info")
			case slog.MessageKey:
				a.Key = obs.KeyEvent
			}
			return a
		},
	})).With(slog.String(obs.KeyService, "worker"))

	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.LevelKey, enc.MessageKey, enc.CallerKey, enc.StacktraceKey = "timestamp", "level", "event", "", ""
	enc.EncodeLevel = zapcore.LowercaseLevelEncoder
	enc.EncodeTime = func(t time.Time, pe zapcore.PrimitiveArrayEncoder) { pe.AppendString(t.UTC().Format(layout)) }
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), zapcore.InfoLevel)).
		With(zap.String(obs.KeyService, "worker"))

	zerolog.TimestampFieldName, zerolog.MessageFieldName, zerolog.TimeFieldFormat = "timestamp", "event", layout
	zero := zerolog.New(w).Level(zerolog.InfoLevel).With().Str(obs.KeyService, "worker").Logger()

	return []peer{
		{"obs", func() {
			ours.LogAttrs(ctx, slog.LevelInfo, obs.EventJobProgress,
				slog.Int(obs.KeyProgressPct, 40), slog.Int64(obs.KeyDurationMS, 12), slog.String(obs.KeyStatus, "running"))
		}, func() { ours.DebugContext(ctx, obs.EventJobProgress, slog.Int(obs.KeyProgressPct, 40)) }},
		{"slog_json", func() {
			slogJSON.LogAttrs(ctx, slog.LevelInfo, obs.EventJobProgress,
				slog.String(obs.KeyCorrelationID, benchIDs[0]), slog.String(obs.KeyUserID, benchIDs[1]),
				slog.String(obs.KeyStrategyID, benchIDs[2]), slog.String(obs.KeyRunID, benchIDs[3]),
				slog.Int64(obs.KeyJobID, 123456), slog.Int(obs.KeyAttempt, 1),
				slog.Int(obs.KeyProgressPct, 40), slog.Int64(obs.KeyDurationMS, 12), slog.String(obs.KeyStatus, "running"))
		}, func() { slogJSON.DebugContext(ctx, obs.EventJobProgress, slog.Int(obs.KeyProgressPct, 40)) }},
		{"zap", func() {
			zl.Info(obs.EventJobProgress,
				zap.String(obs.KeyCorrelationID, benchIDs[0]), zap.String(obs.KeyUserID, benchIDs[1]),
				zap.String(obs.KeyStrategyID, benchIDs[2]), zap.String(obs.KeyRunID, benchIDs[3]),
				zap.Int64(obs.KeyJobID, 123456), zap.Int(obs.KeyAttempt, 1),
				zap.Int(obs.KeyProgressPct, 40), zap.Int64(obs.KeyDurationMS, 12), zap.String(obs.KeyStatus, "running"))
		}, func() { zl.Debug(obs.EventJobProgress, zap.Int(obs.KeyProgressPct, 40)) }},
		{"zerolog", func() {
			zero.Info().Timestamp().
				Str(obs.KeyCorrelationID, benchIDs[0]).Str(obs.KeyUserID, benchIDs[1]).
				Str(obs.KeyStrategyID, benchIDs[2]).Str(obs.KeyRunID, benchIDs[3]).
				Int64(obs.KeyJobID, 123456).Int(obs.KeyAttempt, 1).
				Int(obs.KeyProgressPct, 40).Int64(obs.KeyDurationMS, 12).Str(obs.KeyStatus, "running").
				Msg(obs.EventJobProgress)
		}, func() { zero.Debug().Int(obs.KeyProgressPct, 40).Msg(obs.EventJobProgress) }},
	}
}

// The comparison is fair only if every peer writes the contract's line.
func TestPeersWriteTheSameLine(t *testing.T) {
	t.Parallel()
	var shapes [][]string
	for _, p := range peers(io.Discard) {
		var buf bytes.Buffer
		for _, q := range peers(&buf) {
			if q.name == p.name {
				q.line()
				q.disabled()
			}
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(buf.Bytes(), &m), "%s: %s", p.name, buf.String())
		require.Equal(t, 1, bytes.Count(buf.Bytes(), []byte("\n")), "%s: one line, the debug call disabled", p.name)
		require.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`, m[obs.KeyTimestamp], p.name)
		require.Equal(t, "info", m[obs.KeyLevel], p.name)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		shapes = append(shapes, keys)
	}
	for i := 1; i < len(shapes); i++ {
		require.Equal(t, shapes[0], shapes[i])
	}
	require.Len(t, shapes[0], 13, "4 header keys, 6 context fields, 3 call-site attributes")
}

// BenchmarkJobLine is one round of the comparison: bench/run runs the
// test binary once per round, so the peers alternate, and bench/benchratio
// turns the rounds into median ratios.
func BenchmarkJobLine(b *testing.B) {
	for _, p := range peers(io.Discard) {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.line()
			}
		})
	}
}

// BenchmarkDisabledDebug is the cost of a debug call below the level.
func BenchmarkDisabledDebug(b *testing.B) {
	for _, p := range peers(io.Discard) {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.disabled()
			}
		})
	}
}
