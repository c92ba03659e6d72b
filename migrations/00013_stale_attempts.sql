-- Only the live attempt of a job writes.
--
-- River's completer sets a job's state by its id whenever the job is
-- running, without looking at which attempt reports: a worker frozen past
-- JOB_RESCUE_AFTER (its job rescued and handed to another worker) that
-- comes back and fails its stale attempt would flip the live attempt's job
-- to retryable, and a third attempt would start beside the live one. The
-- trigger below refuses such an update: a change of state out of 'running'
-- that reports an attempt older than the job's. A stale attempt always
-- ends with an error (the worker sees its writes to the run refused), and
-- River appends the error with the attempt's number, which is what tells
-- it apart; a stale attempt interrupted by a shutdown gives back an
-- attempt number below the one before the job's.
--
-- A shutdown's interruption is not counted by River: the next attempt has
-- the same number. The attempts of a run are therefore keyed by their
-- start too, and at most one is open at a time.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION backtestd_refuse_stale_attempt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (cardinality(NEW.errors) > coalesce(cardinality(OLD.errors), 0)
            AND (NEW.errors[cardinality(NEW.errors)]->>'attempt')::int < OLD.attempt)
       OR (NEW.state = 'available' AND NEW.attempt < OLD.attempt - 1) THEN
        RETURN NULL; -- the row stays as the live attempt has it
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER backtestd_refuse_stale_attempt
    BEFORE UPDATE ON river_job
    FOR EACH ROW
    WHEN (OLD.state = 'running' AND NEW.state <> 'running')
    EXECUTE FUNCTION backtestd_refuse_stale_attempt();

ALTER TABLE backtest_run_attempts DROP CONSTRAINT backtest_run_attempts_pkey;
ALTER TABLE backtest_run_attempts ADD PRIMARY KEY (run_id, attempt, started_at);
CREATE UNIQUE INDEX backtest_run_attempts_open_idx ON backtest_run_attempts (run_id) WHERE outcome IS NULL;

-- +goose Down
DROP INDEX backtest_run_attempts_open_idx;
-- Of the attempts with one number, the last one started is kept.
DELETE FROM backtest_run_attempts a
USING backtest_run_attempts b
WHERE a.run_id = b.run_id AND a.attempt = b.attempt AND a.started_at < b.started_at;
ALTER TABLE backtest_run_attempts DROP CONSTRAINT backtest_run_attempts_pkey;
ALTER TABLE backtest_run_attempts ADD PRIMARY KEY (run_id, attempt);
DROP TRIGGER backtestd_refuse_stale_attempt ON river_job;
DROP FUNCTION backtestd_refuse_stale_attempt();
