package store_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

// job inserts a backtest job into River's table as River would leave it,
// and returns its ID.
func (b *testBundle) job(t *testing.T, state string, attempt int, errors []string, metadata string) int64 {
	t.Helper()
	if metadata == "" {
		metadata = "{}"
	}
	var id int64
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `
		INSERT INTO river_job (args, kind, max_attempts, queue, state, attempt, errors, metadata, attempted_at, finalized_at)
		VALUES ('{}', 'backtest', 5, 'backtests', $1::text::river_job_state, $2::smallint, $3::jsonb[], $4::jsonb,
		        CASE WHEN $2::smallint > 0 THEN now() END,
		        CASE WHEN $1::text IN ('cancelled', 'completed', 'discarded') THEN now() END)
		RETURNING id`, state, attempt, errors, metadata).Scan(&id))
	return id
}

// attemptOutcomes lists a run's attempts as "number:outcome:code".
func (b *testBundle) attemptOutcomes(t *testing.T, runID uuid.UUID) []string {
	t.Helper()
	attempts, err := b.q.RunAttempts(t.Context(), runID)
	require.NoError(t, err)
	var out []string
	for _, a := range attempts {
		out = append(out, strconv.Itoa(a.Attempt)+":"+a.Outcome+":"+a.ErrorCode)
	}
	return out
}

// One run through every write a worker makes, in the order River's attempts
// make them, with the writes of attempts that are not the run's refused.
func TestAttemptWrites(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	run, err := b.newRun(t, store.NewRun{JobID: b.job(t, "running", 1, nil, ""), CorrelationID: "cid-writes"})
	require.NoError(t, err)
	boom := store.AttemptFailure{Code: store.ErrorCodeInternal, Message: "market data unavailable", ErrorType: "*errors.errorString"}
	next := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	start := func(attempt int) func() error {
		return func() error { _, _, err := b.q.StartWork(ctx, run.ID, attempt); return err }
	}
	steps := []struct {
		name        string
		write       func() error
		wantErr     error
		wantStatus  string
		wantAttempt int
	}{
		{"progress before any attempt", func() error { return b.q.SetProgress(ctx, run.ID, 1, 10) }, store.ErrAttemptNotStarted, store.StatusQueued, 0},
		{"attempt 1 starts", start(1), nil, store.StatusRunning, 1},
		{"attempt 1 again is stale", start(1), store.ErrStaleAttempt, store.StatusRunning, 1},
		{"progress of attempt 1", func() error { return b.q.SetProgress(ctx, run.ID, 1, 30) }, nil, store.StatusRunning, 1},
		{"attempt 1 fails with another to come", func() error {
			status, err := b.q.RetryAttempt(ctx, run.ID, 1, next, boom)
			require.Equal(t, store.StatusRetrying, status)
			return err
		}, nil, store.StatusRetrying, 1},
		{"a late progress of attempt 1 is stale", func() error { return b.q.SetProgress(ctx, run.ID, 1, 40) }, store.ErrStaleAttempt, store.StatusRetrying, 1},
		{"attempt 2 starts", start(2), nil, store.StatusRunning, 2},
		{"River rescues attempt 2: attempt 3 starts", start(3), nil, store.StatusRunning, 3},
		{"attempt 2 comes back with a result", func() error {
			return b.q.CompleteAttempt(ctx, run.ID, 2, json.RawMessage(`{"bars":2}`))
		}, store.ErrStaleAttempt, store.StatusRunning, 3},
		{"attempt 2 comes back failed", func() error { return b.q.FailAttempt(ctx, run.ID, 2, boom) }, store.ErrStaleAttempt, store.StatusRunning, 3},
		{"attempt 3 succeeds", func() error {
			return b.q.CompleteAttempt(ctx, run.ID, 3, json.RawMessage(`{"bars":3}`))
		}, nil, store.StatusSucceeded, 3},
		{"a succeeded run stays succeeded", func() error { return b.q.FailAttempt(ctx, run.ID, 3, boom) }, store.ErrStaleAttempt, store.StatusSucceeded, 3},
		{"River UI retries the job: attempt 4 runs the run again", start(4), nil, store.StatusRunning, 4},
		{"a shutdown interrupts attempt 4", func() error { return b.q.InterruptAttempt(ctx, run.ID, 4) }, nil, store.StatusQueued, 3},
		{"attempt 4, not counted, starts again", start(4), nil, store.StatusRunning, 4},
		{"a cancel ends attempt 4", func() error { return b.q.CancelAttempt(ctx, run.ID, 4, "cancelled while its attempt ran") }, nil, store.StatusCancelled, 4},
	}
	for _, step := range steps {
		err := step.write()
		if step.wantErr != nil {
			require.ErrorIs(t, err, step.wantErr, step.name)
		} else {
			require.NoError(t, err, step.name)
		}
		got, err := b.q.RunForWork(ctx, run.ID)
		require.NoError(t, err)
		require.Equal(t, step.wantStatus, got.Status, step.name)
		require.Equal(t, step.wantAttempt, got.Attempt, step.name)

		switch step.name {
		case "attempt 1 fails with another to come":
			require.Equal(t, store.ErrorCodeInternal, got.ErrorCode)
			require.Equal(t, boom.Message, got.ErrorMessage)
			require.Equal(t, boom.ErrorType, got.ErrorType)
			require.NotNil(t, got.NextAttemptAt)
			require.True(t, next.Equal(*got.NextAttemptAt), "%v", got.NextAttemptAt)
			require.Zero(t, got.ProgressPct, "no stale progress while retrying")
		case "attempt 2 starts":
			require.Empty(t, got.ErrorCode, "the next attempt clears the error")
			require.Nil(t, got.NextAttemptAt)
		case "attempt 2 comes back with a result":
			require.Nil(t, got.Result)
		case "attempt 3 succeeds":
			require.JSONEq(t, `{"bars":3}`, string(got.Result), "the result of the run's attempt")
			require.Equal(t, 100, got.ProgressPct)
			require.NotNil(t, got.FinishedAt)
		case "River UI retries the job: attempt 4 runs the run again":
			require.Nil(t, got.Result)
			require.Nil(t, got.FinishedAt)
		case "a cancel ends attempt 4":
			require.Equal(t, store.ErrorCodeCancelled, got.ErrorCode)
			require.NotNil(t, got.FinishedAt)
		}
	}
	require.Equal(t, []string{
		"1:failed:internal", "2:interrupted:worker_lost", "3:succeeded:", "4:interrupted:", "4:cancelled:cancelled",
	}, b.attemptOutcomes(t, run.ID))

	missing := uuid.Must(uuid.NewV7())
	_, _, err = b.q.StartWork(ctx, missing, 1)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, b.q.FailAttempt(ctx, missing, 1, boom), store.ErrNotFound)
}

// A cancel asked of a running run's job (River's cancel_attempted_at) wins
// over a retry, as River's does, and over a start of the job's next attempt.
func TestACancelledJobDoesNotRunAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	cancelling := `{"cancel_attempted_at": "2026-01-01T00:00:00Z"}`
	boom := store.AttemptFailure{Code: store.ErrorCodeInternal, Message: "boom"}

	run, err := b.newRun(t, store.NewRun{JobID: b.job(t, "running", 1, nil, cancelling), CorrelationID: "cid-cancelling"})
	require.NoError(t, err)
	_, _, err = b.q.StartWork(ctx, run.ID, 1)
	require.NoError(t, err)
	status, err := b.q.RetryAttempt(ctx, run.ID, 1, time.Now().Add(time.Minute), boom)
	require.NoError(t, err)
	require.Equal(t, store.StatusCancelled, status, "River cancels the job instead of retrying it")
	got, err := b.q.RunForWork(ctx, run.ID)
	require.NoError(t, err)
	require.Equal(t, store.ErrorCodeCancelled, got.ErrorCode)
	require.Nil(t, got.NextAttemptAt)
	require.Equal(t, []string{"1:failed:internal"}, b.attemptOutcomes(t, run.ID), "the attempt itself failed")

	_, _, err = b.q.StartWork(ctx, run.ID, 2)
	require.ErrorIs(t, err, store.ErrRunCancelled, "the cancel met the fetch of the next attempt")
	require.NotErrorIs(t, err, store.ErrAttemptNotStarted, "a cancelled run, not an attempt to end")
	got, err = b.q.RunForWork(ctx, run.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusCancelled, got.Status)

	// River UI's Retry clears cancel_attempted_at: the run runs again.
	_, err = b.db.Pool.Exec(ctx, `UPDATE river_job SET metadata = metadata - 'cancel_attempted_at' WHERE id = $1`, run.JobID)
	require.NoError(t, err)
	_, _, err = b.q.StartWork(ctx, run.ID, 2)
	require.NoError(t, err)
}

// River's completer sets a job's state by its ID whenever it is running,
// whatever the attempt that reports: the database refuses the report of an
// attempt older than the job's (migration 00013), and lets everything else
// through.
func TestStaleAttemptCannotMoveALiveJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rescued := `{"at": "2026-01-01T00:00:00Z", "attempt": 1, "error": "Stuck job rescued by JobRescuer", "trace": ""}`
	tests := []struct {
		name        string
		set         string // the update, as River's completer or rescuer makes it
		wantState   string
		wantAttempt int
	}{
		{
			name:      "a stale attempt's failure",
			set:       `state = 'retryable', errors = array_append(errors, '{"attempt": 1, "error": "late"}'::jsonb)`,
			wantState: "running", wantAttempt: 2,
		},
		{
			name:      "a stale attempt's cancel",
			set:       `state = 'cancelled', finalized_at = now(), errors = array_append(errors, '{"attempt": 1, "error": "late"}'::jsonb)`,
			wantState: "running", wantAttempt: 2,
		},
		{
			name:      "a stale attempt interrupted by a shutdown",
			set:       `state = 'available', attempt = 0`,
			wantState: "running", wantAttempt: 2,
		},
		{
			name:      "the live attempt's failure",
			set:       `state = 'retryable', errors = array_append(errors, '{"attempt": 2, "error": "now"}'::jsonb)`,
			wantState: "retryable", wantAttempt: 2,
		},
		{
			name:      "the live attempt interrupted by a shutdown",
			set:       `state = 'available', attempt = 1`,
			wantState: "available", wantAttempt: 1,
		},
		{
			name:      "the live attempt's success",
			set:       `state = 'completed', finalized_at = now()`,
			wantState: "completed", wantAttempt: 2,
		},
		{
			name:      "River's rescue of the live attempt",
			set:       `state = 'retryable', errors = array_append(errors, '{"attempt": 2, "error": "Stuck job rescued by JobRescuer"}'::jsonb)`,
			wantState: "retryable", wantAttempt: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			id := b.job(t, "running", 2, []string{rescued}, "")
			_, err := b.db.Pool.Exec(ctx, `UPDATE river_job SET `+tt.set+` WHERE id = $1`, id)
			require.NoError(t, err)
			var state string
			var attempt int
			require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT state, attempt FROM river_job WHERE id = $1`, id).Scan(&state, &attempt))
			require.Equal(t, tt.wantState, state)
			require.Equal(t, tt.wantAttempt, attempt)
		})
	}
}

// The reconciliation brings each run in step with what River did to its job
// without a worker to report it, and leaves alone the runs whose job is in
// step or being worked.
func TestReconcile(t *testing.T) {
	t.Parallel()
	rescued := func(attempt int) string {
		return `{"attempt": ` + strconv.Itoa(attempt) + `, "error": "Stuck job rescued by JobRescuer"}`
	}
	// withOutput is a job's metadata once the worker recorded output.
	withOutput := func(output store.JobOutput) string {
		b, err := json.Marshal(map[string]any{"output": output})
		require.NoError(t, err)
		return string(b)
	}
	tests := []struct {
		name string
		// The job as River has it; no state: deleted.
		jobState    string
		jobAttempt  int
		jobErrors   []string
		jobMetadata string
		// The run as the workers left it: started at attempts runAttempts
		// (the last still open), then finished as runEnd says.
		runAttempts int
		runEnd      func(ctx context.Context, q *store.Queries, id uuid.UUID) error
		// What becomes of it; no wantStatus: left alone.
		wantStatus, wantReason, wantCode string
		wantAttempts                     []string
	}{
		{
			name: "job deleted while queued", wantStatus: store.StatusCancelled, wantReason: store.ReasonJobDeleted,
			wantCode: store.ErrorCodeJobDeleted,
		},
		{
			name: "job cancelled in River while queued", jobState: "cancelled", wantStatus: store.StatusCancelled,
			wantReason: store.ReasonJobCancelled, wantCode: store.ErrorCodeCancelled,
		},
		{
			name: "job cancelled in River while retrying", jobState: "cancelled", jobAttempt: 1, runAttempts: 1,
			runEnd: func(ctx context.Context, q *store.Queries, id uuid.UUID) error {
				_, err := q.RetryAttempt(ctx, id, 1, time.Now().Add(time.Hour), store.AttemptFailure{Code: "internal", Message: "x"})
				return err
			},
			wantStatus: store.StatusCancelled, wantReason: store.ReasonJobCancelled, wantCode: store.ErrorCodeCancelled,
			wantAttempts: []string{"1:failed:internal"},
		},
		{
			name: "a permanent failure the worker could not write", jobState: "cancelled", jobAttempt: 1, runAttempts: 1,
			jobMetadata: withOutput(store.JobOutput{
				RunStatus: store.StatusFailed, ErrorCode: store.ErrorCodeInsufficientData, Message: "too few bars",
			}),
			wantStatus: store.StatusFailed, wantReason: store.ReasonJobCancelled, wantCode: store.ErrorCodeInsufficientData,
			wantAttempts: []string{"1:failed:insufficient_data"},
		},
		{
			name: "job discarded by River's rescuer: the worker crashed on the last attempt", jobState: "discarded",
			jobAttempt: 1, jobErrors: []string{rescued(1)}, runAttempts: 1,
			wantStatus: store.StatusFailed, wantReason: store.ReasonJobDiscarded, wantCode: store.ErrorCodeJobDiscarded,
			wantAttempts: []string{"1:interrupted:worker_lost"},
		},
		{
			name: "job rescued from a lost worker", jobState: "retryable", jobAttempt: 1, jobErrors: []string{rescued(1)},
			runAttempts: 1, wantStatus: store.StatusRetrying, wantReason: store.ReasonJobRescued,
			wantCode: store.ErrorCodeWorkerLost, wantAttempts: []string{"1:interrupted:worker_lost"},
		},
		{
			name: "job retried in River UI after a success", jobState: "available", jobAttempt: 1, runAttempts: 1,
			runEnd: func(ctx context.Context, q *store.Queries, id uuid.UUID) error {
				return q.CompleteAttempt(ctx, id, 1, json.RawMessage(`{}`))
			},
			wantStatus: store.StatusQueued, wantReason: store.ReasonJobRetried, wantAttempts: []string{"1:succeeded:"},
		},
		{
			name: "job retried in River UI after a failure", jobState: "available", jobAttempt: 1, runAttempts: 1,
			runEnd: func(ctx context.Context, q *store.Queries, id uuid.UUID) error {
				return q.FailAttempt(ctx, id, 1, store.AttemptFailure{Code: "invalid_strategy", Message: "x"})
			},
			wantStatus: store.StatusQueued, wantReason: store.ReasonJobRetried, wantAttempts: []string{"1:failed:invalid_strategy"},
		},
		{name: "a live job's run", jobState: "running", jobAttempt: 1, runAttempts: 1},
		{name: "a queued run of an available job", jobState: "available"},
		{
			name: "a retrying run of a retryable job", jobState: "retryable", jobAttempt: 1, runAttempts: 1,
			runEnd: func(ctx context.Context, q *store.Queries, id uuid.UUID) error {
				_, err := q.RetryAttempt(ctx, id, 1, time.Now().Add(time.Hour), store.AttemptFailure{Code: "internal", Message: "x"})
				return err
			},
		},
		{
			name: "a succeeded run of a completed job", jobState: "completed", jobAttempt: 1, runAttempts: 1,
			runEnd: func(ctx context.Context, q *store.Queries, id uuid.UUID) error {
				return q.CompleteAttempt(ctx, id, 1, json.RawMessage(`{}`))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			jobID := int64(999_999)
			if tt.jobState != "" {
				jobID = b.job(t, tt.jobState, tt.jobAttempt, tt.jobErrors, tt.jobMetadata)
			}
			run, err := b.newRun(t, store.NewRun{JobID: jobID, CorrelationID: "cid-reconcile"})
			require.NoError(t, err)
			for attempt := 1; attempt <= tt.runAttempts; attempt++ {
				_, _, err := b.q.StartWork(ctx, run.ID, attempt)
				require.NoError(t, err)
			}
			if tt.runEnd != nil {
				require.NoError(t, tt.runEnd(ctx, b.q, run.ID))
			}
			before, err := b.q.RunForWork(ctx, run.ID)
			require.NoError(t, err)

			got, err := b.q.Reconcile(ctx)
			require.NoError(t, err)
			after, err := b.q.RunForWork(ctx, run.ID)
			require.NoError(t, err)
			if tt.wantStatus == "" {
				require.Empty(t, got)
				require.Equal(t, before.Status, after.Status)
				return
			}
			require.Len(t, got, 1)
			require.Equal(t, run.ID, got[0].RunID)
			require.Equal(t, "cid-reconcile", got[0].CorrelationID)
			require.Equal(t, jobID, got[0].JobID)
			require.Equal(t, tt.wantStatus, got[0].Status)
			require.Equal(t, tt.wantReason, got[0].Reason)
			require.Equal(t, tt.wantCode, got[0].ErrorCode)
			require.Equal(t, tt.wantStatus, after.Status)
			require.Equal(t, tt.wantCode, after.ErrorCode)
			if tt.wantCode != "" {
				require.NotEmpty(t, after.ErrorMessage)
			}
			require.Nil(t, after.Result, "no result from an attempt that is not the run's")
			require.Equal(t, tt.wantAttempts, b.attemptOutcomes(t, run.ID))
			if tt.wantStatus == store.StatusRetrying {
				require.NotNil(t, after.NextAttemptAt, "when River scheduled the next attempt")
			}

			again, err := b.q.Reconcile(ctx)
			require.NoError(t, err)
			require.Empty(t, again, "each run is reconciled once")
		})
	}
}

// A cancel can meet an attempt before it started the run: River had
// fetched the job, the start had not committed. River ends the job
// cancelled, so the run waiting for that attempt is cancelled at once; a
// run that another attempt holds is not the cancelled attempt's to end.
func TestCancelBeforeTheAttemptStarted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	boom := store.AttemptFailure{Code: store.ErrorCodeInternal, Message: "market data unavailable"}

	queued, err := b.newRun(t, store.NewRun{JobID: b.job(t, "running", 1, nil, ""), CorrelationID: "cid-queued"})
	require.NoError(t, err)
	require.NoError(t, b.q.CancelAttempt(ctx, queued.ID, 1, "cancelled while its attempt ran"))

	retrying, err := b.newRun(t, store.NewRun{JobID: b.job(t, "running", 2, nil, ""), CorrelationID: "cid-retrying"})
	require.NoError(t, err)
	_, _, err = b.q.StartWork(ctx, retrying.ID, 1)
	require.NoError(t, err)
	_, err = b.q.RetryAttempt(ctx, retrying.ID, 1, time.Now().Add(time.Hour), boom)
	require.NoError(t, err)
	require.NoError(t, b.q.CancelAttempt(ctx, retrying.ID, 2, "cancelled while its attempt ran"))

	for _, id := range []uuid.UUID{queued.ID, retrying.ID} {
		got, err := b.q.RunForWork(ctx, id)
		require.NoError(t, err)
		require.Equal(t, store.StatusCancelled, got.Status)
		require.Equal(t, store.ErrorCodeCancelled, got.ErrorCode)
		require.Nil(t, got.NextAttemptAt)
		require.NotNil(t, got.FinishedAt)
	}

	held, err := b.newRun(t, store.NewRun{JobID: b.job(t, "running", 3, nil, ""), CorrelationID: "cid-held"})
	require.NoError(t, err)
	_, _, err = b.q.StartWork(ctx, held.ID, 3)
	require.NoError(t, err)
	require.ErrorIs(t, b.q.CancelAttempt(ctx, held.ID, 2, "cancelled while its attempt ran"), store.ErrStaleAttempt)
	got, err := b.q.RunForWork(ctx, held.ID)
	require.NoError(t, err)
	require.Equal(t, store.StatusRunning, got.Status, "attempt 3 holds the run")
}

// A shutdown's attempt and the one after it share a number: a page of runs
// lists them in the order they started, as the read of one run does. The
// rows are stored in the other order, so that no plan gets it for free.
func TestAttemptsOfOneNumberListInTheOrderTheyStarted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var ids []uuid.UUID
	for i := range 3 {
		run, err := b.newRun(t, store.NewRun{JobID: b.job(t, "running", 2, nil, ""), CorrelationID: "cid-order-" + strconv.Itoa(i)})
		require.NoError(t, err)
		_, err = b.db.Pool.Exec(ctx, `
			INSERT INTO backtest_run_attempts (run_id, attempt, started_at, finished_at, outcome, error_code)
			VALUES ($1, 2, $2::timestamptz + interval '2 minutes', NULL, NULL, NULL),
			       ($1, 1, $2::timestamptz + interval '1 minute', $2::timestamptz + interval '2 minutes', 'failed', 'internal'),
			       ($1, 1, $2::timestamptz, $2::timestamptz + interval '1 minute', 'interrupted', NULL)`,
			run.ID, at)
		require.NoError(t, err)
		ids = append(ids, run.ID)
	}

	listed, err := b.q.AttemptsOfRuns(ctx, ids)
	require.NoError(t, err)
	require.Len(t, listed, len(ids))
	for _, id := range ids {
		one, err := b.q.RunAttempts(ctx, id)
		require.NoError(t, err)
		require.Equal(t, one, listed[id], "the list and the read of run %s agree", id)
		require.Equal(t, []string{"1:interrupted:", "1:failed:internal", "2::"}, b.attemptOutcomes(t, id))
		for i, a := range listed[id] {
			require.True(t, a.StartedAt.Equal(at.Add(time.Duration(i)*time.Minute)), "attempt %d started at %v", i, a.StartedAt)
		}
	}
}
