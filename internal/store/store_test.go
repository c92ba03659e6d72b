package store_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/store"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

type testBundle struct {
	q        *store.Queries
	db       *dbtest.DB
	alice    store.User
	bob      store.User
	strategy store.Strategy
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return setupOn(t, dbtest.New(t))
}

// setupOn is setup on a given database.
func setupOn(t *testing.T, db *dbtest.DB) *testBundle {
	t.Helper()
	q := store.New(db.Pool)
	alice, err := q.EnsureUser(t.Context(), "alice")
	require.NoError(t, err)
	bob, err := q.EnsureUser(t.Context(), "bob")
	require.NoError(t, err)
	strategy, err := q.CreateStrategy(t.Context(), store.NewStrategy{
		UserID: alice.ID, Name: "s", Kind: "buy_and_hold", Params: json.RawMessage(`{}`),
	})
	require.NoError(t, err)
	return &testBundle{q: q, db: db, alice: alice, bob: bob, strategy: strategy}
}

// newRun inserts a queued run as InsertRun does, nr's zero fields filled
// in: a run of alice's, of the bundle's strategy, on ACME over 2020 with
// 1000 of cash. It returns InsertRun's error, for the tests that expect one
// and for goroutines, which must not stop the test.
func (b *testBundle) newRun(t *testing.T, nr store.NewRun) (store.Run, error) {
	t.Helper()
	if nr.ID == uuid.Nil {
		nr.ID = uuid.Must(uuid.NewV7())
	}
	if nr.UserID == uuid.Nil {
		nr.UserID = b.alice.ID
	}
	if nr.StrategyID == uuid.Nil {
		nr.StrategyID = b.strategy.ID
	}
	if nr.Symbol == "" {
		nr.Symbol = "ACME"
	}
	if nr.Start.IsZero() {
		nr.Start = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if nr.End.IsZero() {
		nr.End = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if nr.InitialCash == 0 {
		nr.InitialCash = 1000
	}
	return b.q.InsertRun(t.Context(), nr)
}

func TestUsersAndKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	again, err := b.q.EnsureUser(t.Context(), "alice")
	require.NoError(t, err)
	require.Equal(t, b.alice.ID, again.ID, "EnsureUser is idempotent")

	require.NoError(t, b.q.AddAPIKey(t.Context(), b.alice.ID, []byte("hash-1")))
	u, err := b.q.UserByKeyHash(t.Context(), []byte("hash-1"))
	require.NoError(t, err)
	require.Equal(t, b.alice.ID, u.ID)
	_, err = b.q.UserByKeyHash(t.Context(), []byte("hash-2"))
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestStrategiesAreOwned(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, err := b.q.Strategy(t.Context(), b.alice.ID, b.strategy.ID)
	require.NoError(t, err)
	require.JSONEq(t, `{}`, string(s.Params))
	_, err = b.q.Strategy(t.Context(), b.bob.ID, b.strategy.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestInsertRunChecksTheStrategyOwner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.newRun(t, store.NewRun{UserID: b.bob.ID, CorrelationID: "cid", JobID: 42})
	require.ErrorIs(t, err, store.ErrNotFound)
	var n int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM backtest_runs`).Scan(&n))
	require.Zero(t, n)

	r, err := b.newRun(t, store.NewRun{CorrelationID: "cid", JobID: 42})
	require.NoError(t, err)
	require.Equal(t, store.StatusQueued, r.Status)
	require.Equal(t, "cid", r.CorrelationID)
	require.Equal(t, int64(42), r.JobID)
	_, err = b.q.Run(t.Context(), b.bob.ID, r.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestRunsByCorrelationIDUseItsIndex(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, cid := range []string{"a", "a", "b"} {
		_, err := b.newRun(t, store.NewRun{CorrelationID: cid})
		require.NoError(t, err)
	}
	byCID := func(user store.User, cid string) ([]store.Run, error) {
		runs, _, err := b.q.ListRuns(t.Context(), user.ID, store.RunFilter{CorrelationID: cid}, store.Page{Limit: 50})
		return runs, err
	}
	runs, err := byCID(b.alice, "a")
	require.NoError(t, err)
	require.Len(t, runs, 2)
	require.True(t, runs[0].CreatedAt.After(runs[1].CreatedAt) || runs[0].CreatedAt.Equal(runs[1].CreatedAt))
	other, err := byCID(b.bob, "a")
	require.NoError(t, err)
	require.Empty(t, other)

	// A user with thousands of runs: the planner must pick the correlation
	// index for both the API's query and the operator's SQL lookup.
	_, err = b.db.Pool.Exec(t.Context(), `
		INSERT INTO backtest_runs (id, user_id, strategy_id, correlation_id, river_job_id, symbol,
		                           start_date, end_date, initial_cash)
		SELECT gen_random_uuid(), $1, $2, 'cid-' || i, i, 'ACME', '2020-01-01', '2021-01-01', 1000
		FROM generate_series(1, 5000) AS i`, b.alice.ID, b.strategy.ID)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(t.Context(), `ANALYZE backtest_runs`)
	require.NoError(t, err)
	for _, query := range []string{
		`EXPLAIN SELECT id FROM backtest_runs WHERE correlation_id = 'a' AND user_id = '` + b.alice.ID.String() + `'`,
		`EXPLAIN SELECT id FROM backtest_runs WHERE correlation_id = 'a'`,
	} {
		rows, err := b.db.Pool.Query(t.Context(), query)
		require.NoError(t, err)
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Contains(t, strings.Join(plan, "\n"), "backtest_runs_correlation_id_idx", query)
	}
}

func TestAPIKeysAreNamedAndRevoked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	k1, err := b.q.CreateAPIKey(ctx, b.alice.ID, []byte("hash-1"), "bt_AAAAAAAA")
	require.NoError(t, err)
	require.Equal(t, "bt_AAAAAAAA", k1.Prefix)
	_, err = b.q.CreateAPIKey(ctx, b.bob.ID, []byte("hash-2"), "bt_BBBBBBBB")
	require.NoError(t, err)
	_, err = b.q.CreateAPIKey(ctx, b.bob.ID, []byte("hash-3"), "bt_BBBBBBBB") // 48 bits can collide
	require.NoError(t, err)
	require.NoError(t, b.q.AddAPIKey(ctx, b.bob.ID, []byte("hash-4")), "a key without a prefix")

	tests := []struct {
		prefix string
		want   int
	}{{"bt_AAAAAAAA", 1}, {"bt_BBBBBBBB", 2}, {"bt_CCCCCCCC", 0}, {"", 0}}
	for _, tt := range tests {
		found, err := b.q.APIKeysByPrefix(ctx, tt.prefix)
		require.NoError(t, err)
		require.Len(t, found, tt.want, tt.prefix)
	}

	revoked, err := b.q.RevokeAPIKey(ctx, k1.ID)
	require.NoError(t, err)
	require.Equal(t, b.alice.ID, revoked.UserID)
	require.Equal(t, "bt_AAAAAAAA", revoked.Prefix)
	_, err = b.q.UserByKeyHash(ctx, []byte("hash-1"))
	require.ErrorIs(t, err, store.ErrNotFound, "a revoked key names nobody")
	_, err = b.q.RevokeAPIKey(ctx, k1.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	u, err := b.q.UserByKeyHash(ctx, []byte("hash-2"))
	require.NoError(t, err)
	require.Equal(t, b.bob.ID, u.ID, "other keys still work")
}

// Every way a key stops naming its user is announced on api_key_revoked,
// at commit, with the key's hash; a rolled-back deletion is not.
func TestKeyDeletionsAreAnnounced(t *testing.T) {
	t.Parallel()
	b := setupOn(t, dbtest.NewDatabase(t)) // NOTIFY reaches every schema of a database
	ctx := t.Context()
	listener, err := pgx.Connect(ctx, b.db.URL)
	require.NoError(t, err)
	defer listener.Close(context.WithoutCancel(ctx))
	_, err = listener.Exec(ctx, `LISTEN api_key_revoked`)
	require.NoError(t, err)
	next := func(t *testing.T) string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		require.NoError(t, err)
		require.Equal(t, "api_key_revoked", n.Channel)
		return n.Payload
	}
	addKey := func(t *testing.T, user store.User, hash string) store.APIKey {
		t.Helper()
		k, err := b.q.CreateAPIKey(ctx, user.ID, []byte(hash), "")
		require.NoError(t, err)
		return k
	}
	hexOf := func(s string) string { return hex.EncodeToString([]byte(s)) }

	// Each step is announced before the next one starts; the steps run in
	// order on one database.
	kept := addKey(t, b.alice, "rolled-back")
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = store.New(tx).RevokeAPIKey(ctx, kept.ID)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx)) // nothing to announce
	k := addKey(t, b.alice, "revoked")
	_, err = b.q.RevokeAPIKey(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, hexOf("revoked"), next(t), "the revocation, once, after the rollback announced nothing")

	addKey(t, b.alice, "by-sql")
	_, err = b.db.Pool.Exec(ctx, `DELETE FROM api_keys WHERE key_hash = $1`, []byte("by-sql"))
	require.NoError(t, err)
	require.Equal(t, hexOf("by-sql"), next(t))

	addKey(t, b.bob, "bob-1")
	_, err = b.db.Pool.Exec(ctx, `UPDATE api_keys SET key_hash = 'other' WHERE key_hash = $1`, []byte("bob-1"))
	require.NoError(t, err)
	require.Equal(t, hexOf("bob-1"), next(t), "a changed hash no longer names the user")

	_, err = b.db.Pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, b.bob.ID)
	require.NoError(t, err)
	require.Equal(t, hexOf("other"), next(t), "deleting the user deletes the key")

	addKey(t, b.alice, "truncated")
	_, err = b.db.Pool.Exec(ctx, `TRUNCATE api_keys`)
	require.NoError(t, err)
	require.Empty(t, next(t), "TRUNCATE: forget every key")
}

// A strategy written for a user deleted meanwhile is ErrUserGone, not an
// internal error.
func TestWritesForAGoneUser(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	_, err := b.db.Pool.Exec(ctx, `DELETE FROM users WHERE id = $1`, b.bob.ID)
	require.NoError(t, err)
	_, err = b.q.CreateStrategy(ctx, store.NewStrategy{UserID: b.bob.ID, Name: "s", Kind: "buy_and_hold", Params: json.RawMessage(`{}`)})
	require.ErrorIs(t, err, store.ErrUserGone)
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	require.ErrorIs(t, store.New(tx).LockUser(ctx, b.bob.ID), store.ErrUserGone)
	require.NoError(t, store.New(tx).LockUser(ctx, b.alice.ID))
}

// The count of unfinished runs sees queued, running and retrying runs only, stops at
// its bound, and is served by the partial index.
func TestCountUnfinishedRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	var runs []store.Run
	for range 5 {
		r, err := b.newRun(t, store.NewRun{CorrelationID: "cid"})
		require.NoError(t, err)
		runs = append(runs, r)
	}
	for _, r := range runs[:4] {
		_, _, err := b.q.StartWork(ctx, r.ID, 1)
		require.NoError(t, err)
	}
	require.NoError(t, b.q.CompleteAttempt(ctx, runs[1].ID, 1, json.RawMessage(`{}`)))
	boom := store.AttemptFailure{Code: store.ErrorCodeInternal, Message: "boom"}
	require.NoError(t, b.q.FailAttempt(ctx, runs[2].ID, 1, boom))
	status, err := b.q.RetryAttempt(ctx, runs[3].ID, 1, time.Now().Add(time.Minute), boom)
	require.NoError(t, err)
	require.Equal(t, store.StatusRetrying, status)
	// Left: one running, one retrying, one queued.

	tests := []struct {
		name string
		user store.User
		upTo int
		want int
	}{
		{"all of them", b.alice, 100, 3},
		{"up to the bound", b.alice, 2, 2},
		{"another user", b.bob, 100, 0},
	}
	for _, tt := range tests {
		n, err := b.q.CountUnfinishedRuns(ctx, tt.user.ID, tt.upTo)
		require.NoError(t, err)
		require.Equal(t, tt.want, n, tt.name)
	}

	_, err = b.db.Pool.Exec(ctx, `
		INSERT INTO backtest_runs (id, user_id, strategy_id, correlation_id, river_job_id, symbol,
		                           start_date, end_date, initial_cash, status)
		SELECT gen_random_uuid(), $1, $2, 'cid-' || i, i, 'ACME', '2020-01-01', '2021-01-01', 1000, 'succeeded'
		FROM generate_series(1, 5000) AS i`, b.alice.ID, b.strategy.ID)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `ANALYZE backtest_runs`)
	require.NoError(t, err)
	rows, err := b.db.Pool.Query(ctx, `EXPLAIN SELECT count(*) FROM (SELECT 1 FROM backtest_runs
		WHERE user_id = $1 AND status IN ('queued', 'running', 'retrying') LIMIT 50000) u`, b.alice.ID)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	// Either partial index of unfinished runs serves: both leave the 5,000
	// finished runs unread (the planner takes the strategy's when, as here,
	// all runs share one).
	require.Regexp(t, `Index Scan using backtest_runs_unfinished_(user|strategy)_id_idx`, strings.Join(plan, "\n"))
}

// The statement timeout is PostgreSQL's: the database ends a statement that
// runs longer, whatever its client does.
func TestOpenWithStatementTimeout(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	tests := []struct {
		name    string
		opts    []store.Option
		setting string
		sleepOK bool
	}{
		{name: "with", opts: []store.Option{store.WithStatementTimeout(200 * time.Millisecond)}, setting: "200ms"},
		{name: "without", setting: "0", sleepOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, err := store.Open(t.Context(), db.URL, tt.opts...)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			var setting string
			require.NoError(t, pool.QueryRow(t.Context(), `SHOW statement_timeout`).Scan(&setting))
			require.Equal(t, tt.setting, setting)
			_, err = pool.Exec(t.Context(), `SELECT pg_sleep(0.5)`)
			if tt.sleepOK {
				require.NoError(t, err)
				return
			}
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			require.Equal(t, "57014", pgErr.Code, "query_canceled by statement_timeout: %v", err)
		})
	}
}

// Open's errors are one line for the operator, and still say what happened
// underneath: a refused connection is Unavailable, a missing database is
// PostgreSQL's 3D000 and not a reason to retry.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, missingURL := dbtest.NewEmpty(t)
	tests := []struct {
		name            string
		url             string
		wantMsg         string
		wantUnavailable bool
		check           func(t *testing.T, err error)
	}{
		{
			name:            "nothing listens",
			url:             "postgres://postgres@127.0.0.1:1/backtest?sslmode=disable",
			wantMsg:         "cannot reach PostgreSQL at 127.0.0.1:1/backtest: connect: connection refused (set DATABASE_URL)",
			wantUnavailable: true,
			check: func(t *testing.T, err error) {
				t.Helper()
				require.ErrorIs(t, err, syscall.ECONNREFUSED)
			},
		},
		{
			name:    "no such database",
			url:     missingURL,
			wantMsg: "does not exist",
			// pgx reports it as a failed connect, which counts: a server whose
			// database is dropped under it answers 503, not 500.
			wantUnavailable: true,
			check: func(t *testing.T, err error) {
				t.Helper()
				var pgErr *pgconn.PgError
				require.ErrorAs(t, err, &pgErr)
				require.Equal(t, "3D000", pgErr.Code)
			},
		},
		{
			name:    "not a URL",
			url:     "postgres://postgres:s3cret@127.0.0.1:notaport/backtest",
			wantMsg: "DATABASE_URL is not a valid PostgreSQL URL",
			check: func(t *testing.T, err error) {
				t.Helper()
				require.NotContains(t, err.Error(), "s3cret", "the password is never shown")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool, err := store.Open(t.Context(), tt.url)
			require.Nil(t, pool)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantMsg)
			require.NotContains(t, err.Error(), "\n", "one line")
			require.Equal(t, tt.wantUnavailable, store.Unavailable(err), "%v", err)
			tt.check(t, err)
		})
	}
}
