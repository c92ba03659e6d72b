package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// SweepIdempotencyKeysArgs are the arguments of the periodic job that
// deletes expired idempotency keys.
type SweepIdempotencyKeysArgs struct{}

// Kind is the River job kind of the sweeps.
func (SweepIdempotencyKeysArgs) Kind() string { return "sweep_idempotency_keys" }

// InsertOpts puts sweeps on the maintenance queue; one attempt is enough,
// the next period tries again.
func (SweepIdempotencyKeysArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: MaintenanceQueue, MaxAttempts: 1}
}

// sweepBatch is how many keys one statement deletes: small enough that no
// statement holds many row locks or runs long, whatever the backlog.
const sweepBatch = 5000

// IdempotencySweeper deletes the idempotency keys whose time is up. An
// expired key is never replayed, swept or not (the server takes it over):
// the sweep frees the space its stored response takes.
type IdempotencySweeper struct {
	river.WorkerDefaults[SweepIdempotencyKeysArgs]

	q      *store.Queries
	logger *slog.Logger
}

// NewIdempotencySweeper returns the worker, using db and logging to logger.
func NewIdempotencySweeper(db store.DBTX, logger *slog.Logger) *IdempotencySweeper {
	return &IdempotencySweeper{q: store.New(db), logger: logger}
}

// Timeout bounds one sweep; what it leaves, the next one deletes.
func (w *IdempotencySweeper) Timeout(*river.Job[SweepIdempotencyKeysArgs]) time.Duration {
	return time.Minute
}

// Work deletes expired keys a batch at a time until none is left, then logs
// job_completed with how many it deleted.
func (w *IdempotencySweeper) Work(ctx context.Context, job *river.Job[SweepIdempotencyKeysArgs]) error {
	began := time.Now()
	var deleted int64
	for {
		n, err := w.q.DeleteExpiredIdempotencyKeys(ctx, sweepBatch)
		if err != nil {
			return fmt.Errorf("sweep idempotency keys (%d deleted): %w", deleted, err)
		}
		deleted += n
		if n < sweepBatch {
			break
		}
	}
	level := lifecycleLevel(job.Kind)
	if deleted > 0 {
		level = slog.LevelInfo
	}
	w.logger.LogAttrs(ctx, level, obs.EventJobCompleted,
		slog.Int64(obs.KeyDurationMS, time.Since(began).Milliseconds()),
		slog.Int64(obs.KeyDeleted, deleted))
	return nil
}
