-- Sweeps: one request for a grid of a strategy's parameters over several
-- symbols, which makes a run of each combination.

-- +goose Up
CREATE TABLE sweeps (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    correlation_id text NOT NULL,
    kind           text NOT NULL,
    params_grid    jsonb NOT NULL,
    symbols        text[] NOT NULL,
    start_date     date NOT NULL,
    end_date       date NOT NULL,
    initial_cash   double precision NOT NULL,
    run_count      integer NOT NULL CHECK (run_count > 0),
    skipped_count  integer NOT NULL DEFAULT 0 CHECK (skipped_count >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- finished_at: when the last of its runs reached a final status.
    finished_at    timestamptz,
    cancel_requested_at timestamptz
);
CREATE INDEX sweeps_user_id_created_at_idx ON sweeps (user_id, created_at DESC, id DESC);
-- The reconciliation looks for sweeps not yet marked finished every
-- interval: only those are in this index, however many sweeps have ended.
CREATE INDEX sweeps_unfinished_idx ON sweeps (id) WHERE finished_at IS NULL;

ALTER TABLE backtest_runs ADD COLUMN sweep_id uuid REFERENCES sweeps (id) ON DELETE CASCADE;
-- A sweep's runs by status (its counts, whether it is finished) and in the
-- API's order (GET /backtests?sweep_id=).
CREATE INDEX backtest_runs_sweep_id_status_idx ON backtest_runs (sweep_id, status) WHERE sweep_id IS NOT NULL;
CREATE INDEX backtest_runs_sweep_id_created_at_idx ON backtest_runs (sweep_id, created_at DESC, id DESC)
    WHERE sweep_id IS NOT NULL;

-- +goose Down
DROP INDEX backtest_runs_sweep_id_created_at_idx;
DROP INDEX backtest_runs_sweep_id_status_idx;
ALTER TABLE backtest_runs DROP COLUMN sweep_id;
DROP TABLE sweeps; -- and its indexes
