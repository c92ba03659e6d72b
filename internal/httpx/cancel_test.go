package httpx_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// waitBound is how long a test waits for River before failing rather than
// hanging: a bound, not an expectation, so generous for a busy machine.
const waitBound = 60 * time.Second

// cancelBundle is the API of setup with a strategy of alice's.
type cancelBundle struct {
	*testBundle
	strategyID string
}

func setupCancel(t *testing.T) *cancelBundle {
	t.Helper()
	b := setup(t)
	return &cancelBundle{testBundle: b, strategyID: b.strategy(t, b.aliceKey)}
}

// enqueue starts one of alice's backtests and returns its run and job.
func (b *cancelBundle) enqueue(t *testing.T) (runID string, jobID int64) {
	t.Helper()
	r := b.post(t, "/backtests", b.aliceKey,
		`{"strategy_id":"`+b.strategyID+`","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":1000}`)
	require.Equal(t, http.StatusAccepted, r.status, r.raw)
	runID, _ = r.body["run_id"].(string)
	require.NoError(t, b.db.Pool.QueryRow(t.Context(),
		`SELECT river_job_id FROM backtest_runs WHERE id = $1`, runID).Scan(&jobID))
	return runID, jobID
}

func (b *cancelBundle) cancel(t *testing.T, key, runID string) response {
	t.Helper()
	return b.call(t, http.MethodPost, "/backtests/"+runID+"/cancel", key, "", "")
}

// job is what River's table says of a job.
type job struct {
	state    string
	metadata map[string]any
}

func (b *cancelBundle) job(t *testing.T, id int64) job {
	t.Helper()
	var j job
	err := b.db.Pool.QueryRow(t.Context(), `SELECT state::text, metadata FROM river_job WHERE id = $1`, id).Scan(&j.state, &j.metadata)
	require.NoError(t, err)
	return j
}

func (b *cancelBundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := b.db.Pool.Exec(t.Context(), sql, args...)
	require.NoError(t, err)
}

// holder is a backtest worker that holds each job until River cancels its
// context. When it marks runs running, it starts the attempt as the
// service's worker does (store's StartWork).
type holder struct {
	river.WorkerDefaults[jobargs.Backtest]
	b           *cancelBundle
	markRunning bool
	started     chan int64
	released    chan error // the cause of the context's end
	// hold keeps the attempt from returning once its context ends, until
	// the test lets it go: the job stays running in River meanwhile.
	hold  chan struct{}
	letGo func()
}

func (h *holder) Work(ctx context.Context, j *river.Job[jobargs.Backtest]) error {
	if h.markRunning {
		if _, _, err := store.New(h.b.db.Pool).StartWork(ctx, j.Args.RunID, j.Attempt); err != nil {
			return err
		}
	}
	h.started <- j.ID
	<-ctx.Done()
	h.released <- context.Cause(ctx)
	<-h.hold
	return ctx.Err()
}

// Timeout is none: only a cancel ends a held job.
func (h *holder) Timeout(*river.Job[jobargs.Backtest]) time.Duration { return -1 }

// failer is a backtest worker whose attempts all fail.
type failer struct {
	river.WorkerDefaults[jobargs.Backtest]
}

func (failer) Work(context.Context, *river.Job[jobargs.Backtest]) error {
	return errors.New("not enough prices")
}

// retryInAnHour keeps a failed job retryable for the whole test.
type retryInAnHour struct{}

func (retryInAnHour) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(time.Hour) }

// startWorker starts a real River client working backtests with w on the
// test's schema, subscribed to kinds, and stops it when the test ends.
func (b *cancelBundle) startWorker(t *testing.T, w river.Worker[jobargs.Backtest], kinds ...river.EventKind) <-chan *river.Event {
	t.Helper()
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	client, err := river.NewClient(riverpgxv5.New(b.db.Pool), &river.Config{
		Queues:      map[string]river.QueueConfig{jobargs.Queue: {MaxWorkers: 2}},
		Workers:     workers,
		RetryPolicy: retryInAnHour{},
		Logger:      slog.New(slog.DiscardHandler),
		TestOnly:    true,
	})
	require.NoError(t, err)
	events, cancelSub := client.Subscribe(kinds...)
	t.Cleanup(cancelSub)
	require.NoError(t, client.Start(context.WithoutCancel(t.Context())))
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), waitBound)
		defer cancel()
		require.NoError(t, client.StopAndCancel(stopCtx))
	})
	return events
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitBound):
		require.FailNow(t, "waited too long for "+what)
		var zero T
		return zero
	}
}

// held starts a worker holding the jobs it takes, enqueues a backtest and
// waits until the worker holds its job.
func (b *cancelBundle) held(t *testing.T, markRunning bool) (h *holder, runID string, jobID int64) {
	t.Helper()
	h = &holder{
		b: b, markRunning: markRunning, started: make(chan int64, 1), released: make(chan error, 1),
		hold: make(chan struct{}),
	}
	h.letGo = sync.OnceFunc(func() { close(h.hold) })
	b.startWorker(t, h)
	t.Cleanup(h.letGo) // registered after the worker's stop, so it runs before it
	runID, jobID = b.enqueue(t)
	require.Equal(t, jobID, receive(t, h.started, "the worker to take the job"))
	return h, runID, jobID
}

func (b *testBundle) aliceID(t *testing.T) string {
	t.Helper()
	var id string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT id::text FROM users WHERE name = 'alice'`).Scan(&id))
	return id
}

// requireCancelledLine compares the one backtest_cancelled line, parsed,
// with what it must say.
func (b *cancelBundle) requireCancelledLine(t *testing.T, r response, runID string, jobID int64, status string) {
	t.Helper()
	var lines []map[string]any
	for _, l := range b.logs.Lines(t) {
		if l[obs.KeyEvent] == obs.EventBacktestCancelled {
			delete(l, obs.KeyTimestamp)
			lines = append(lines, l)
		}
	}
	require.Equal(t, []map[string]any{{
		obs.KeyLevel: "info", obs.KeyEvent: obs.EventBacktestCancelled, obs.KeyService: "server",
		obs.KeyCorrelationID: r.header.Get("X-Correlation-ID"), obs.KeyUserID: b.aliceID(t),
		obs.KeyRunID: runID, obs.KeyJobID: float64(jobID), obs.KeyStatus: status,
	}}, lines)
}

func TestCancelBacktest(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		// prepare makes the run to cancel, and may check more once the
		// cancel has been answered.
		prepare func(t *testing.T, b *cancelBundle) (runID string, jobID int64, after func(t *testing.T))
		// wantStatus is the run's status in the answer, wantJobState its
		// job's state once the cancel has committed.
		wantStatus   string
		wantJobState string
		// wantRequested: the run is still going, with cancel_requested_at.
		wantRequested bool
	}{
		{
			name: "queued: cancelled with its job",
			prepare: func(t *testing.T, b *cancelBundle) (string, int64, func(*testing.T)) {
				t.Helper()
				runID, jobID := b.enqueue(t)
				return runID, jobID, nil
			},
			wantStatus: "cancelled", wantJobState: "cancelled",
		},
		{
			name: "retrying: cancelled with its job, no next attempt",
			prepare: func(t *testing.T, b *cancelBundle) (string, int64, func(*testing.T)) {
				t.Helper()
				events := b.startWorker(t, failer{}, river.EventKindJobFailed)
				runID, jobID := b.enqueue(t)
				ev := receive(t, events, "the first attempt to fail")
				require.Equal(t, jobID, ev.Job.ID)
				require.Equal(t, "retryable", b.job(t, jobID).state)
				// What the worker writes when an attempt fails with more to come.
				b.exec(t, `
					UPDATE backtest_runs r
					SET status = 'retrying', attempt = 1, next_attempt_at = j.scheduled_at, started_at = now(),
					    error_code = 'insufficient_data', error_message = 'not enough prices'
					FROM river_job j WHERE j.id = r.river_job_id AND r.id = $1`, runID)
				b.exec(t, `
					INSERT INTO backtest_run_attempts (run_id, attempt, started_at, finished_at, outcome, error_code, error_message)
					VALUES ($1, 1, now(), now(), 'failed', 'insufficient_data', 'not enough prices')`, runID)
				return runID, jobID, func(t *testing.T) {
					t.Helper()
					got := b.call(t, http.MethodGet, "/backtests/"+runID, b.aliceKey, "", "")
					require.Nil(t, got.body["next_attempt_at"])
					attempts, _ := got.body["attempts"].([]any)
					require.Len(t, attempts, 1, "the failed attempt is kept")
					first, _ := attempts[0].(map[string]any)
					require.Equal(t, "failed", first["outcome"])
					require.Equal(t, map[string]any{"code": "insufficient_data", "message": "not enough prices"}, first["error"])
				}
			},
			wantStatus: "cancelled", wantJobState: "cancelled",
		},
		{
			name: "running: asked to stop, River's cancel reaches the worker",
			prepare: func(t *testing.T, b *cancelBundle) (string, int64, func(*testing.T)) {
				t.Helper()
				h, runID, jobID := b.held(t, true)
				return runID, jobID, func(t *testing.T) {
					t.Helper()
					require.ErrorIs(t, receive(t, h.released, "the worker's context to end"), river.ErrJobCancelledRemotely)
					h.letGo()
					require.Eventually(t, func() bool { return b.job(t, jobID).state == "cancelled" },
						waitBound, 10*time.Millisecond, "River ends the job cancelled")
				}
			},
			wantStatus: "running", wantJobState: "running", wantRequested: true,
		},
		{
			name: "queued, its job taken meanwhile: treated as running",
			prepare: func(t *testing.T, b *cancelBundle) (string, int64, func(*testing.T)) {
				t.Helper()
				h, runID, jobID := b.held(t, false)
				return runID, jobID, func(t *testing.T) {
					t.Helper()
					require.ErrorIs(t, receive(t, h.released, "the worker's context to end"), river.ErrJobCancelledRemotely)
				}
			},
			wantStatus: "queued", wantJobState: "running", wantRequested: true,
		},
		{
			name: "job gone from River: cancelled anyway",
			prepare: func(t *testing.T, b *cancelBundle) (string, int64, func(*testing.T)) {
				t.Helper()
				runID, jobID := b.enqueue(t)
				b.exec(t, `DELETE FROM river_job WHERE id = $1`, jobID)
				return runID, jobID, nil
			},
			wantStatus: "cancelled",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupCancel(t)
			runID, jobID, after := tt.prepare(t, b)

			r := b.cancel(t, b.aliceKey, runID)
			require.Equal(t, http.StatusOK, r.status, r.raw)
			require.Equal(t, tt.wantStatus, r.body["status"])
			require.Equal(t, runID, r.body["id"])
			if tt.wantRequested {
				require.NotNil(t, r.body["cancel_requested_at"])
				require.Nil(t, r.body["finished_at"])
				require.Nil(t, r.body["error"])
			} else {
				require.Nil(t, r.body["cancel_requested_at"], "the run was cancelled at once")
				require.NotNil(t, r.body["finished_at"])
				require.Equal(t, map[string]any{"code": "cancelled", "message": "The backtest was cancelled on request."}, r.body["error"])
				require.Nil(t, r.body["next_attempt_at"])
			}
			if tt.wantJobState != "" {
				j := b.job(t, jobID)
				require.Equal(t, tt.wantJobState, j.state)
				require.Contains(t, j.metadata, "cancel_attempted_at", "River recorded the cancel")
			}
			b.requireCancelledLine(t, r, runID, jobID, tt.wantStatus)

			// The answer is the run as GET shows it.
			got := b.call(t, http.MethodGet, "/backtests/"+runID, b.aliceKey, "", "")
			require.Equal(t, http.StatusOK, got.status)
			require.Equal(t, r.body, withFreshUpdatedAt(got.body, r.body))

			// Again: not an error, and the run is as the first cancel left it.
			again := b.cancel(t, b.aliceKey, runID)
			require.Equal(t, http.StatusOK, again.status, again.raw)
			require.Equal(t, tt.wantStatus, again.body["status"])
			require.Equal(t, r.body["cancel_requested_at"], again.body["cancel_requested_at"])
			require.Equal(t, r.body["finished_at"], again.body["finished_at"])

			if after != nil {
				after(t)
			}
		})
	}
}

// withFreshUpdatedAt is got with want's updated_at: a worker may touch a
// running run between two requests.
func withFreshUpdatedAt(got, want map[string]any) map[string]any {
	out := make(map[string]any, len(got))
	for k, v := range got {
		out[k] = v
	}
	out["updated_at"] = want["updated_at"]
	return out
}

// A finished run is past cancelling; another user's run, or none, is not
// found. None of them changes the run or its job, or logs a cancel.
func TestCancelBacktestRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     string // the run's, set before the cancel; empty leaves it queued
		key        func(b *cancelBundle) string
		path       func(runID string) string
		wantStatus int
		wantDetail string
	}{
		{
			name: "succeeded", status: "succeeded", wantStatus: http.StatusConflict,
			wantDetail: "This backtest has already finished (succeeded).",
		},
		{
			name: "failed", status: "failed", wantStatus: http.StatusConflict,
			wantDetail: "This backtest has already finished (failed).",
		},
		{
			name: "another user's", key: func(b *cancelBundle) string { return b.bobKey },
			wantStatus: http.StatusNotFound, wantDetail: "No such backtest.",
		},
		{
			name: "unknown", path: func(string) string { return "/backtests/0197a6f5-0000-7000-8000-000000000000/cancel" },
			wantStatus: http.StatusNotFound, wantDetail: "No such backtest.",
		},
		{
			name: "not an id", path: func(string) string { return "/backtests/nope/cancel" },
			wantStatus: http.StatusNotFound, wantDetail: "No such resource.",
		},
		{
			name: "unknown query parameter", path: func(id string) string { return "/backtests/" + id + "/cancel?force=1" },
			wantStatus: http.StatusBadRequest,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupCancel(t)
			runID, jobID := b.enqueue(t)
			if tt.status != "" {
				b.exec(t, `UPDATE backtest_runs SET status = $2, finished_at = now() WHERE id = $1`, runID, tt.status)
			}
			var before string
			require.NoError(t, b.db.Pool.QueryRow(t.Context(),
				`SELECT row_to_json(r)::text FROM backtest_runs r WHERE id = $1`, runID).Scan(&before))
			key := b.aliceKey
			if tt.key != nil {
				key = tt.key(b)
			}
			path := "/backtests/" + runID + "/cancel"
			if tt.path != nil {
				path = tt.path(runID)
			}

			r := b.call(t, http.MethodPost, path, key, "", "")
			requireProblem(t, r, tt.wantStatus)
			if tt.wantDetail != "" {
				require.Equal(t, tt.wantDetail, r.body["detail"])
			}

			var after string
			require.NoError(t, b.db.Pool.QueryRow(t.Context(),
				`SELECT row_to_json(r)::text FROM backtest_runs r WHERE id = $1`, runID).Scan(&after))
			require.JSONEq(t, before, after, "the run is unchanged")
			j := b.job(t, jobID)
			require.Equal(t, "available", j.state)
			require.NotContains(t, j.metadata, "cancel_attempted_at")
			require.Nil(t, b.logs.Find(t, obs.EventBacktestCancelled))
		})
	}
}

// The run resource shows every attempt and errors as {code, message}, the
// same in a run and in a list, whose attempts come with the page.
func TestRunResourceAttemptsAndErrors(t *testing.T) {
	t.Parallel()
	b := setupCancel(t)
	retrying, _ := b.enqueue(t)
	legacy, _ := b.enqueue(t)
	fresh, _ := b.enqueue(t)
	b.exec(t, `
		UPDATE backtest_runs SET status = 'retrying', attempt = 2, started_at = '2026-01-02T03:04:05Z',
		    next_attempt_at = '2026-01-02T03:10:00Z', error_code = 'panic', error_message = 'engine panicked',
		    error_type = 'string'
		WHERE id = $1`, retrying)
	b.exec(t, `
		INSERT INTO backtest_run_attempts (run_id, attempt, started_at, finished_at, outcome, error_code, error_message)
		VALUES ($1, 1, '2026-01-02T03:04:05Z', '2026-01-02T03:04:06Z', 'interrupted', NULL, NULL),
		       ($1, 2, '2026-01-02T03:05:00Z', '2026-01-02T03:05:01Z', 'failed', 'panic', 'engine panicked')`, retrying)
	// A failure stored before codes existed, with its Go type only.
	b.exec(t, `
		UPDATE backtest_runs SET status = 'failed', attempt = 1, error_message = 'boom', error_type = '*errors.errorString',
		    finished_at = now()
		WHERE id = $1`, legacy)
	b.exec(t, `
		INSERT INTO backtest_run_attempts (run_id, attempt, started_at) VALUES ($1, 1, '2026-01-02T03:04:05Z')`, legacy)

	wantAttempts := map[string]string{
		retrying: `[
			{"attempt":1,"started_at":"2026-01-02T03:04:05Z","finished_at":"2026-01-02T03:04:06Z","outcome":"interrupted","error":null},
			{"attempt":2,"started_at":"2026-01-02T03:05:00Z","finished_at":"2026-01-02T03:05:01Z","outcome":"failed",
			 "error":{"code":"panic","message":"engine panicked"}}]`,
		legacy: `[{"attempt":1,"started_at":"2026-01-02T03:04:05Z","finished_at":null,"outcome":null,"error":null}]`,
		fresh:  `[]`,
	}
	wantError := map[string]string{
		retrying: `{"code":"panic","message":"engine panicked"}`,
		legacy:   `{"code":"internal","message":"boom"}`,
		fresh:    `null`,
	}
	check := func(t *testing.T, run map[string]any) {
		t.Helper()
		id, _ := run["id"].(string)
		require.JSONEq(t, wantAttempts[id], mustJSON(t, run["attempts"]), id)
		require.JSONEq(t, wantError[id], mustJSON(t, run["error"]), id)
		require.Contains(t, run, "next_attempt_at")
		require.Contains(t, run, "cancel_requested_at")
		if id == retrying {
			require.Equal(t, "2026-01-02T03:10:00Z", run["next_attempt_at"])
		} else {
			require.Nil(t, run["next_attempt_at"])
		}
	}

	for _, id := range []string{retrying, legacy, fresh} {
		got := b.call(t, http.MethodGet, "/backtests/"+id, b.aliceKey, "", "")
		require.Equal(t, http.StatusOK, got.status, got.raw)
		check(t, got.body)
	}
	list := b.call(t, http.MethodGet, "/backtests", b.aliceKey, "", "")
	require.Equal(t, http.StatusOK, list.status, list.raw)
	runs, _ := list.body["runs"].([]any)
	require.Len(t, runs, 3)
	for _, run := range runs {
		m, _ := run.(map[string]any)
		check(t, m)
	}
	require.NotContains(t, list.raw, `"type"`, "the API shows no Go type")
}

// The job's cancel and the run's are one transaction: when the run cannot
// be written, the job is not cancelled either.
func TestCancelIsOneTransaction(t *testing.T) {
	t.Parallel()
	b := setupCancel(t)
	runID, jobID := b.enqueue(t)
	b.exec(t, `
		CREATE FUNCTION refuse_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'the disk is full'; END $$`)
	b.exec(t, `
		CREATE TRIGGER refuse_cancel BEFORE UPDATE ON backtest_runs
		FOR EACH ROW WHEN (NEW.status = 'cancelled') EXECUTE FUNCTION refuse_cancel()`)

	r := b.cancel(t, b.aliceKey, runID)
	requireProblem(t, r, http.StatusInternalServerError)
	j := b.job(t, jobID)
	require.Equal(t, "available", j.state, "the job's cancel was rolled back with the run's")
	require.NotContains(t, j.metadata, "cancel_attempted_at")
	got := b.call(t, http.MethodGet, "/backtests/"+runID, b.aliceKey, "", "")
	require.Equal(t, "queued", got.body["status"])
	require.Nil(t, b.logs.Find(t, obs.EventBacktestCancelled))
}
