-- Idempotency keys of creating POSTs, strategies deleted without losing
-- the runs that used them, and the indexes behind the pages and filters of
-- GET /backtests and GET /strategies.

-- +goose Up
-- One row per (user, Idempotency-Key): the first request's fingerprint and
-- its response, written in the transaction that created what the response
-- describes, so that both or neither exist. A second request with the key
-- waits on the first's uncommitted row, then replays the response (or, if
-- the first rolled back, takes the key over). request_hash is SHA-256 of
-- the method, path and canonical body; a key reused with another body is
-- refused. expires_at is set by the server from IDEMPOTENCY_KEY_TTL; the
-- worker's periodic sweep deletes what has expired.
CREATE TABLE idempotency_keys (
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL,
    correlation_id  text NOT NULL,
    response_status integer,
    response_body   bytea,
    location        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- A deleted strategy is hidden from the API but kept, with its runs: a run
-- is the lasting record of a backtest, and deleting the strategy must not
-- delete its history (the foreign key cascades, so a hard delete would).
ALTER TABLE strategies ADD COLUMN deleted_at timestamptz;

-- Keyset pages on (created_at, id), newest first: each filter of GET
-- /backtests reads its page from an index in order, never a sort of all the
-- user's runs. The correlation index keeps its name and leading columns, so
-- the operator's lookup by correlation_id alone still uses it.
DROP INDEX backtest_runs_correlation_id_idx;
CREATE INDEX backtest_runs_correlation_id_idx ON backtest_runs (correlation_id, user_id, created_at DESC, id DESC);
DROP INDEX backtest_runs_user_id_created_at_idx;
CREATE INDEX backtest_runs_user_id_created_at_idx ON backtest_runs (user_id, created_at DESC, id DESC);
CREATE INDEX backtest_runs_user_id_status_created_at_idx ON backtest_runs (user_id, status, created_at DESC, id DESC);
CREATE INDEX backtest_runs_user_id_symbol_created_at_idx ON backtest_runs (user_id, symbol, created_at DESC, id DESC);
CREATE INDEX backtest_runs_strategy_id_created_at_idx ON backtest_runs (strategy_id, created_at DESC, id DESC);
-- DELETE /strategies/{id} asks whether the strategy has unfinished runs:
-- this index holds only those.
CREATE INDEX backtest_runs_unfinished_strategy_id_idx ON backtest_runs (strategy_id)
    WHERE status IN ('queued', 'running', 'retrying');

DROP INDEX strategies_user_id_idx;
CREATE INDEX strategies_user_id_created_at_idx ON strategies (user_id, created_at DESC, id DESC);

-- +goose Down
DROP INDEX strategies_user_id_created_at_idx;
CREATE INDEX strategies_user_id_idx ON strategies (user_id);
DROP INDEX backtest_runs_unfinished_strategy_id_idx;
DROP INDEX backtest_runs_strategy_id_created_at_idx;
DROP INDEX backtest_runs_user_id_symbol_created_at_idx;
DROP INDEX backtest_runs_user_id_status_created_at_idx;
DROP INDEX backtest_runs_user_id_created_at_idx;
CREATE INDEX backtest_runs_user_id_created_at_idx ON backtest_runs (user_id, created_at DESC);
DROP INDEX backtest_runs_correlation_id_idx;
CREATE INDEX backtest_runs_correlation_id_idx ON backtest_runs (correlation_id, user_id);
-- Strategies deleted since the Up come back rather than take their runs
-- with them: a rollback loses no history.
ALTER TABLE strategies DROP COLUMN deleted_at;
DROP TABLE idempotency_keys;
