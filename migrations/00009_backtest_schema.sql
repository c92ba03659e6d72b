-- The service's own tables: users and their API keys, strategies, backtest runs.

-- +goose Up
CREATE TABLE users (
    id         uuid PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 hash of each key is kept: keys are 256 random bits, so a
-- fast hash is enough, and a leaked table does not leak usable keys.
CREATE TABLE api_keys (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash   bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE strategies (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL,
    kind       text NOT NULL,
    params     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX strategies_user_id_idx ON strategies (user_id);

-- A run outlives its River job (River deletes finished jobs after a while):
-- it is the lasting record, found by id or by the request's correlation_id.
CREATE TABLE backtest_runs (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    strategy_id    uuid NOT NULL REFERENCES strategies (id) ON DELETE CASCADE,
    correlation_id text NOT NULL,
    river_job_id   bigint NOT NULL,
    symbol         text NOT NULL,
    start_date     date NOT NULL,
    end_date       date NOT NULL,
    initial_cash   double precision NOT NULL,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    progress_pct   smallint NOT NULL DEFAULT 0 CHECK (progress_pct BETWEEN 0 AND 100),
    attempt        integer NOT NULL DEFAULT 0,
    result         jsonb,
    error_message  text,
    error_type     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backtest_runs_correlation_id_idx ON backtest_runs (correlation_id, user_id);
CREATE INDEX backtest_runs_user_id_created_at_idx ON backtest_runs (user_id, created_at DESC);
CREATE INDEX backtest_runs_river_job_id_idx ON backtest_runs (river_job_id);

-- +goose Down
DROP TABLE backtest_runs;
DROP TABLE strategies;
DROP TABLE api_keys;
DROP TABLE users;
