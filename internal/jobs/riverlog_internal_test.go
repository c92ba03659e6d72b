package jobs

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
)

// What becomes of each of River's lines, by what the lifecycle saw of its
// job: River's lines are written as River's executor writes them.
func TestRiverLogHandler(t *testing.T) {
	t.Parallel()
	const job = int64(42)
	jobFields := []slog.Attr{
		slog.String(obs.KeyCorrelationID, "cid-42"), slog.String(obs.KeyRunID, "run-42"),
		slog.Int64(obs.KeyJobID, job), slog.String(obs.KeyJobKind, "backtest"), slog.Int(obs.KeyAttempt, 1),
	}
	tests := []struct {
		name string
		// lifecycle is what the middleware did before River's line.
		lifecycle func(j *jobTracker)
		message   string
		level     slog.Level
		wantLine  bool
		wantCID   any
		// wantTracked says whether the job is still tracked after the line.
		wantTracked bool
	}{
		{
			name:      "running job: correlated",
			lifecycle: func(j *jobTracker) { j.working(job, jobFields) },
			message:   "JobExecutor: job cancelled remotely", level: slog.LevelWarn,
			wantLine: true, wantCID: "cid-42", wantTracked: true,
		},
		{
			name:      "untracked job: as River wrote it",
			lifecycle: func(*jobTracker) {},
			message:   "JobExecutor: Job errored", level: slog.LevelInfo,
			wantLine: true, wantCID: nil,
		},
		{
			name:      "logged panic: recovery line dropped, job still tracked",
			lifecycle: func(j *jobTracker) { j.working(job, jobFields); j.finished(job, true) },
			message:   "JobExecutor: panic recovery; possible bug with Worker", level: slog.LevelError,
			wantTracked: true,
		},
		{
			name:      "logged panic: River's last line dropped, job forgotten",
			lifecycle: func(j *jobTracker) { j.working(job, jobFields); j.finished(job, true) },
			message:   "JobExecutor: Job panicked", level: slog.LevelInfo,
		},
		{
			name:      "logged error, retried: dropped even below River's level",
			lifecycle: func(j *jobTracker) { j.working(job, jobFields); j.finished(job, true) },
			message:   "JobExecutor: Job errored; retrying", level: slog.LevelDebug,
		},
		{
			name:      "logged failure, another line: correlated",
			lifecycle: func(j *jobTracker) { j.working(job, jobFields); j.finished(job, true) },
			message:   "JobExecutor: Failed to discard job and report error", level: slog.LevelError,
			wantLine: true, wantCID: "cid-42", wantTracked: true,
		},
		{
			name:      "success: forgotten at once",
			lifecycle: func(j *jobTracker) { j.working(job, jobFields); j.finished(job, false) },
			message:   "JobExecutor: Error completing job", level: slog.LevelError,
			wantLine: true, wantCID: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := &logtest.Sink{}
			h := obs.NewHandler(sink, obs.Options{Service: "worker"})
			jobs := newJobTracker()
			logger := slog.New(&riverLogHandler{next: obs.NewLibraryLogger(h, obs.EventRiverLog, slog.LevelInfo).Handler(), jobs: jobs})
			tt.lifecycle(jobs)
			logger.Log(context.Background(), tt.level, tt.message, slog.Int64("job_id", job), slog.String("job_kind", "backtest"))

			_, tracked := jobs.jobs[job]
			require.Equal(t, tt.wantTracked, tracked)
			if tracked {
				require.Equal(t, jobs.jobs[job].logged, jobs.logged.Load() == 1)
			} else {
				require.Zero(t, jobs.logged.Load())
			}
			lines := sink.Lines(t)
			if !tt.wantLine {
				require.Empty(t, lines)
				return
			}
			require.Len(t, lines, 1)
			require.Equal(t, tt.wantCID, lines[0][obs.KeyCorrelationID])
			require.Equal(t, 1, strings.Count(sink.String(), `"job_id"`), "job_id once")
			require.InDelta(t, job, lines[0][obs.KeyJobID], 0)
		})
	}
}
