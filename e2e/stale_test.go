package e2e

import (
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// runState is a run and its River job, as the database has them.
type runState struct {
	Status, JobState  string
	Attempt, JobTries int
	HasResult         bool
	JobErrors         int
	Attempts          []string // "number:outcome:code"
}

func readRunState(t *testing.T, db *pgxpool.Pool, runID string) runState {
	t.Helper()
	ctx := t.Context()
	var s runState
	require.NoError(t, db.QueryRow(ctx, `
		SELECT r.status, r.attempt, r.result IS NOT NULL, j.state, j.attempt, coalesce(array_length(j.errors, 1), 0)
		FROM backtest_runs r JOIN river_job j ON j.id = r.river_job_id WHERE r.id = $1`, runID).
		Scan(&s.Status, &s.Attempt, &s.HasResult, &s.JobState, &s.JobTries, &s.JobErrors))
	rows, err := db.Query(ctx, `
		SELECT attempt || ':' || coalesce(outcome, '') || ':' || coalesce(error_code, '')
		FROM backtest_run_attempts WHERE run_id = $1 ORDER BY attempt, started_at`, runID)
	require.NoError(t, err)
	s.Attempts, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return s
}

// A worker frozen (SIGSTOP) past JOB_RESCUE_AFTER, in the middle of a
// backtest, comes back (SIGCONT) to an attempt River has rescued and handed
// to another worker, which is still running it. The frozen worker's attempt
// has timed out meanwhile (its JOB_TIMEOUT is short): its writes are
// refused, it logs stale_attempt at warn, and River's report of its end
// does not put the job back in the queue beside the live attempt. The run
// ends with one result, from attempt 2, and no third attempt.
func TestFrozenWorkerChangesNothing(t *testing.T) {
	t.Parallel()
	// Time passes in the database rather than on the wall clock (as in
	// killMidJob): the frozen worker's attempt began an hour ago, past
	// JOB_RESCUE_AFTER. A rescue delay that long also keeps the frozen
	// worker, should it lead again once back, from rescuing the live
	// attempt while the test holds it.
	st := newStackWith(t, stackOptions{
		env:       []string{"FAULT_INJECTION=1", "RECONCILE_INTERVAL=1s", "JOB_RESCUE_AFTER=10m"},
		workerEnv: []string{"JOB_TIMEOUT=3s"},
	})
	frozen := st.worker

	strategy := st.api.createStrategy(t, 5, 20)
	resp, body := st.api.do(t, http.MethodPost, "/backtests", "frozen-worker", backtestBody(strategy, "STALL1"))
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	runID, _ := body["run_id"].(string)
	ofRun := func(event string, attempt float64) func(map[string]any) bool {
		return func(l map[string]any) bool {
			return l[obs.KeyRunID] == runID && l[obs.KeyEvent] == event && l[obs.KeyAttempt] == attempt
		}
	}
	frozen.waitLine(t, time.Minute, "attempt 1 running", ofRun(obs.EventJobProgress, 1))
	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGSTOP))

	// The frozen worker leads no more, and its attempt is an hour old.
	leaderGoneJobAged(t, st.db, "the frozen worker", time.Hour)

	// Another worker leads, rescues the job and runs attempt 2, slowly
	// (STALL); it is frozen in turn, so that attempt 2 is still running
	// when the first worker comes back, however busy the machine.
	live := start(t, "worker", slices.Concat(st.env, []string{"JOB_TIMEOUT=2m"}))
	live.waitLine(t, time.Minute, "attempt 2 running", ofRun(obs.EventJobProgress, 2))
	require.NoError(t, live.cmd.Process.Signal(syscall.SIGSTOP))
	before := readRunState(t, st.db, runID)
	require.Equal(t, runState{
		Status: "running", Attempt: 2, JobState: "running", JobTries: 2, JobErrors: 1,
		Attempts: []string{"1:interrupted:worker_lost", "2::"},
	}, before)

	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGCONT))
	stale := frozen.waitLine(t, time.Minute, "stale_attempt", ofRun(obs.EventStaleAttempt, 1))
	frozen.stop(t) // River reports the attempt's end before it stops
	require.Equal(t, before, readRunState(t, st.db, runID),
		"the stale attempt changed nothing: the job is still attempt 2's, running, not back in the queue")

	require.NoError(t, live.cmd.Process.Signal(syscall.SIGCONT))
	finished := st.api.waitFinished(t, runID)
	require.Equal(t, "succeeded", finished["status"])
	require.InDelta(t, 2, finished["attempt"], 0)
	live.stop(t)
	require.Equal(t, runState{
		Status: "succeeded", Attempt: 2, HasResult: true, JobState: "completed", JobTries: 2, JobErrors: 1,
		Attempts: []string{"1:interrupted:worker_lost", "2:succeeded:"},
	}, readRunState(t, st.db, runID), "one result, from attempt 2")

	require.Equal(t, "warn", stale[obs.KeyLevel])
	require.Equal(t, "frozen-worker", stale[obs.KeyCorrelationID])
	require.Contains(t, stale[obs.KeyError], "stale attempt")
	t.Logf("stale_attempt: %v", stale)
	completed := 0
	for _, p := range []*process{frozen, live} {
		for _, l := range p.lines(t) {
			if l[obs.KeyRunID] != runID {
				continue
			}
			require.NotEqual(t, "error", l[obs.KeyLevel], "%v", l)
			require.LessOrEqual(t, l[obs.KeyAttempt], float64(2), "no third attempt: %v", l)
			if l[obs.KeyAttempt] == float64(1) {
				require.NotContains(t, []any{obs.EventJobFailed, obs.EventJobCompleted, obs.EventJobInterrupted},
					l[obs.KeyEvent], "the stale attempt's end is not the run's: %v", l)
			}
			if l[obs.KeyEvent] == obs.EventJobCompleted {
				completed++
			}
		}
	}
	require.Equal(t, 1, completed, "one result")
}
