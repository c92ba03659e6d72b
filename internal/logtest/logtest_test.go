package logtest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
)

const ts = `"timestamp":"2026-01-02T03:04:05.000006Z"`

func TestCheck(t *testing.T) {
	t.Parallel()
	job := `"correlation_id":"c-1","job_id":7,"job_kind":"backtest","attempt":1,` +
		`"user_id":"u","strategy_id":"s","run_id":"r"`
	frame := `"traceback":[{"function":"f","file":"a/b.go","line":3}]`
	tests := []struct {
		name    string
		line    string
		wantErr string // a part of the error; "" for a line that keeps the contract
	}{
		{
			name: "request line",
			line: `{` + ts + `,"level":"info","event":"request_finished","service":"server","correlation_id":"c-1",` +
				`"method":"GET","path":"/x","route":"","status_code":404,"duration_ms":0,"client_ip":"127.0.0.1"}`,
		},
		{
			name: "request line without its correlation ID",
			line: `{` + ts + `,"level":"info","event":"request_finished","service":"server",` +
				`"method":"GET","path":"/x","route":"","status_code":404,"duration_ms":0,"client_ip":"127.0.0.1"}`,
			wantErr: "correlation_id",
		},
		{
			name:    "unknown event",
			line:    `{` + ts + `,"level":"info","event":"handler_ran","service":"server"}`,
			wantErr: "event",
		},
		{
			name:    "key the event does not list",
			line:    `{` + ts + `,"level":"info","event":"server_started","service":"server","addr":":1","riverui":false,"port":1}`,
			wantErr: "port",
		},
		{
			name:    "level the event is not written at",
			line:    `{` + ts + `,"level":"error","event":"server_started","service":"server","addr":":1","riverui":false}`,
			wantErr: "level",
		},
		{
			name:    "service that does not write the event",
			line:    `{` + ts + `,"level":"info","event":"server_started","service":"worker","addr":":1","riverui":false}`,
			wantErr: "service",
		},
		{
			name:    "value of the wrong type",
			line:    `{` + ts + `,"level":"info","event":"job_progress","service":"worker",` + job + `,"progress_pct":"10"}`,
			wantErr: "progress_pct",
		},
		{
			name: "request_failed at warn needs no traceback",
			line: `{` + ts + `,"level":"warn","event":"request_failed","service":"server","correlation_id":"c-1",` +
				`"error":"ping","error_type":"*net.OpError"}`,
		},
		{
			name: "request_failed at error needs its traceback",
			line: `{` + ts + `,"level":"error","event":"request_failed","service":"server","correlation_id":"c-1",` +
				`"error":"boom","error_type":"*errors.errorString"}`,
			wantErr: "traceback",
		},
		{
			name: "request_failed at error with its traceback",
			line: `{` + ts + `,"level":"error","event":"request_failed","service":"server","correlation_id":"c-1",` +
				`"error":"boom","error_type":"*errors.errorString",` + frame + `}`,
		},
		{
			name: "a backtest's job line without its run",
			line: `{` + ts + `,"level":"info","event":"job_progress","service":"worker",` +
				`"correlation_id":"c-1","job_id":7,"job_kind":"backtest","attempt":1,"progress_pct":10}`,
			wantErr: "run_id",
		},
		{
			name: "a maintenance job's line has no run",
			line: `{` + ts + `,"level":"debug","event":"job_completed","service":"worker",` +
				`"correlation_id":"c-1","job_id":7,"job_kind":"reconcile_runs","attempt":1,"duration_ms":3}`,
		},
		{
			name:    "run_update_failed without the status it was to set",
			line:    `{` + ts + `,"level":"warn","event":"run_update_failed","service":"worker",` + job + `,"error":"x"}`,
			wantErr: "status",
		},
		{
			name: "library line with the library's own fields",
			line: `{` + ts + `,"level":"warn","event":"river_log","service":"worker","message":"m","queue":"q",` + job + `}`,
		},
		{
			name: "library field named like a key of ours, with a value of its own",
			line: `{` + ts + `,"level":"info","event":"river_log","service":"server","message":"m","queues":"backtests"}`,
		},
		{
			name:    "our key with a value not its own",
			line:    `{` + ts + `,"level":"info","event":"worker_started","service":"worker","queues":"backtests","concurrency":1}`,
			wantErr: "queues",
		},
		{
			name:    "context key with a bad value on a library line",
			line:    `{` + ts + `,"level":"info","event":"river_log","service":"server","message":"m","correlation_id":"has space"}`,
			wantErr: "correlation_id",
		},
		{
			name:    "library line without its text",
			line:    `{` + ts + `,"level":"warn","event":"river_log","service":"worker"}`,
			wantErr: "message",
		},
		{
			name: "cut line keeps its header and context only",
			line: `{` + ts + `,"level":"error","event":"job_failed","service":"worker",` + job +
				`,"line_truncated":true,"line_bytes":20000}`,
		},
		{
			name: "cut line with a key of its event",
			line: `{` + ts + `,"level":"error","event":"job_failed","service":"worker",` + job +
				`,"error":"x","line_truncated":true,"line_bytes":20000}`,
			wantErr: "error",
		},
		{
			name:    "line without its header",
			line:    `{"event":"server_started","service":"server","addr":":1","riverui":false}`,
			wantErr: "timestamp",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := logtest.Check([]byte(tt.line))
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// recorder is a testing.TB that keeps the failures Sink reports.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Error(args ...any) { r.errors = append(r.errors, fmt.Sprint(args...)) }

// TestSinkChecksItsLines: a test that reads its lines through a Sink fails
// when the code logged an event without its required keys.
func TestSinkChecksItsLines(t *testing.T) {
	t.Parallel()
	type testBundle struct {
		sink   *logtest.Sink
		logger *slog.Logger
		rec    *recorder
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		sink := &logtest.Sink{}
		return &testBundle{sink: sink, logger: obs.NewLogger(sink, obs.Options{Service: "server"}), rec: &recorder{TB: t}}
	}
	ctx := obs.WithAttrs(context.Background(), slog.String(obs.KeyCorrelationID, "c-1"))
	tests := []struct {
		name     string
		log      func(*slog.Logger)
		wantFail bool
	}{
		{
			name: "complete line",
			log: func(l *slog.Logger) {
				l.InfoContext(ctx, obs.EventStrategyCreated, slog.String(obs.KeyUserID, "u"), slog.String(obs.KeyStrategyID, "s"))
			},
		},
		{
			name: "required key missing",
			log: func(l *slog.Logger) {
				l.InfoContext(ctx, obs.EventStrategyCreated, slog.String(obs.KeyUserID, "u"))
			},
			wantFail: true,
		},
		{
			name: "error key the event does not carry",
			log: func(l *slog.Logger) {
				l.InfoContext(ctx, obs.EventStrategyCreated, slog.String(obs.KeyUserID, "u"), slog.String(obs.KeyStrategyID, "s"),
					slog.String(obs.KeyError, errors.New("x").Error()))
			},
			wantFail: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tt.log(b.logger)
			lines := b.sink.Lines(b.rec)
			require.Len(t, lines, 1)
			if !tt.wantFail {
				require.Empty(t, b.rec.errors)
				return
			}
			require.Len(t, b.rec.errors, 1)
			require.Contains(t, b.rec.errors[0], obs.EventStrategyCreated)
			b.sink.Lines(b.rec)
			require.Len(t, b.rec.errors, 1, "a line is checked once, however often it is read")
		})
	}
}
