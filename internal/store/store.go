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
	"unicode/utf8"

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
// *pgx.Conn or a pgx.Tx. The queries need the first three methods; Begin is
// for callers that group writes in a transaction (on a pgx.Tx it opens a
// savepoint, so the same code runs inside a test's transaction).
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
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

// Run statuses, as stored in backtest_runs.status.
const (
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

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

// Run is one backtest of a strategy over a symbol and a date range.
type Run struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	JobID         int64
	Symbol        string
	Start         time.Time
	End           time.Time
	InitialCash   float64
	Status        string
	ProgressPct   int
	Attempt       int
	Result        json.RawMessage // nil until the run succeeds
	ErrorMessage  string
	ErrorType     string
	CreatedAt     time.Time
	StartedAt     *time.Time
	FinishedAt    *time.Time
	UpdatedAt     time.Time
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

// CountUnfinishedRuns counts userID's queued and running runs, counting no
// further than upTo: a caller comparing with a bound need not read past it.
func (q *Queries) CountUnfinishedRuns(ctx context.Context, userID uuid.UUID, upTo int) (int, error) {
	var n int
	err := q.db.QueryRow(ctx, `
		SELECT count(*) FROM (
		    SELECT 1 FROM backtest_runs
		    WHERE user_id = $1 AND status IN ('queued', 'running')
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

// Strategy returns userID's strategy id, or ErrNotFound.
func (q *Queries) Strategy(ctx context.Context, userID, id uuid.UUID) (Strategy, error) {
	var s Strategy
	err := q.db.QueryRow(ctx, `
		SELECT id, user_id, name, kind, params, created_at
		FROM strategies WHERE id = $1 AND user_id = $2`, id, userID,
	).Scan(&s.ID, &s.UserID, &s.Name, &s.Kind, &s.Params, &s.CreatedAt)
	if err != nil {
		return Strategy{}, fmt.Errorf("load strategy %s: %w", id, notFound(err))
	}
	return s, nil
}

// NewRun is what InsertRun needs. The ID is chosen by the caller so that the
// River job, inserted first in the same transaction, can carry it.
type NewRun struct {
	ID            uuid.UUID
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	JobID         int64
	Symbol        string
	Start         time.Time
	End           time.Time
	InitialCash   float64
}

// InsertRun inserts a queued run. It returns ErrNotFound, inserting nothing,
// when the strategy does not exist or belongs to another user.
func (q *Queries) InsertRun(ctx context.Context, nr NewRun) (Run, error) {
	row := q.db.QueryRow(ctx, `
		INSERT INTO backtest_runs
		    (id, user_id, strategy_id, correlation_id, river_job_id, symbol, start_date, end_date, initial_cash)
		SELECT $1, s.user_id, s.id, $4, $5, $6, $7, $8, $9
		FROM strategies s WHERE s.id = $3 AND s.user_id = $2
		RETURNING `+runColumns,
		nr.ID, nr.UserID, nr.StrategyID, nr.CorrelationID, nr.JobID, nr.Symbol, nr.Start, nr.End, nr.InitialCash)
	r, err := scanRun(row)
	if err != nil {
		return Run{}, fmt.Errorf("insert run of strategy %s: %w", nr.StrategyID, notFound(err))
	}
	return r, nil
}

// Run returns userID's run id, or ErrNotFound.
func (q *Queries) Run(ctx context.Context, userID, id uuid.UUID) (Run, error) {
	r, err := scanRun(q.db.QueryRow(ctx,
		`SELECT `+runColumns+` FROM backtest_runs WHERE id = $1 AND user_id = $2`, id, userID))
	if err != nil {
		return Run{}, fmt.Errorf("load run %s: %w", id, notFound(err))
	}
	return r, nil
}

// RunsByCorrelationID returns userID's runs started by requests with this
// correlation ID, newest first.
func (q *Queries) RunsByCorrelationID(ctx context.Context, userID uuid.UUID, correlationID string) ([]Run, error) {
	return q.listRuns(ctx, `
		SELECT `+runColumns+` FROM backtest_runs
		WHERE correlation_id = $1 AND user_id = $2
		ORDER BY created_at DESC, id DESC LIMIT 1000`, correlationID, userID)
}

// RecentRuns returns userID's newest runs, at most limit of them.
func (q *Queries) RecentRuns(ctx context.Context, userID uuid.UUID, limit int) ([]Run, error) {
	return q.listRuns(ctx, `
		SELECT `+runColumns+` FROM backtest_runs
		WHERE user_id = $1
		ORDER BY created_at DESC, id DESC LIMIT $2`, userID, limit)
}

func (q *Queries) listRuns(ctx context.Context, sql string, args ...any) ([]Run, error) {
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return runs, nil
}

// RunForWork returns run id for the worker, whoever owns it.
func (q *Queries) RunForWork(ctx context.Context, id uuid.UUID) (Run, error) {
	r, err := scanRun(q.db.QueryRow(ctx, `SELECT `+runColumns+` FROM backtest_runs WHERE id = $1`, id))
	if err != nil {
		return Run{}, fmt.Errorf("load run %s: %w", id, notFound(err))
	}
	return r, nil
}

// StartRun marks a run running for this attempt, clearing the progress and
// error of an earlier one. It returns ErrNotFound when the run is missing or
// already finished, so that a stray job cannot reopen it.
func (q *Queries) StartRun(ctx context.Context, id uuid.UUID, attempt int) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs
		SET status = 'running', attempt = $2, progress_pct = 0, error_message = NULL, error_type = NULL,
		    started_at = COALESCE(started_at, now()), updated_at = now()
		WHERE id = $1 AND status IN ('queued', 'running')`, id, attempt)
	return affectedOne(tag, err, "start run %s", id)
}

// SetProgress records a checkpoint of a running run.
func (q *Queries) SetProgress(ctx context.Context, id uuid.UUID, pct int) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs SET progress_pct = $2, updated_at = now()
		WHERE id = $1 AND status = 'running'`, id, pct)
	return affectedOne(tag, err, "set progress of run %s", id)
}

// CompleteRun stores a running run's result and marks it succeeded.
func (q *Queries) CompleteRun(ctx context.Context, id uuid.UUID, result json.RawMessage) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs
		SET status = 'succeeded', progress_pct = 100, result = $2, finished_at = now(), updated_at = now()
		WHERE id = $1 AND status = 'running'`, id, result)
	return affectedOne(tag, err, "complete run %s", id)
}

// RequeueRun puts a running run back to queued: its job was interrupted by
// a shutdown and River will run it again.
func (q *Queries) RequeueRun(ctx context.Context, id uuid.UUID) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs SET status = 'queued', progress_pct = 0, updated_at = now()
		WHERE id = $1 AND status = 'running'`, id)
	return affectedOne(tag, err, "requeue run %s", id)
}

// FailRun marks a queued or running run failed with its error. A finished
// run keeps its outcome: a success was committed with its result, and a
// failure keeps the error that ended it. It returns ErrNotFound then.
func (q *Queries) FailRun(ctx context.Context, id uuid.UUID, attempt int, message, errorType string) error {
	message = capText(message, MaxErrorBytes)
	tag, err := q.db.Exec(ctx, `
		UPDATE backtest_runs
		SET status = 'failed', attempt = GREATEST(attempt, $2), error_message = $3, error_type = $4,
		    finished_at = now(), updated_at = now()
		WHERE id = $1 AND status IN ('queued', 'running')`, id, attempt, message, errorType)
	return affectedOne(tag, err, "fail run %s", id)
}

// Reconciled is a run that Reconcile marked failed.
type Reconciled struct {
	RunID         uuid.UUID
	UserID        uuid.UUID
	StrategyID    uuid.UUID
	CorrelationID string
	JobID         int64
	Attempt       int
	Error         string
	ErrorType     string
}

// Reconcile marks failed the runs still queued or running whose River job
// will never finish them: discarded (attempts used up, say by a worker that
// kept crashing: River's rescuer works around the job's middleware, so
// nothing else marks the run), cancelled, or gone. The error is the job's
// last one.
func (q *Queries) Reconcile(ctx context.Context) ([]Reconciled, error) {
	rows, err := q.db.Query(ctx, `
		WITH ended AS (
		    SELECT r.id, COALESCE(j.attempt, r.attempt) AS attempt,
		           'job_' || COALESCE(j.state::text, 'lost') AS error_type,
		           COALESCE(j.errors[array_length(j.errors, 1)]->>'error',
		                    CASE WHEN j.id IS NULL THEN 'the job was lost' ELSE 'the job was ' || j.state END) AS message
		    FROM backtest_runs r
		    LEFT JOIN river_job j ON j.id = r.river_job_id
		    WHERE r.status IN ('queued', 'running')
		      AND (j.id IS NULL OR j.state IN ('discarded', 'cancelled'))
		    FOR UPDATE OF r SKIP LOCKED
		)
		UPDATE backtest_runs r
		SET status = 'failed', attempt = ended.attempt, error_message = ended.message, error_type = ended.error_type,
		    finished_at = now(), updated_at = now()
		FROM ended WHERE r.id = ended.id
		RETURNING r.id, r.user_id, r.strategy_id, r.correlation_id, r.river_job_id, r.attempt, r.error_message, r.error_type`)
	if err != nil {
		return nil, fmt.Errorf("reconcile runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Reconciled, error) {
		var rec Reconciled
		err := row.Scan(&rec.RunID, &rec.UserID, &rec.StrategyID, &rec.CorrelationID, &rec.JobID, &rec.Attempt,
			&rec.Error, &rec.ErrorType)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile runs: %w", err)
	}
	return out, nil
}

// MaxErrorBytes bounds the error text kept on a run: the full text, if it
// is longer, is in the log line of the failure.
const MaxErrorBytes = 4096

// capText cuts s to at most n bytes on a character boundary, marking the cut.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const marker = "...[truncated]"
	cut := n - len(marker)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + marker
}

const runColumns = `id, user_id, strategy_id, correlation_id, river_job_id, symbol, start_date, end_date,
	initial_cash, status, progress_pct, attempt, result, COALESCE(error_message, ''), COALESCE(error_type, ''),
	created_at, started_at, finished_at, updated_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.UserID, &r.StrategyID, &r.CorrelationID, &r.JobID, &r.Symbol, &r.Start, &r.End,
		&r.InitialCash, &r.Status, &r.ProgressPct, &r.Attempt, &r.Result, &r.ErrorMessage, &r.ErrorType,
		&r.CreatedAt, &r.StartedAt, &r.FinishedAt, &r.UpdatedAt)
	return r, err
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
