package store_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

// StartWork starts the attempt and loads the strategy in one statement:
// the strategy comes back with the run, or nil once it is deleted, the
// attempt started either way; over a pool that reads results as text too
// (a DATABASE_URL for a PgBouncer may ask for that).
func TestStartWork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		deleted      bool
		execMode     string // the pool's default_query_exec_mode; empty: pgx's default
		wantStrategy bool
	}{
		{"live strategy", false, "", true},
		{"deleted strategy", true, "", false},
		{"live strategy, results as text", false, "exec", true},
		{"deleted strategy, results as text", true, "exec", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			run, err := b.newRun(t, store.NewRun{JobID: b.job(t, "running", 1, nil, ""), CorrelationID: "cid-start-work"})
			require.NoError(t, err)
			if tt.deleted {
				_, err := b.db.Pool.Exec(ctx, `UPDATE strategies SET deleted_at = now() WHERE id = $1`, b.strategy.ID)
				require.NoError(t, err)
			}
			q := b.q
			if tt.execMode != "" {
				u, err := url.Parse(b.db.URL)
				require.NoError(t, err)
				params := u.Query()
				params.Set("default_query_exec_mode", tt.execMode)
				u.RawQuery = params.Encode()
				pool, err := pgxpool.New(ctx, u.String())
				require.NoError(t, err)
				t.Cleanup(pool.Close)
				q = store.New(pool)
			}
			got, strategy, err := q.StartWork(ctx, run.ID, 1)
			require.NoError(t, err)
			require.Equal(t, run.ID, got.ID)
			require.Equal(t, store.StatusRunning, got.Status)
			require.Equal(t, 1, got.Attempt)
			if tt.wantStrategy {
				require.NotNil(t, strategy)
				require.Equal(t, b.strategy.ID, strategy.ID)
				require.Equal(t, b.strategy.UserID, strategy.UserID)
				require.Equal(t, b.strategy.Name, strategy.Name)
				require.Equal(t, b.strategy.Kind, strategy.Kind)
				require.True(t, b.strategy.CreatedAt.Equal(strategy.CreatedAt), "%v", strategy.CreatedAt)
				require.JSONEq(t, string(b.strategy.Params), string(strategy.Params))
			} else {
				require.Nil(t, strategy)
			}
			require.Equal(t, []string{"1::"}, b.attemptOutcomes(t, run.ID))

			_, _, err = q.StartWork(ctx, run.ID, 1)
			require.ErrorIs(t, err, store.ErrStaleAttempt)
		})
	}
}

// CompleteWork writes the run, its attempt's row and River's job together,
// or nothing at all.
func TestCompleteWork(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// jobState and jobAttempt are River's job when the attempt ends.
		jobState   string
		jobAttempt int
		// started is the attempt the run was started at.
		started     int
		deleteJob   bool
		wantErr     error
		wantRun     string
		wantJob     string
		wantOutcome []string
	}{
		{"completes all three", "running", 1, 1, false, nil, store.StatusSucceeded, "completed", []string{"1:succeeded:"}},
		{"River rescued the job: a later attempt runs", "running", 2, 1, false, store.ErrStaleAttempt, store.StatusRunning, "running", []string{"1::"}},
		{"River has the job cancelled", "cancelled", 1, 1, false, store.ErrStaleAttempt, store.StatusRunning, "cancelled", []string{"1::"}},
		{"the run moved on to attempt 2", "running", 1, 2, false, store.ErrStaleAttempt, store.StatusRunning, "running", []string{"2::"}},
		{"the job is gone", "running", 1, 1, true, store.ErrJobGone, store.StatusRunning, "", []string{"1::"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			jobID := b.job(t, tt.jobState, tt.jobAttempt, nil, "")
			run, err := b.newRun(t, store.NewRun{JobID: jobID, CorrelationID: "cid-complete-work"})
			require.NoError(t, err)
			_, _, err = b.q.StartWork(ctx, run.ID, tt.started)
			require.NoError(t, err)
			if tt.deleteJob {
				_, err := b.db.Pool.Exec(ctx, `DELETE FROM river_job WHERE id = $1`, jobID)
				require.NoError(t, err)
			}

			err = b.q.CompleteWork(ctx, run.ID, 1, jobID, json.RawMessage(`{"bars":252}`))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}

			got, err := b.q.RunForWork(ctx, run.ID)
			require.NoError(t, err)
			require.Equal(t, tt.wantRun, got.Status)
			if tt.wantRun == store.StatusSucceeded {
				require.JSONEq(t, `{"bars":252}`, string(got.Result))
				require.Equal(t, 100, got.ProgressPct)
				require.NotNil(t, got.FinishedAt)
			} else {
				require.Nil(t, got.Result)
			}
			require.Equal(t, tt.wantOutcome, b.attemptOutcomes(t, run.ID))
			if tt.wantJob != "" {
				var state string
				var finalized bool
				require.NoError(t, b.db.Pool.QueryRow(ctx,
					`SELECT state::text, finalized_at IS NOT NULL FROM river_job WHERE id = $1`, jobID).Scan(&state, &finalized))
				require.Equal(t, tt.wantJob, state)
				require.Equal(t, tt.wantJob == "completed" || tt.wantJob == "cancelled", finalized)
			}
		})
	}
}
