package obs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"testing/slogtest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

func parseLines(t *testing.T, out []byte) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		require.LessOrEqual(t, len(line)+1, obs.MaxLineBytes)
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m), "line is not JSON: %q", line)
		lines = append(lines, m)
	}
	return lines
}

func TestHandlerSlogtest(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := obs.NewHandler(&buf, obs.Options{Service: "test", Level: slog.LevelDebug})
	results := func() []map[string]any {
		lines := parseLines(t, buf.Bytes())
		for _, m := range lines {
			// slogtest looks for slog's own key names.
			if v, ok := m[obs.KeyTimestamp]; ok {
				m[slog.TimeKey] = v
			}
			m[slog.MessageKey] = m[obs.KeyEvent]
		}
		return lines
	}
	require.NoError(t, slogtest.TestHandler(h, results))
}

func TestHandlerGoldenLines(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 26, 10, 9, 14, 123456789, time.FixedZone("CET", 3600))
	tests := []struct {
		name  string
		ctx   func(context.Context) context.Context
		log   func(l *slog.Logger, ctx context.Context)
		level slog.Level
		want  string
	}{
		{
			name: "header keys",
			log:  func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "server_started") },
			want: `{"timestamp":"2026-11-26T09:09:14.123456Z","level":"info","event":"server_started","service":"server"}`,
		},
		{
			name: "context fields and call-site attributes",
			ctx: func(ctx context.Context) context.Context {
				ctx = obs.WithAttrs(ctx, slog.String(obs.KeyCorrelationID, "abc"))
				return obs.WithAttrs(ctx, slog.String(obs.KeyUserID, "u1"), slog.Int64(obs.KeyJobID, 7))
			},
			log: func(l *slog.Logger, ctx context.Context) {
				l.WarnContext(ctx, "job_progress", slog.Int(obs.KeyProgressPct, 40), slog.Bool("ok", true), slog.Float64("x", 0.5))
			},
			want: `{"timestamp":"2026-11-26T09:09:14.123456Z","level":"warn","event":"job_progress","service":"server",
				"correlation_id":"abc","user_id":"u1","job_id":7,"progress_pct":40,"ok":true,"x":0.5}`,
		},
		{
			name: "context fields stay top level under With and WithGroup",
			ctx: func(ctx context.Context) context.Context {
				return obs.WithAttrs(ctx, slog.String(obs.KeyCorrelationID, "abc"))
			},
			log: func(l *slog.Logger, ctx context.Context) {
				grouped := l.With(slog.String("a", "1")).WithGroup("g") //nolint:forbidigo // the handler must cope all the same
				grouped.With(slog.Int("b", 2)).ErrorContext(ctx, "e", slog.Int("c", 3))
			},
			want: `{"timestamp":"2026-11-26T09:09:14.123456Z","level":"error","event":"e","service":"server",
				"correlation_id":"abc","a":"1","g":{"b":2,"c":3}}`,
		},
		{
			name: "levels map onto four names",
			log: func(l *slog.Logger, ctx context.Context) {
				l.Log(ctx, slog.LevelWarn+2, "x")
			},
			want: `{"timestamp":"2026-11-26T09:09:14.123456Z","level":"warn","event":"x","service":"server"}`,
		},
		{
			name: "values JSON cannot hold",
			log: func(l *slog.Logger, ctx context.Context) {
				l.InfoContext(ctx, "x", slog.Float64("nan", math.NaN()), slog.Any("bad", badJSON{N: 1}),
					slog.Any("err", errors.New("boom")), slog.Any("panicky", panicky{}), slog.Any("nil", nil),
					slog.String("bad_utf8", "a\xffb\u2028"), slog.Duration("d", time.Second))
			},
			want: `{"timestamp":"2026-11-26T09:09:14.123456Z","level":"info","event":"x","service":"server",
				"nan":"NaN","bad":"!MARSHAL obs_test.badJSON: {N:1}","err":"boom","panicky":"!PANIC in obs_test.panicky: marshal exploded",
				"nil":null,"bad_utf8":"a\ufffdb\u2028","d":1000000000}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			h := obs.NewHandler(&buf, obs.Options{Service: "server"})
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(ctx)
			}
			tt.log(slog.New(fixedTime{h, at}), ctx)
			got := parseLines(t, buf.Bytes())
			require.Len(t, got, 1)
			var wantMap map[string]any
			require.NoError(t, json.Unmarshal([]byte(tt.want), &wantMap))
			require.Equal(t, wantMap, got[0])
		})
	}
}

// fixedTime pins the record time so golden lines can be compared.
type fixedTime struct {
	slog.Handler
	at time.Time
}

func (f fixedTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = f.at
	return f.Handler.Handle(ctx, r)
}

func (f fixedTime) WithAttrs(attrs []slog.Attr) slog.Handler {
	return fixedTime{f.Handler.WithAttrs(attrs), f.at}
}

func (f fixedTime) WithGroup(name string) slog.Handler {
	return fixedTime{f.Handler.WithGroup(name), f.at}
}

type badJSON struct{ N int }

func (badJSON) MarshalJSON() ([]byte, error) { return nil, errors.New("no") }

type panicky struct{}

func (panicky) MarshalJSON() ([]byte, error) { panic("marshal exploded") }

func TestHandlerBoundsEveryLine(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("é", 600_000) // 1.2 MB
	many := make([]any, 0, 4000)
	for range 2000 {
		many = append(many, slog.String("k", strings.Repeat("x", 100)))
	}
	tests := []struct {
		name  string
		log   func(l *slog.Logger, ctx context.Context)
		check func(t *testing.T, m map[string]any)
	}{
		{
			name: "1 MB error text is cut with a marker",
			log: func(l *slog.Logger, ctx context.Context) {
				l.ErrorContext(ctx, "job_failed", slog.String(obs.KeyError, huge))
			},
			check: func(t *testing.T, m map[string]any) {
				t.Helper()
				s, ok := m[obs.KeyError].(string)
				require.True(t, ok)
				require.Contains(t, s, "...[truncated ")
				require.True(t, strings.HasPrefix(s, "éé"))
			},
		},
		{
			name: "thousands of attributes fall back to a minimal line",
			log: func(l *slog.Logger, ctx context.Context) {
				l.InfoContext(ctx, "x", many...)
			},
			check: func(t *testing.T, m map[string]any) {
				t.Helper()
				require.Equal(t, true, m[obs.KeyLineTruncate])
				require.Equal(t, "abc", m[obs.KeyCorrelationID])
				require.Greater(t, m[obs.KeyLineBytes], float64(obs.MaxLineBytes))
			},
		},
		{
			name: "a deep panic keeps head and tail of its traceback",
			log: func(l *slog.Logger, ctx context.Context) {
				tb := deepPanic(5000)
				l.ErrorContext(ctx, "job_failed", slog.Any(obs.KeyTraceback, tb), slog.String(obs.KeyError, huge))
			},
			check: func(t *testing.T, m map[string]any) {
				t.Helper()
				frames, ok := m[obs.KeyTraceback].([]any)
				require.True(t, ok)
				require.Less(t, len(frames), 100)
				first, ok := frames[0].(map[string]any)
				require.True(t, ok)
				require.Contains(t, first["function"], "obs_test.recurse")
				require.Equal(t, "github.com/backtestd/backtestd/internal/obs_test/handler_test.go", first["file"])
				var skipped bool
				for _, f := range frames {
					fm, _ := f.(map[string]any)
					if s, _ := fm["function"].(string); strings.Contains(s, "frames skipped") {
						skipped = true
					}
				}
				require.True(t, skipped, "the cut must be marked")
				last, ok := frames[len(frames)-1].(map[string]any)
				require.True(t, ok)
				require.Equal(t, "runtime.goexit", last["function"])
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			l := obs.NewLogger(&buf, obs.Options{Service: "worker"})
			ctx := obs.WithAttrs(t.Context(), slog.String(obs.KeyCorrelationID, "abc"))
			tt.log(l, ctx)
			require.LessOrEqual(t, buf.Len(), obs.MaxLineBytes)
			require.Equal(t, 1, strings.Count(buf.String(), "\n"))
			lines := parseLines(t, buf.Bytes())
			require.Len(t, lines, 1)
			tt.check(t, lines[0])
		})
	}
}

func deepPanic(depth int) (tb obs.Traceback) {
	defer func() {
		if recover() != nil {
			tb = obs.PanicStack()
		}
	}()
	if recurse(depth) >= 0 {
		panic("unreachable: recurse always panics")
	}
	return tb
}

func recurse(n int) int {
	if n == 0 {
		var s []int
		return s[n] // a runtime error: the first frame must still be ours
	}
	return recurse(n-1) + 1
}

func TestHandlerSurvivesBrokenWriter(t *testing.T) {
	t.Parallel()
	l := obs.NewLogger(failingWriter{}, obs.Options{Service: "server"})
	require.NotPanics(t, func() {
		l.InfoContext(t.Context(), "x", slog.String("a", "b"))
	})
	l = obs.NewLogger(panickingWriter{}, obs.Options{Service: "server"})
	require.NotPanics(t, func() {
		l.InfoContext(t.Context(), "x")
	})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

type panickingWriter struct{}

func (panickingWriter) Write([]byte) (int, error) { panic("writer exploded") }

func TestLibraryLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := obs.NewHandler(&buf, obs.Options{Service: "worker"})
	l := obs.NewLibraryLogger(h, obs.EventRiverLog, slog.LevelInfo)
	ctx := obs.WithAttrs(t.Context(), slog.String(obs.KeyCorrelationID, "abc"))
	l.DebugContext(ctx, "dropped: below the library's level")
	l.With(slog.Int64(obs.KeyJobID, 3)).InfoContext(ctx, "Job errored; retrying\n", slog.String("kind", "backtest"))
	lines := parseLines(t, buf.Bytes())
	require.Len(t, lines, 1)
	require.Equal(t, obs.EventRiverLog, lines[0][obs.KeyEvent])
	require.Equal(t, "Job errored; retrying", lines[0][obs.KeyMessage])
	require.Equal(t, "abc", lines[0][obs.KeyCorrelationID])
	require.InDelta(t, 3, lines[0][obs.KeyJobID], 0)
	require.Equal(t, "backtest", lines[0]["kind"])
}

func TestErrorStackAndType(t *testing.T) {
	t.Parallel()
	base := &json.SyntaxError{}
	err := fmt.Errorf("load run: %w", obs.WithStack(base))
	require.Equal(t, "*json.SyntaxError", obs.ErrorType(err))
	tb, ok := obs.StackOf(err)
	require.True(t, ok)
	require.NotEmpty(t, tb.Frames)
	require.Contains(t, tb.Frames[0].Function, "TestErrorStackAndType")
	again := obs.WithStack(err)
	tb2, _ := obs.StackOf(again)
	require.Equal(t, tb, tb2, "the first stack is kept")
	_, ok = obs.StackOf(errors.New("plain"))
	require.False(t, ok)
}

// TestLogWritesWhatLogAttrsWrites holds obs.Log, the shortcut of the
// per-request and per-job lines, to the line slog.Logger.LogAttrs writes
// (the timestamp aside), and to the logger's level.
func TestLogWritesWhatLogAttrsWrites(t *testing.T) {
	t.Parallel()
	var viaLogger, viaLog bytes.Buffer
	ctx := obs.WithAttrs(t.Context(), slog.String(obs.KeyCorrelationID, "c-1"), slog.Int(obs.KeyAttempt, 2))
	attrs := []slog.Attr{slog.String(obs.KeyRoute, "/r/{id}"), slog.Int(obs.KeyStatusCode, 503), slog.Group("g", slog.Bool("b", true))}
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelError} {
		obs.NewLogger(&viaLogger, obs.Options{Service: "s"}).With(slog.String("with", "w")).
			LogAttrs(ctx, level, obs.EventRequestFinished, attrs...)
		obs.Log(ctx, obs.NewLogger(&viaLog, obs.Options{Service: "s"}).With(slog.String("with", "w")),
			level, obs.EventRequestFinished, attrs...)
	}
	want, got := parseLines(t, viaLogger.Bytes()), parseLines(t, viaLog.Bytes())
	require.Len(t, got, 2, "debug is below the logger's level")
	for i := range want {
		require.NotEmpty(t, got[i][obs.KeyTimestamp])
		delete(want[i], obs.KeyTimestamp)
		delete(got[i], obs.KeyTimestamp)
	}
	require.Equal(t, want, got)
	require.Equal(t, "c-1", got[1][obs.KeyCorrelationID])
}
