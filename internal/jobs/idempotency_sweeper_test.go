package jobs_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
)

// The sweep deletes the expired keys and only those, and says how many:
// at info when it deleted some, at debug (like every maintenance job's
// lifecycle) when there was nothing to do.
func TestIdempotencySweeperDeletesExpiredKeys(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name      string
		expired   int
		wantLevel string
	}{
		{"nothing to do", 0, "debug"},
		{"more than a batch", 5003, "info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			_, err := b.db.Pool.Exec(ctx, `
				INSERT INTO idempotency_keys (user_id, key, request_hash, correlation_id, response_status,
				                              response_body, expires_at)
				SELECT $1, 'k' || i, '\x00', 'c', 201, '{}',
				       CASE WHEN i <= $2 THEN now() - interval '1 second' ELSE now() + interval '1 hour' END
				FROM generate_series(1, $2 + 3) AS i`, b.user.ID, tt.expired)
			require.NoError(t, err)

			tx, err := b.db.Pool.Begin(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
			w := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{
				Middleware: []rivertype.Middleware{jobs.NewLifecycle(b.logger, tx)},
			}, jobs.NewIdempotencySweeper(tx, b.logger))
			res, err := w.Work(ctx, t, tx, jobs.SweepIdempotencyKeysArgs{}, nil)
			require.NoError(t, err)
			require.Equal(t, river.EventKindJobCompleted, res.EventKind)

			rows, err := tx.Query(ctx, `SELECT count(*) FILTER (WHERE expires_at <= now()), count(*) FROM idempotency_keys`)
			require.NoError(t, err)
			counts, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[struct{ Expired, All int }])
			require.NoError(t, err)
			require.Equal(t, struct{ Expired, All int }{0, 3}, counts, "the live keys stay")

			var started, completed map[string]any
			for _, l := range b.logs.Lines(t) {
				switch l[obs.KeyEvent] {
				case obs.EventJobStarted:
					started = l
				case obs.EventJobCompleted:
					completed = l
				}
			}
			require.NotNil(t, started)
			require.Equal(t, "debug", started[obs.KeyLevel], "a maintenance job's start is debug")
			require.NotNil(t, completed)
			require.Equal(t, tt.wantLevel, completed[obs.KeyLevel])
			require.Equal(t, jobs.SweepIdempotencyKeysArgs{}.Kind(), completed[obs.KeyJobKind])
			require.InDelta(t, tt.expired, completed[obs.KeyDeleted], 0)
		})
	}
}
