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
	"sync"
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
				"nan":"!ERROR:json: unsupported value: NaN","bad":"!ERROR:json: error calling MarshalJSON for type obs_test.badJSON: no","err":"boom",
				"panicky":"!PANIC: marshal exploded","nil":null,"bad_utf8":"a\ufffdb\u2028","d":1000000000}`,
		},
		{
			name: "debug and beyond error",
			log: func(l *slog.Logger, ctx context.Context) {
				l.Log(ctx, slog.LevelDebug-4, "x")
				l.Log(ctx, slog.LevelError+4, "y")
			},
			want: `{"timestamp":"2026-11-26T09:09:14.123456Z","level":"debug","event":"x","service":"server"}
				{"timestamp":"2026-11-26T09:09:14.123456Z","level":"error","event":"y","service":"server"}`,
		},
		{
			name: "a traceback is an array of frames",
			log: func(l *slog.Logger, ctx context.Context) {
				tb := obs.Traceback{{Function: "main.f", File: "main/f.go", Line: 3}}
				l.ErrorContext(ctx, "e", slog.Any(obs.KeyTraceback, tb), slog.Group("g", slog.Any(obs.KeyTraceback, &tb)))
			},
			want: `{"timestamp":"2026-11-26T09:09:14.123456Z","level":"error","event":"e","service":"server",
				"traceback":[{"function":"main.f","file":"main/f.go","line":3}],
				"g":{"traceback":[{"function":"main.f","file":"main/f.go","line":3}]}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			h := obs.NewHandler(&buf, obs.Options{Service: "server", Level: slog.LevelDebug - 4})
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(ctx)
			}
			tt.log(slog.New(fixedTime{h, at}), ctx)
			got := parseLines(t, buf.Bytes())
			var want []map[string]any
			for dec := json.NewDecoder(strings.NewReader(tt.want)); dec.More(); {
				var m map[string]any
				require.NoError(t, dec.Decode(&m))
				want = append(want, m)
			}
			require.Equal(t, want, got)
			for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
				require.Equal(t, []string{obs.KeyTimestamp, obs.KeyLevel, obs.KeyEvent, obs.KeyService}, topKeys(t, line)[:4])
			}
		})
	}
}

// topKeys returns the top-level keys of a JSON object, in order.
func topKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		key, ok := tok.(string)
		require.True(t, ok)
		keys = append(keys, key)
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

// The timestamp is UTC with exactly six fractional digits and a Z, whatever
// the zone and however many trailing zeros: sorting the strings sorts by time.
func TestTimestampIsFixedWidth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000000Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 100_000_000, time.UTC), "2026-01-02T03:04:05.100000Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 999_999_999, time.UTC), "2026-01-02T03:04:05.999999Z"},
		{time.Date(2026, 1, 1, 0, 30, 0, 1000, time.FixedZone("east", 3600)), "2025-12-31T23:30:00.000001Z"},
		{time.Date(2024, 2, 29, 23, 59, 59, 123_000, time.FixedZone("west", -5*3600)), "2024-03-01T04:59:59.000123Z"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l := slog.New(fixedTime{obs.NewHandler(&buf, obs.Options{Service: "s"}), tt.at})
		l.InfoContext(t.Context(), "x")
		require.Equal(t, tt.want, parseLines(t, buf.Bytes())[0][obs.KeyTimestamp])
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
			name: "huge With attributes under a group fall back to the context fields",
			log: func(l *slog.Logger, ctx context.Context) {
				l.With(many...).WithGroup("g").InfoContext(ctx, "x", slog.Int("n", 1)) //nolint:forbidigo // the handler must cope all the same
			},
			check: func(t *testing.T, m map[string]any) {
				t.Helper()
				require.Equal(t, true, m[obs.KeyLineTruncate])
				require.Equal(t, "abc", m[obs.KeyCorrelationID])
				require.Equal(t, "x", m[obs.KeyEvent])
				require.NotContains(t, m, "g")
			},
		},
		{
			name: "context fields too long for the minimal line leave the header",
			log: func(l *slog.Logger, ctx context.Context) {
				big := strings.Repeat("y", 4000)
				ctx = obs.WithAttrs(ctx, slog.String("a", big), slog.String("b", big), slog.String("c", big), slog.String("d", big), slog.String("e", big))
				l.WarnContext(ctx, "x")
			},
			check: func(t *testing.T, m map[string]any) {
				t.Helper()
				require.Equal(t, true, m[obs.KeyLineTruncate])
				require.Greater(t, m[obs.KeyLineBytes], float64(obs.MaxLineBytes))
				require.Equal(t, map[string]any{obs.KeyLevel: "warn", obs.KeyEvent: "x", obs.KeyService: "worker"},
					map[string]any{obs.KeyLevel: m[obs.KeyLevel], obs.KeyEvent: m[obs.KeyEvent], obs.KeyService: m[obs.KeyService]})
				require.NotContains(t, m, obs.KeyCorrelationID)
			},
		},
		{
			name: "an event of control and invalid bytes, which escaping multiplies by six, keeps the header within bounds",
			log: func(l *slog.Logger, ctx context.Context) {
				big := strings.Repeat("\x01\x8a", 2000)
				l.InfoContext(ctx, strings.Repeat("\x01\x8a", 10_000), //nolint:sloglint // the handler must cope all the same
					slog.String("a", big), slog.String("b", big), slog.String("c", big))
			},
			check: func(t *testing.T, m map[string]any) {
				t.Helper()
				require.Equal(t, true, m[obs.KeyLineTruncate])
				require.Equal(t, "abc", m[obs.KeyCorrelationID])
				require.Contains(t, m[obs.KeyEvent], "...[truncated ")
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
	err := fmt.Errorf("load run: %w", obs.WithStackSkip(base, 0))
	require.Equal(t, "*json.SyntaxError", obs.ErrorType(err))
	tb, ok := obs.StackOf(err)
	require.True(t, ok)
	require.NotEmpty(t, tb)
	require.Contains(t, tb[0].Function, "TestErrorStackAndType")
	again := obs.WithStackSkip(err, 0)
	tb2, _ := obs.StackOf(again)
	require.Equal(t, tb, tb2, "the first stack is kept")
	_, ok = obs.StackOf(errors.New("plain"))
	require.False(t, ok)
}

// The fields bound to a context reach every handler that logs with it, each
// with its own service and With attributes, also concurrently, and later
// changes to the caller's slice do not reach them.
func TestContextFieldsReachEveryHandler(t *testing.T) {
	t.Parallel()
	var bufA, bufB bytes.Buffer
	a := obs.NewLogger(&bufA, obs.Options{Service: "a"})
	b := obs.NewLogger(&bufB, obs.Options{Service: "b"}).With(slog.String(obs.KeyStatus, "c"))
	attrs := []slog.Attr{slog.String(obs.KeyCorrelationID, "cid"), slog.Int64(obs.KeyJobID, 7)}
	ctx := obs.WithAttrs(t.Context(), attrs...)
	attrs[0] = slog.String(obs.KeyCorrelationID, "changed")
	nested := obs.WithAttrs(ctx, slog.String(obs.KeyUserID, "u"))

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if i%2 == 0 {
					a.InfoContext(ctx, obs.EventJobProgress)
				} else {
					b.InfoContext(nested, obs.EventJobProgress)
				}
			}
		})
	}
	wg.Wait()
	a.InfoContext(obs.ResetAttrs(ctx), obs.EventJobCompleted)

	linesA, linesB := parseLines(t, bufA.Bytes()), parseLines(t, bufB.Bytes())
	require.Len(t, linesA, 201)
	require.Len(t, linesB, 200)
	for _, m := range linesA[:200] {
		delete(m, obs.KeyTimestamp)
		require.Equal(t, map[string]any{
			obs.KeyLevel: "info", obs.KeyEvent: obs.EventJobProgress, obs.KeyService: "a",
			obs.KeyCorrelationID: "cid", obs.KeyJobID: float64(7),
		}, m)
	}
	for _, m := range linesB {
		delete(m, obs.KeyTimestamp)
		require.Equal(t, map[string]any{
			obs.KeyLevel: "info", obs.KeyEvent: obs.EventJobProgress, obs.KeyService: "b",
			obs.KeyCorrelationID: "cid", obs.KeyJobID: float64(7), obs.KeyUserID: "u", obs.KeyStatus: "c",
		}, m)
	}
	require.NotContains(t, linesA[200], obs.KeyCorrelationID, "reset: no fields")
	require.Equal(t, "cid", obs.CorrelationID(nested))
	require.Empty(t, obs.CorrelationID(obs.ResetAttrs(nested)))
	require.Empty(t, obs.CorrelationID(t.Context()))
}
