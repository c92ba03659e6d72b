package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

// waitForLockWait returns once the backend pid waits for a lock: the
// interleaving a test of concurrent transactions needs, found by asking
// PostgreSQL rather than by sleeping.
func waitForLockWait(t *testing.T, pool *pgxpool.Pool, pid uint32) {
	t.Helper()
	for {
		var waiting bool
		require.NoError(t, pool.QueryRow(t.Context(), `
			SELECT COALESCE(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting))
		if waiting {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatal("the transaction never waited for the lock")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// begin starts a transaction on a connection of its own and returns it
// with the connection's backend pid.
func begin(t *testing.T, pool *pgxpool.Pool) (pgx.Tx, uint32) {
	t.Helper()
	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(t.Context())) })
	var pid uint32
	require.NoError(t, tx.QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&pid))
	return tx, pid
}

func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()

	req := func(b *testBundle, key, hash string) store.IdempotentRequest {
		return store.IdempotentRequest{
			UserID: b.alice.ID, Key: key, RequestHash: []byte(hash), CorrelationID: "cid-" + hash, TTL: time.Hour,
		}
	}
	resp := store.StoredResponse{Status: 201, Location: "/strategies/x", Body: []byte(`{"id":"x"}` + "\n")}

	// claimAndSave claims the key in a transaction of its own and saves
	// resp with it.
	claimAndSave := func(t *testing.T, b *testBundle, r store.IdempotentRequest) {
		t.Helper()
		require.NoError(t, b.q.InTx(t.Context(), func(tx pgx.Tx) error {
			held, err := store.New(tx).ClaimIdempotencyKey(t.Context(), r)
			require.Nil(t, held)
			if err != nil {
				return err
			}
			return store.New(tx).SaveIdempotentResponse(t.Context(), r.UserID, r.Key, resp)
		}))
	}

	t.Run("a held key returns its record, per user", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		claimAndSave(t, b, req(b, "k", "h1"))
		held, err := b.q.ClaimIdempotencyKey(t.Context(), req(b, "k", "h2"))
		require.NoError(t, err)
		require.NotNil(t, held)
		require.Equal(t, []byte("h1"), held.RequestHash)
		require.Equal(t, "cid-h1", held.CorrelationID)
		require.Equal(t, resp, held.Response)

		bobs := req(b, "k", "h1")
		bobs.UserID = b.bob.ID
		held, err = b.q.ClaimIdempotencyKey(t.Context(), bobs)
		require.NoError(t, err)
		require.Nil(t, held, "keys are per user: bob's k is not alice's")
	})

	t.Run("a rolled back claim leaves nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tx, _ := begin(t, b.db.Pool)
		held, err := store.New(tx).ClaimIdempotencyKey(t.Context(), req(b, "k", "h1"))
		require.NoError(t, err)
		require.Nil(t, held)
		require.NoError(t, tx.Rollback(t.Context()))
		claimAndSave(t, b, req(b, "k", "h2"))
	})

	for _, commit := range []bool{true, false} {
		name := map[bool]string{
			true:  "a claim waits for the holder, then reads what it committed",
			false: "a claim waits for the holder, then takes the key it rolled back",
		}[commit]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			first, _ := begin(t, b.db.Pool)
			held, err := store.New(first).ClaimIdempotencyKey(t.Context(), req(b, "k", "h1"))
			require.NoError(t, err)
			require.Nil(t, held)
			require.NoError(t, store.New(first).SaveIdempotentResponse(t.Context(), b.alice.ID, "k", resp))

			second, pid := begin(t, b.db.Pool)
			type outcome struct {
				held *store.IdempotencyRecord
				err  error
			}
			done := make(chan outcome, 1)
			go func() {
				held, err := store.New(second).ClaimIdempotencyKey(t.Context(), req(b, "k", "h1"))
				done <- outcome{held, err}
			}()
			waitForLockWait(t, b.db.Pool, pid)
			if commit {
				require.NoError(t, first.Commit(t.Context()))
			} else {
				require.NoError(t, first.Rollback(t.Context()))
			}
			got := <-done
			require.NoError(t, got.err)
			if commit {
				require.NotNil(t, got.held)
				require.Equal(t, resp, got.held.Response)
			} else {
				require.Nil(t, got.held, "the key is the second's")
			}
		})
	}

	t.Run("an expired key is taken over, and swept", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, key := range []string{"old1", "old2", "old3", "live"} {
			claimAndSave(t, b, req(b, key, "h1"))
		}
		_, err := b.db.Pool.Exec(t.Context(),
			`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key LIKE 'old%'`)
		require.NoError(t, err)
		claimAndSave(t, b, req(b, "old1", "h2")) // claimed afresh: nil record, asserted inside

		deleted, err := b.q.DeleteExpiredIdempotencyKeys(t.Context(), 1)
		require.NoError(t, err)
		require.Equal(t, int64(1), deleted, "one batch of one")
		deleted, err = b.q.DeleteExpiredIdempotencyKeys(t.Context(), 10)
		require.NoError(t, err)
		require.Equal(t, int64(1), deleted)
		var keys []string
		rows, err := b.db.Pool.Query(t.Context(), `SELECT key FROM idempotency_keys ORDER BY key`)
		require.NoError(t, err)
		keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{"live", "old1"}, keys, "the renewed and the live key stay")
	})

	t.Run("a deleted user cannot claim", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		gone, err := b.q.EnsureUser(t.Context(), "gone")
		require.NoError(t, err)
		_, err = b.db.Pool.Exec(t.Context(), `DELETE FROM users WHERE id = $1`, gone.ID)
		require.NoError(t, err)
		r := req(b, "k", "h")
		r.UserID = gone.ID
		_, err = b.q.ClaimIdempotencyKey(t.Context(), r)
		require.ErrorIs(t, err, store.ErrUserGone)
	})
}
