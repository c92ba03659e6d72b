-- Runs that tell the truth about their jobs: a run waiting for its next
-- attempt reads 'retrying', a cancelled one 'cancelled'; every attempt is
-- kept, with how it ended, after River has deleted the job; a failure has a
-- stable code for API clients beside the Go type the logs keep.

-- +goose Up
ALTER TABLE backtest_runs DROP CONSTRAINT backtest_runs_status_check;
ALTER TABLE backtest_runs ADD CONSTRAINT backtest_runs_status_check
    CHECK (status IN ('queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled'));

-- error_code: a code from the documented list (insufficient_data, panic,
-- timeout...), never a Go type. next_attempt_at: while retrying, when River
-- scheduled the next attempt. cancel_requested_at: a cancel asked of a
-- running run, which ends when its attempt does.
ALTER TABLE backtest_runs
    ADD COLUMN error_code text,
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN cancel_requested_at timestamptz;

-- Runs that failed before codes existed: their Go type meant nothing to a
-- client, 'internal' says as much.
UPDATE backtest_runs SET error_code = 'internal' WHERE status = 'failed';

-- One row per attempt, keyed by River's attempt number: the run's history,
-- which outlives the job.
CREATE TABLE backtest_run_attempts (
    run_id        uuid NOT NULL REFERENCES backtest_runs (id) ON DELETE CASCADE,
    attempt       integer NOT NULL CHECK (attempt > 0),
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    outcome       text CHECK (outcome IN ('succeeded', 'failed', 'interrupted', 'cancelled')),
    error_code    text,
    error_message text,
    PRIMARY KEY (run_id, attempt),
    CHECK ((outcome IS NULL) = (finished_at IS NULL))
);

-- The bound on a user's unfinished runs counts retrying ones too.
DROP INDEX backtest_runs_unfinished_user_id_idx;
CREATE INDEX backtest_runs_unfinished_user_id_idx ON backtest_runs (user_id)
    WHERE status IN ('queued', 'running', 'retrying');

-- +goose Down
DROP INDEX backtest_runs_unfinished_user_id_idx;
CREATE INDEX backtest_runs_unfinished_user_id_idx ON backtest_runs (user_id)
    WHERE status IN ('queued', 'running');
DROP TABLE backtest_run_attempts;
UPDATE backtest_runs SET status = 'queued' WHERE status = 'retrying';
UPDATE backtest_runs SET status = 'failed', error_type = COALESCE(error_type, 'cancelled'),
    error_message = COALESCE(error_message, 'cancelled') WHERE status = 'cancelled';
ALTER TABLE backtest_runs
    DROP COLUMN cancel_requested_at,
    DROP COLUMN next_attempt_at,
    DROP COLUMN error_code;
ALTER TABLE backtest_runs DROP CONSTRAINT backtest_runs_status_check;
ALTER TABLE backtest_runs ADD CONSTRAINT backtest_runs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed'));
