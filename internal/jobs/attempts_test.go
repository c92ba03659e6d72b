package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/logcatalog"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// jobRow is what River's table says of a job.
type jobRow struct {
	State   string
	Attempt int
	// ScheduledAt is when River runs the job next.
	ScheduledAt time.Time
	Errors      []rivertype.AttemptError
	// Output is what the worker recorded as the job's output.
	Output map[string]any
}

func (b *testBundle) jobRow(t *testing.T, id int64) jobRow {
	t.Helper()
	var j jobRow
	var output []byte
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `
		SELECT state, attempt, scheduled_at, coalesce(to_json(errors), '[]'), metadata->'output'
		FROM river_job WHERE id = $1`, id).Scan(&j.State, &j.Attempt, &j.ScheduledAt, &j.Errors, &output))
	if output != nil {
		require.NoError(t, json.Unmarshal(output, &j.Output))
	}
	return j
}

// attempts lists a run's attempts as "number:outcome:code".
func (b *testBundle) attempts(t *testing.T, runID uuid.UUID) []string {
	t.Helper()
	got, err := b.q.RunAttempts(t.Context(), runID)
	require.NoError(t, err)
	var out []string
	for _, a := range got {
		out = append(out, strconv.Itoa(a.Attempt)+":"+a.Outcome+":"+a.ErrorCode)
	}
	return out
}

// run reads a run as the API would.
func (b *testBundle) run(t *testing.T, id uuid.UUID) store.Run {
	t.Helper()
	r, err := b.q.Run(t.Context(), b.user.ID, id)
	require.NoError(t, err)
	return r
}

// waitEvent waits for River to report job id in one of the given states.
func waitEvent(t *testing.T, events <-chan *river.Event, id int64, states ...rivertype.JobState) *river.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			for _, s := range states {
				if ev.Job.ID == id && ev.Job.State == s {
					return ev
				}
			}
		case <-deadline:
			t.Fatalf("job %d did not become %v", id, states)
		}
	}
}

// linesOf returns the lines of one run (or, with run nil, all) with event.
func (b *testBundle) linesOf(t *testing.T, runID uuid.UUID, event string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.logs.Lines(t) {
		if l[obs.KeyEvent] == event && (runID == uuid.Nil || l[obs.KeyRunID] == runID.String()) {
			out = append(out, l)
		}
	}
	return out
}

// jitteryRetry retries an hour later, give or take a second, like River's
// default policy scaled up: asked twice, it gives two instants. An hour
// leaves the test time to look at the retrying run.
type jitteryRetry struct{}

func (jitteryRetry) NextRetry(*rivertype.JobRow) time.Time {
	return time.Now().Add(time.Hour + time.Duration(rand.Int64N(int64(time.Second)))) //nolint:gosec // jitter, not secrets
}

// A failed attempt with another left makes the run retrying, with the
// failure's error and the very instant River scheduled the next attempt;
// the next attempt makes it running again, and its success succeeded.
func TestRetryingRunTellsWhenTheNextAttemptComes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	var calls atomic.Int32
	second, release := make(chan struct{}), make(chan struct{})
	engine := func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
		if calls.Add(1) == 1 {
			return backtest.Result{}, errors.New("market data service unavailable")
		}
		close(second)
		<-release
		return backtest.Run(ctx, in)
	}
	client, events := b.startClient(t, jobs.ClientConfig{Engine: engine, RetryPolicy: jitteryRetry{}},
		river.EventKindJobFailed, river.EventKindJobCompleted)
	strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
	run, err := enqueue.NewEnqueuer(b.db.Pool, client, 0).Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid-retry", "ACME", 30))
	require.NoError(t, err)

	waitEvent(t, events, run.JobID, rivertype.JobStateRetryable)
	job := b.jobRow(t, run.JobID) // as River recorded the failure
	got := b.run(t, run.ID)
	require.Equal(t, store.StatusRetrying, got.Status)
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, store.ErrorCodeInternal, got.ErrorCode)
	require.Contains(t, got.ErrorMessage, "market data service unavailable")
	require.NotNil(t, got.NextAttemptAt)
	require.True(t, job.ScheduledAt.Equal(*got.NextAttemptAt),
		"next_attempt_at %v is when River scheduled the next attempt, %v", got.NextAttemptAt, job.ScheduledAt)
	require.Equal(t, []string{"1:failed:internal"}, b.attempts(t, run.ID))
	failed := b.linesOf(t, run.ID, obs.EventJobFailed)
	require.Len(t, failed, 1)
	require.Equal(t, "warn", failed[0][obs.KeyLevel])
	require.Equal(t, true, failed[0][obs.KeyWillRetry])
	require.Equal(t, store.ErrorCodeInternal, failed[0][obs.KeyErrorCode])

	// The hour passes, as far as River knows.
	_, err = b.db.Pool.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now() WHERE id = $1`, run.JobID)
	require.NoError(t, err)
	select {
	case <-second:
	case <-time.After(30 * time.Second):
		t.Fatal("the next attempt did not start")
	}
	got = b.run(t, run.ID)
	require.Equal(t, store.StatusRunning, got.Status, "running again")
	require.Equal(t, 2, got.Attempt)
	require.Empty(t, got.ErrorCode)
	require.Nil(t, got.NextAttemptAt)
	require.Equal(t, []string{"1:failed:internal", "2::"}, b.attempts(t, run.ID))

	close(release)
	waitEvent(t, events, run.JobID, rivertype.JobStateCompleted)
	got = b.run(t, run.ID)
	require.Equal(t, store.StatusSucceeded, got.Status)
	require.Equal(t, 2, got.Attempt)
	require.NotEmpty(t, got.Result)
	require.Equal(t, []string{"1:failed:internal", "2:succeeded:"}, b.attempts(t, run.ID))
}

// Attempts that end for good without a result fail the run with a code
// API clients can branch on, and leave why as the job's output, which River
// UI shows: a permanent failure is a cancel to River, and must not read as
// a person's.
func TestFinalFailuresSayWhy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		symbol      string
		engine      jobs.Engine // nil: the real one
		maxAttempts int
		wantJob     string
		wantCode    string
		wantError   string
		wantAttempt []string
	}{
		{
			name: "too few bars, at once", symbol: "ACME", maxAttempts: 3,
			wantJob: "cancelled", wantCode: store.ErrorCodeInsufficientData, wantError: "needs at least 50 bars",
			wantAttempt: []string{"1:failed:insufficient_data"},
		},
		{
			name: "attempts used up", symbol: "FLAKY", maxAttempts: 2,
			engine: func(context.Context, backtest.Input) (backtest.Result, error) {
				return backtest.Result{}, errors.New("market data service unavailable")
			},
			wantJob: "discarded", wantCode: store.ErrorCodeInternal, wantError: "market data service unavailable",
			wantAttempt: []string{"1:failed:internal", "2:failed:internal"},
		},
		{
			name: "a panic on the last attempt", symbol: "BOOM", maxAttempts: 1,
			engine: func(context.Context, backtest.Input) (backtest.Result, error) {
				panic("engine exploded")
			},
			wantJob: "discarded", wantCode: store.ErrorCodePanic, wantError: "panic: engine exploded",
			wantAttempt: []string{"1:failed:panic"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			client, events := b.startClient(t, jobs.ClientConfig{Engine: tt.engine, RetryPolicy: fastRetry{}},
				river.EventKindJobCancelled, river.EventKindJobFailed)
			sma := fixture.Strategy(t, b.q, b.user.ID, backtest.KindSMACrossover, `{"fast_window":5,"slow_window":50}`)
			run, err := enqueue.NewEnqueuer(b.db.Pool, client, tt.maxAttempts).
				Enqueue(ctx, fixture.Backtest(b.user.ID, sma.ID, "cid-final", tt.symbol, 20))
			require.NoError(t, err)

			waitEvent(t, events, run.JobID, rivertype.JobStateCancelled, rivertype.JobStateDiscarded)
			got := b.run(t, run.ID)
			require.Equal(t, store.StatusFailed, got.Status)
			require.Equal(t, tt.wantCode, got.ErrorCode)
			require.Contains(t, got.ErrorMessage, tt.wantError)
			require.Equal(t, tt.wantAttempt, b.attempts(t, run.ID))
			job := b.jobRow(t, run.JobID)
			require.Equal(t, tt.wantJob, job.State)
			require.Equal(t, map[string]any{
				"run_status": store.StatusFailed, "error_code": tt.wantCode, "message": got.ErrorMessage,
			}, job.Output, "River keeps why the job ended")
			require.Eventually(t, func() bool {
				return len(b.linesOf(t, run.ID, obs.EventJobFailed)) == len(tt.wantAttempt)
			}, 10*time.Second, 10*time.Millisecond)
			failed := b.linesOf(t, run.ID, obs.EventJobFailed)
			last := failed[len(failed)-1]
			require.Equal(t, "error", last[obs.KeyLevel])
			require.Equal(t, false, last[obs.KeyWillRetry])
			require.Equal(t, tt.wantCode, last[obs.KeyErrorCode])
			require.NotEmpty(t, last[obs.KeyErrorType], "developers keep the Go type")
		})
	}
}

// River's cancel of a running job (what the API's cancel and River UI's
// do) reaches the attempt, which stops as the engine honours its context:
// the attempt and the run are cancelled, and the worker says so at info.
func TestRemoteCancelOfARunningRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	started := make(chan struct{})
	engine := func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
		inner := in.Progress
		in.Progress = func(pct int) {
			inner(pct)
			if pct == 10 {
				close(started)
				<-ctx.Done() // a long backtest, stopped only by its context
			}
		}
		return backtest.Run(ctx, in)
	}
	client, events := b.startClient(t, jobs.ClientConfig{Engine: engine}, river.EventKindJobCancelled)
	strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
	run, err := enqueue.NewEnqueuer(b.db.Pool, client, 0).Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid-cancel", "ACME", 365))
	require.NoError(t, err)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not start")
	}
	_, err = client.JobCancel(ctx, run.JobID)
	require.NoError(t, err)

	waitEvent(t, events, run.JobID, rivertype.JobStateCancelled)
	got := b.run(t, run.ID)
	require.Equal(t, store.StatusCancelled, got.Status)
	require.Equal(t, store.ErrorCodeCancelled, got.ErrorCode)
	require.NotNil(t, got.FinishedAt)
	require.Equal(t, []string{"1:cancelled:cancelled"}, b.attempts(t, run.ID))
	require.Equal(t, store.StatusCancelled, b.jobRow(t, run.JobID).Output["run_status"])
	require.Eventually(t, func() bool { return len(b.linesOf(t, run.ID, obs.EventJobCancelled)) == 1 },
		10*time.Second, 10*time.Millisecond)
	line := requireJobLines(t, b.logs.Lines(t), run.ID, "cid-cancel")[obs.EventJobCancelled][0]
	require.Equal(t, "info", line[obs.KeyLevel])
	require.Contains(t, line, obs.KeyDurationMS)
	require.Empty(t, b.linesOf(t, run.ID, obs.EventJobFailed), "a cancel is no failure")
}

// What River UI's buttons do (River's JobCancel, JobDelete and JobRetry)
// keeps the run in step: a job cancelled or deleted before it ran cancels
// its run, within the reconciliation's interval; a finished job retried
// runs its run again, as a new attempt, rather than being cancelled again.
func TestRiverSideActionsKeepTheRunInStep(t *testing.T) {
	t.Parallel()
	cancel := func(ctx context.Context, c *river.Client[pgx.Tx], id int64) error {
		_, err := c.JobCancel(ctx, id)
		return err
	}
	del := func(ctx context.Context, c *river.Client[pgx.Tx], id int64) error {
		_, err := c.JobDelete(ctx, id)
		return err
	}
	retry := func(ctx context.Context, c *river.Client[pgx.Tx], id int64) error {
		_, err := c.JobRetry(ctx, id)
		return err
	}
	tests := []struct {
		name string
		// before is the run's status when River UI acts on its job.
		before string
		act    func(ctx context.Context, c *river.Client[pgx.Tx], jobID int64) error
		// busy keeps the worker's only slot taken when River UI acts, so
		// that the job waits.
		busy         bool
		wantStatus   string
		wantCode     string
		wantReason   string // of the run_reconciled line, if one is expected
		wantAttempts []string
	}{
		{
			name: "cancel of a queued job", before: store.StatusQueued, busy: true, act: cancel,
			wantStatus: store.StatusCancelled, wantCode: store.ErrorCodeCancelled, wantReason: store.ReasonJobCancelled,
		},
		{
			name: "delete of a queued job", before: store.StatusQueued, busy: true, act: del,
			wantStatus: store.StatusCancelled, wantCode: store.ErrorCodeJobDeleted, wantReason: store.ReasonJobDeleted,
		},
		{
			name: "retry of a succeeded job", before: store.StatusSucceeded, act: retry,
			wantStatus: store.StatusSucceeded, wantAttempts: []string{"1:succeeded:", "2:succeeded:"},
		},
		{
			name: "retry of a failed job", before: store.StatusFailed, act: retry,
			wantStatus: store.StatusSucceeded, wantAttempts: []string{"1:failed:insufficient_data", "2:succeeded:"},
		},
		{
			name: "retry of a failed job while the worker is busy", before: store.StatusFailed, act: retry, busy: true,
			wantStatus: store.StatusQueued, wantReason: store.ReasonJobRetried, wantAttempts: []string{"1:failed:insufficient_data"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			// BLOCK backtests take the worker's slot until the test ends.
			// The first ACME backtest fails for good, as too few bars do,
			// when the test wants it failed; the others succeed.
			blocking, unblock := make(chan struct{}), make(chan struct{})
			var calls atomic.Int32
			engine := func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
				if in.Symbol == "BLOCK" {
					close(blocking)
					<-unblock
					return backtest.Run(ctx, in)
				}
				if calls.Add(1) == 1 && tt.before == store.StatusFailed {
					return backtest.Result{}, &backtest.InsufficientDataError{Need: 50, Have: 20}
				}
				return backtest.Run(ctx, in)
			}
			client, events := b.startClient(t, jobs.ClientConfig{Concurrency: 1, Engine: engine, ReconcileEvery: 50 * time.Millisecond},
				river.EventKindJobCompleted, river.EventKindJobCancelled)
			t.Cleanup(func() { close(unblock) }) // before the client stops: cleanups run last first
			strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
			enq := enqueue.NewEnqueuer(b.db.Pool, client, 0)
			takeTheSlot := func() {
				_, err := enq.Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid-block", "BLOCK", 30))
				require.NoError(t, err)
				select {
				case <-blocking:
				case <-time.After(30 * time.Second):
					t.Fatal("the blocking backtest did not start")
				}
			}
			if tt.before == store.StatusQueued {
				takeTheSlot()
			}
			run, err := enq.Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid-river", "ACME", 30))
			require.NoError(t, err)
			if tt.before != store.StatusQueued {
				waitEvent(t, events, run.JobID, rivertype.JobStateCompleted, rivertype.JobStateCancelled)
				require.Equal(t, tt.before, b.run(t, run.ID).Status)
				if tt.busy {
					takeTheSlot()
				}
			}

			require.NoError(t, tt.act(ctx, client, run.JobID))
			var got store.Run
			require.Eventually(t, func() bool {
				got = b.run(t, run.ID)
				return got.Status == tt.wantStatus && (tt.wantStatus != store.StatusSucceeded || got.Attempt == 2)
			}, 30*time.Second, 10*time.Millisecond, "the run did not become %s", tt.wantStatus)
			if tt.wantStatus == store.StatusSucceeded {
				require.NotEmpty(t, got.Result, "the new attempt's result")
				waitEvent(t, events, run.JobID, rivertype.JobStateCompleted)
			}
			require.Equal(t, tt.wantCode, got.ErrorCode)
			if tt.wantCode != "" {
				require.Equal(t, tt.wantReason, got.ErrorType, "what River did is the error's type")
			}
			require.Equal(t, tt.wantAttempts, b.attempts(t, run.ID))
			if tt.wantReason != "" {
				var lines []map[string]any
				require.Eventually(t, func() bool {
					lines = b.linesOf(t, run.ID, obs.EventRunReconciled)
					return len(lines) > 0
				}, 10*time.Second, 10*time.Millisecond)
				require.Len(t, lines, 1)
				require.Equal(t, tt.wantReason, lines[0][obs.KeyRiverAction])
				require.Equal(t, tt.wantStatus, lines[0][obs.KeyStatus])
				require.Equal(t, "info", lines[0][obs.KeyLevel])
				require.Equal(t, "cid-river", lines[0][obs.KeyCorrelationID])
				require.NotContains(t, lines[0], obs.KeySweepID, "a run of no sweep")
			}
			for _, l := range b.logs.Lines(t) {
				if l[obs.KeyLevel] == "error" {
					// Only the first attempt's permanent failure: retrying it
					// is no error.
					require.Equal(t, obs.EventJobFailed, l[obs.KeyEvent], "%v", l)
					require.InDelta(t, 1, l[obs.KeyAttempt], 0, "%v", l)
				}
			}
		})
	}
}

// A worker frozen past JOB_RESCUE_AFTER comes back to an attempt River has
// handed to another worker. Whatever its attempt does then (succeed, fail,
// panic, stop with a shutdown) changes nothing: its writes are refused, it
// logs stale_attempt, and River's report of its end does not move the live
// attempt's job. The run's attempt and result come from the live attempt.
func TestStaleAttemptChangesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		stale func(ctx context.Context) (backtest.Result, error)
		// shutdown ends the stale attempt by stopping its worker rather
		// than by letting it finish.
		shutdown bool
	}{
		{name: "its result", stale: func(context.Context) (backtest.Result, error) { return backtest.Result{Bars: 111}, nil }},
		{name: "its failure", stale: func(context.Context) (backtest.Result, error) {
			return backtest.Result{}, errors.New("late failure")
		}},
		{name: "its panic", stale: func(context.Context) (backtest.Result, error) { panic("late panic") }},
		{name: "its shutdown", shutdown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			var calls atomic.Int32
			started := make(chan int32, 2)
			staleGate, liveGate := make(chan struct{}), make(chan struct{})
			engine := func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
				n := calls.Add(1)
				started <- n
				if n == 1 {
					select {
					case <-staleGate:
						return tt.stale(ctx)
					case <-ctx.Done():
						return backtest.Result{}, ctx.Err()
					}
				}
				<-liveGate
				return backtest.Result{Bars: 222}, nil
			}
			frozen, err := jobs.NewWorkerClient(b.db.Pool, b.handler, b.logger,
				jobs.ClientConfig{Concurrency: 1, Engine: engine, ID: "frozen"})
			require.NoError(t, err)
			require.NoError(t, frozen.Start(ctx))
			stopFrozen := func() {
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				require.NoError(t, frozen.StopAndCancel(stopCtx))
			}
			t.Cleanup(stopFrozen)
			strategy := fixture.Strategy(t, b.q, b.user.ID, backtest.KindBuyAndHold, `{}`)
			run, err := enqueue.NewEnqueuer(b.db.Pool, frozen, 0).Enqueue(ctx, fixture.Backtest(b.user.ID, strategy.ID, "cid-stale", "ACME", 30))
			require.NoError(t, err)
			require.Equal(t, int32(1), <-started)

			// River's rescuer, as it rescues the job of a worker presumed
			// dead (its scheduler's move to available included).
			_, err = b.db.Pool.Exec(ctx, `
				UPDATE river_job SET state = 'available', scheduled_at = now(),
				    errors = array_append(errors, jsonb_build_object('at', now(), 'attempt', attempt,
				        'error', 'Stuck job rescued by JobRescuer', 'trace', ''))
				WHERE id = $1`, run.JobID)
			require.NoError(t, err)
			_, events := b.startClient(t, jobs.ClientConfig{Concurrency: 1, Engine: engine, ID: "live"},
				river.EventKindJobCompleted)
			require.Equal(t, int32(2), <-started)
			got := b.run(t, run.ID)
			require.Equal(t, store.StatusRunning, got.Status)
			require.Equal(t, 2, got.Attempt)
			require.Equal(t, []string{"1:interrupted:worker_lost", "2::"}, b.attempts(t, run.ID))

			// The frozen worker comes back.
			if tt.shutdown {
				stopFrozen()
			} else {
				close(staleGate)
				require.Eventually(t, func() bool { return len(b.linesOf(t, run.ID, obs.EventStaleAttempt)) > 0 },
					10*time.Second, 10*time.Millisecond)
				stopFrozen() // River reports the attempt's end before it stops
			}
			job := b.jobRow(t, run.JobID)
			require.Equal(t, "running", job.State, "the live attempt's job is not moved")
			require.Equal(t, 2, job.Attempt)
			require.Len(t, job.Errors, 1, "only the rescue: the stale attempt's end was refused")
			got = b.run(t, run.ID)
			require.Equal(t, store.StatusRunning, got.Status)
			require.Equal(t, 2, got.Attempt)
			require.Nil(t, got.Result)

			close(liveGate)
			waitEvent(t, events, run.JobID, rivertype.JobStateCompleted)
			got = b.run(t, run.ID)
			require.Equal(t, store.StatusSucceeded, got.Status)
			require.Equal(t, 2, got.Attempt)
			var result backtest.Result
			require.NoError(t, json.Unmarshal(got.Result, &result))
			require.Equal(t, 222, result.Bars, "the live attempt's result")
			require.Equal(t, []string{"1:interrupted:worker_lost", "2:succeeded:"}, b.attempts(t, run.ID))
			job = b.jobRow(t, run.JobID)
			require.Equal(t, 2, job.Attempt, "no third attempt")
			require.Equal(t, int32(2), calls.Load())

			stale := b.linesOf(t, run.ID, obs.EventStaleAttempt)
			require.Len(t, stale, 1)
			require.Equal(t, "warn", stale[0][obs.KeyLevel])
			require.InDelta(t, 1, stale[0][obs.KeyAttempt], 0)
			require.Contains(t, stale[0][obs.KeyError], "stale attempt")
			for _, l := range b.logs.Lines(t) {
				if l[obs.KeyRunID] == run.ID.String() && l[obs.KeyAttempt] == float64(1) {
					require.NotContains(t, []any{obs.EventJobFailed, obs.EventJobCompleted, obs.EventJobInterrupted}, l[obs.KeyEvent],
						"the stale attempt's end is not the run's: %v", l)
				}
				require.NotEqual(t, "error", l[obs.KeyLevel], "%v", l)
			}
		})
	}
}

// The values the worker logs as river_action and error_code are those the
// log schema allows.
func TestReconcileReasonsAndCodesAreInTheCatalog(t *testing.T) {
	t.Parallel()
	require.ElementsMatch(t, logcatalog.RiverActions(), []string{
		store.ReasonJobCancelled, store.ReasonJobDeleted, store.ReasonJobDiscarded, store.ReasonJobRescued, store.ReasonJobRetried,
	})
	var pattern string
	for _, k := range logcatalog.Keys {
		if k.Name == obs.KeyErrorCode {
			pattern = k.Value.Pattern
		}
	}
	require.NotEmpty(t, pattern)
	for _, code := range store.ErrorCodes() {
		require.Regexp(t, pattern, code)
	}
}

// An attempt whose progress write finds the run taken by a newer attempt
// stops there: the engine's context ends, and the attempt ends stale,
// without a result and without touching the run.
func TestStaleProgressStopsTheAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var (
		q     *store.Queries // the attempt's, set before the engine runs
		runID uuid.UUID
	)
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var stoppedBy error
	engine := func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
		// Another worker starts attempt 2 of the run (River rescued the job).
		if _, _, err := q.StartWork(ctx, runID, 2); err != nil {
			return backtest.Result{}, err
		}
		clock = clock.Add(time.Hour) // the progress write is due
		in.Progress(10)
		stoppedBy = context.Cause(ctx)
		return backtest.Result{}, ctx.Err()
	}
	nb := fixture.Backtest(b.user.ID, uuid.Nil, "cid-stale-progress", "ACME", 30)
	q, run, _, err := b.workOnceWith(t, backtest.KindBuyAndHold, `{}`, nb, uuid.Nil,
		func(attemptQ *store.Queries, r store.Run) jobs.WorkerConfig {
			q, runID = attemptQ, r.ID
			return jobs.WorkerConfig{Engine: engine, Now: func() time.Time { return clock }}
		}, 0)
	require.ErrorIs(t, err, store.ErrStaleAttempt, "the attempt ends stale: an error, never a success")
	require.ErrorIs(t, stoppedBy, store.ErrStaleAttempt, "the engine was stopped")

	got, err := q.Run(t.Context(), b.user.ID, run.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusRunning, got.Status)
	require.Equal(t, 2, got.Attempt)
	require.Zero(t, got.ProgressPct, "attempt 1's progress is not attempt 2's")
	stale := b.linesOf(t, run.ID, obs.EventStaleAttempt)
	require.Len(t, stale, 1)
	require.Equal(t, store.StatusRunning, stale[0][obs.KeyStatus])
	require.Empty(t, b.linesOf(t, run.ID, obs.EventJobFailed))
}
