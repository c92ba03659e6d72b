// Package store holds the service's SQL: users and API keys, strategies and
// backtest runs, over pgx. Every query runs on a DBTX, so the same code works
// on the pool and inside a transaction.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotFound is returned when a row does not exist or belongs to another
// user: callers cannot tell the two apart, by design.
var ErrNotFound = errors.New("not found")

// ErrUserGone is returned when a write names a user that no longer exists:
// deleted while one of their keys was still remembered by a server.
var ErrUserGone = errors.New("the user no longer exists")

// DBTX is the service's one handle on the database: a *pgxpool.Pool, a
// *pgx.Conn or a pgx.Tx. The queries need the first three methods, and
// CopyFrom for the bulk writes of a sweep; Begin is for callers that group
// writes in a transaction (on a pgx.Tx it opens a savepoint, so the same
// code runs inside a test's transaction).
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Queries runs the service's SQL on one DBTX.
type Queries struct {
	db DBTX
}

// New returns Queries running on db.
func New(db DBTX) *Queries {
	return &Queries{db: db}
}

// InTx runs fn in a transaction on q's handle (a savepoint when that is a
// transaction already): committed if fn returns nil, rolled back otherwise.
func (q *Queries) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, q.db, fn)
}

// MaxNameLength is the most characters (Unicode code points, which is what
// PostgreSQL's length() counts) in the name of a user or of a strategy:
// create-api-key and the API check names against it, and the users table's
// CHECK (length(name) <= 100) holds user names to the same figure.
const MaxNameLength = 100

// User owns strategies and runs and authenticates with API keys.
type User struct {
	ID        uuid.UUID
	Name      string
	CreatedAt time.Time
}

// Strategy is a saved trading strategy: a kind and its parameters.
type Strategy struct {
	ID        uuid.UUID
	UserID    uuid.UUID
	Name      string
	Kind      string
	Params    json.RawMessage
	CreatedAt time.Time
}

const strategyColumns = `id, user_id, name, kind, params, created_at`

// scanDest returns the destinations of strategyColumns in s, in their order.
func (s *Strategy) scanDest() []any {
	return []any{&s.ID, &s.UserID, &s.Name, &s.Kind, &s.Params, &s.CreatedAt}
}

func scanStrategy(row pgx.Row) (Strategy, error) {
	var s Strategy
	err := row.Scan(s.scanDest()...)
	return s, err
}

// EnsureUser returns the user called name, creating it if needed.
func (q *Queries) EnsureUser(ctx context.Context, name string) (User, error) {
	var u User
	err := q.db.QueryRow(ctx, `
		INSERT INTO users (id, name) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
		RETURNING id, name, created_at`,
		uuid.Must(uuid.NewV7()), name,
	).Scan(&u.ID, &u.Name, &u.CreatedAt)
	if err != nil {
		return User{}, fmt.Errorf("ensure user %q: %w", name, err)
	}
	return u, nil
}

// AddAPIKey stores the hash of a new API key of userID.
func (q *Queries) AddAPIKey(ctx context.Context, userID uuid.UUID, keyHash []byte) error {
	_, err := q.CreateAPIKey(ctx, userID, keyHash, "")
	return err
}

// APIKey is what is known of a key besides its hash: enough to name it.
type APIKey struct {
	ID     uuid.UUID
	UserID uuid.UUID
	// Prefix is the key's first characters, not secret; empty for keys
	// made before prefixes were kept.
	Prefix    string
	CreatedAt time.Time
}

// CreateAPIKey stores the hash of a new API key of userID with its
// non-secret prefix, and returns the stored key.
func (q *Queries) CreateAPIKey(ctx context.Context, userID uuid.UUID, keyHash []byte, prefix string) (APIKey, error) {
	k := APIKey{ID: uuid.Must(uuid.NewV7()), UserID: userID, Prefix: prefix}
	err := q.db.QueryRow(ctx, `
		INSERT INTO api_keys (id, user_id, key_hash, key_prefix) VALUES ($1, $2, $3, NULLIF($4, ''))
		RETURNING created_at`,
		k.ID, userID, keyHash, prefix,
	).Scan(&k.CreatedAt)
	if err != nil {
		return APIKey{}, fmt.Errorf("add api key of user %s: %w", userID, err)
	}
	return k, nil
}

// APIKeysByPrefix returns the keys whose prefix is prefix: one, normally;
// none or several are for the caller to explain.
func (q *Queries) APIKeysByPrefix(ctx context.Context, prefix string) ([]APIKey, error) {
	rows, err := q.db.Query(ctx, `
		SELECT id, user_id, COALESCE(key_prefix, ''), created_at FROM api_keys
		WHERE key_prefix = $1 ORDER BY created_at, id`, prefix)
	if err != nil {
		return nil, fmt.Errorf("find api keys by prefix: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (APIKey, error) {
		var k APIKey
		err := row.Scan(&k.ID, &k.UserID, &k.Prefix, &k.CreatedAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("find api keys by prefix: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey deletes the key id and returns what it was, or ErrNotFound.
// The table's trigger tells every server to forget the key once the
// deletion commits.
func (q *Queries) RevokeAPIKey(ctx context.Context, id uuid.UUID) (APIKey, error) {
	k := APIKey{ID: id}
	err := q.db.QueryRow(ctx, `
		DELETE FROM api_keys WHERE id = $1
		RETURNING user_id, COALESCE(key_prefix, ''), created_at`, id,
	).Scan(&k.UserID, &k.Prefix, &k.CreatedAt)
	if err != nil {
		return APIKey{}, fmt.Errorf("revoke api key %s: %w", id, notFound(err))
	}
	return k, nil
}

// LockUser holds userID's row until the transaction ends, so that the
// user's enqueues, which count then add to the user's runs, run one at a
// time. The lock does not block inserts that merely reference the user
// (their foreign-key check takes a weaker lock), but does block the user's
// deletion. It returns ErrUserGone when the user does not exist.
func (q *Queries) LockUser(ctx context.Context, userID uuid.UUID) error {
	var one int
	err := q.db.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, userID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("lock user %s: %w", userID, ErrUserGone)
	}
	if err != nil {
		return fmt.Errorf("lock user %s: %w", userID, err)
	}
	return nil
}

// CountUnfinishedRuns counts userID's queued, running and retrying runs, counting no
// further than upTo: a caller comparing with a bound need not read past it.
func (q *Queries) CountUnfinishedRuns(ctx context.Context, userID uuid.UUID, upTo int) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, `
		SELECT count(*) FROM (
		    SELECT 1 FROM backtest_runs
		    WHERE user_id = $1 AND status IN ('queued', 'running', 'retrying')
		    LIMIT $2
		) unfinished`, userID, upTo).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count unfinished runs of user %s: %w", userID, err)
	}
	return n, nil
}

// UserByKeyHash returns the owner of the API key with this hash, or
// ErrNotFound.
func (q *Queries) UserByKeyHash(ctx context.Context, keyHash []byte) (User, error) {
	var u User
	err := q.db.QueryRow(ctx, `
		SELECT u.id, u.name, u.created_at
		FROM api_keys k JOIN users u ON u.id = k.user_id
		WHERE k.key_hash = $1`, keyHash,
	).Scan(&u.ID, &u.Name, &u.CreatedAt)
	if err != nil {
		return User{}, fmt.Errorf("find user by api key: %w", notFound(err))
	}
	return u, nil
}

// NewStrategy is what CreateStrategy needs.
type NewStrategy struct {
	UserID uuid.UUID
	Name   string
	Kind   string
	Params json.RawMessage
}

// CreateStrategy saves a strategy.
func (q *Queries) CreateStrategy(ctx context.Context, ns NewStrategy) (Strategy, error) {
	s := Strategy{ID: uuid.Must(uuid.NewV7()), UserID: ns.UserID, Name: ns.Name, Kind: ns.Kind, Params: ns.Params}
	err := q.db.QueryRow(ctx, `
		INSERT INTO strategies (id, user_id, name, kind, params) VALUES ($1, $2, $3, $4, $5)
		RETURNING created_at`,
		s.ID, s.UserID, s.Name, s.Kind, s.Params,
	).Scan(&s.CreatedAt)
	if err != nil {
		return Strategy{}, fmt.Errorf("create strategy: %w", userGone(err))
	}
	return s, nil
}

// Strategy returns userID's strategy id, or ErrNotFound (for a deleted
// one too).
func (q *Queries) Strategy(ctx context.Context, userID, id uuid.UUID) (Strategy, error) {
	s, err := scanStrategy(q.db.QueryRow(ctx, `
		SELECT `+strategyColumns+` FROM strategies WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL`, id, userID))
	if err != nil {
		return Strategy{}, fmt.Errorf("load strategy %s: %w", id, notFound(err))
	}
	return s, nil
}

func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// userGone turns the violation of a foreign key on users into ErrUserGone.
func userGone(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" && strings.HasSuffix(pgErr.ConstraintName, "_user_id_fkey") {
		return fmt.Errorf("%w (%s)", ErrUserGone, pgErr.ConstraintName)
	}
	return err
}

func affectedOne(tag pgconn.CommandTag, err error, format string, args ...any) error {
	if err != nil {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf(format+": %w", append(args, ErrNotFound)...)
	}
	return nil
}
