package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

func TestDeleteStrategy(t *testing.T) {
	t.Parallel()

	newStrategy := func(t *testing.T, b *testBundle, user store.User) store.Strategy {
		t.Helper()
		s, err := b.q.CreateStrategy(t.Context(), store.NewStrategy{UserID: user.ID, Name: "s", Kind: "buy_and_hold", Params: json.RawMessage(`{}`)})
		require.NoError(t, err)
		return s
	}

	t.Run("unknown, another user's, or deleted: not found", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.ErrorIs(t, b.q.DeleteStrategy(t.Context(), b.alice.ID, uuid.Must(uuid.NewV7())), store.ErrNotFound)
		require.ErrorIs(t, b.q.DeleteStrategy(t.Context(), b.bob.ID, b.strategy.ID), store.ErrNotFound)
		require.NoError(t, b.q.DeleteStrategy(t.Context(), b.alice.ID, b.strategy.ID))
		require.ErrorIs(t, b.q.DeleteStrategy(t.Context(), b.alice.ID, b.strategy.ID), store.ErrNotFound)
	})

	for _, status := range []string{store.StatusQueued, store.StatusRunning, store.StatusRetrying} {
		t.Run("refused while a run is "+status, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s := newStrategy(t, b, b.alice)
			insertRun(t, b.db.Pool, b.alice, s.ID, status, "ACME", "c", time.Now())
			insertRun(t, b.db.Pool, b.alice, s.ID, store.StatusSucceeded, "ACME", "c", time.Now())
			err := b.q.DeleteStrategy(t.Context(), b.alice.ID, s.ID)
			var inUse *store.StrategyInUseError
			require.ErrorAs(t, err, &inUse)
			require.Equal(t, 1, inUse.Unfinished)
			_, err = b.q.Strategy(t.Context(), b.alice.ID, s.ID)
			require.NoError(t, err, "a refused deletion changes nothing")
		})
	}

	t.Run("the finished runs stay, the strategy is gone for new ones", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s := newStrategy(t, b, b.alice)
		var finished []uuid.UUID
		for _, status := range []string{store.StatusSucceeded, store.StatusFailed, store.StatusCancelled} {
			finished = append(finished, insertRun(t, b.db.Pool, b.alice, s.ID, status, "ACME", "c", time.Now()))
		}
		require.NoError(t, b.q.DeleteStrategy(t.Context(), b.alice.ID, s.ID))

		_, err := b.q.Strategy(t.Context(), b.alice.ID, s.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		listed, _, err := b.q.ListStrategies(t.Context(), b.alice.ID, store.Page{Limit: 50})
		require.NoError(t, err)
		require.Len(t, listed, 1)
		require.Equal(t, b.strategy.ID, listed[0].ID, "only the live strategy is listed")
		for _, id := range finished {
			r, err := b.q.Run(t.Context(), b.alice.ID, id)
			require.NoError(t, err, "a deleted strategy's runs are still read")
			require.Equal(t, s.ID, r.StrategyID)
		}
		runs, _, err := b.q.ListRuns(t.Context(), b.alice.ID, store.RunFilter{StrategyID: s.ID}, store.Page{Limit: 50})
		require.NoError(t, err)
		require.Len(t, runs, 3, "and listed by their strategy")
		_, err = b.newRun(t, store.NewRun{StrategyID: s.ID, CorrelationID: "c", JobID: 1})
		require.ErrorIs(t, err, store.ErrNotFound, "no new run of a deleted strategy")
	})

	// An enqueue locks the user's row before it inserts a run: a deletion
	// that comes meanwhile waits for it, then sees the run.
	t.Run("waits for an enqueue in flight, then counts its run", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		s := newStrategy(t, b, b.alice)
		enqueue, _ := begin(t, b.db.Pool)
		require.NoError(t, store.New(enqueue).LockUser(t.Context(), b.alice.ID))
		insertRun(t, enqueue, b.alice, s.ID, store.StatusQueued, "ACME", "c", time.Now())

		done := make(chan error, 1)
		conn, err := b.db.Pool.Acquire(t.Context())
		require.NoError(t, err)
		defer conn.Release()
		var pid uint32
		require.NoError(t, conn.QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&pid))
		go func() { done <- store.New(conn).DeleteStrategy(t.Context(), b.alice.ID, s.ID) }()
		waitForLockWait(t, b.db.Pool, pid)
		require.NoError(t, enqueue.Commit(t.Context()))
		var inUse *store.StrategyInUseError
		require.ErrorAs(t, <-done, &inUse)
	})
}
