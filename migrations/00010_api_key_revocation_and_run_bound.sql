-- API keys that can be named and revoked, revocations announced to every
-- server, and the index behind the bound on a user's unfinished runs.

-- +goose Up
-- The first characters of a key ("bt_" and 8 random ones, 48 of its 256
-- bits): enough for an operator to name a key in `server revoke-api-key`,
-- useless for authenticating. Keys made before this column have none and are
-- revoked by id.
ALTER TABLE api_keys ADD COLUMN key_prefix text;
CREATE INDEX api_keys_key_prefix_idx ON api_keys (key_prefix);

-- Every server caches key owners; a key that stops naming its user (deleted
-- by `server revoke-api-key`, by hand, or with its user) is announced on the
-- channel api_key_revoked with its hash in hex, a TRUNCATE with an empty
-- payload (forget every key). NOTIFY is sent at commit, so a server never
-- drops a key whose deletion was rolled back.
-- +goose StatementBegin
CREATE FUNCTION api_keys_notify_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('api_key_revoked', '');
    ELSE
        PERFORM pg_notify('api_key_revoked', encode(OLD.key_hash, 'hex'));
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER api_keys_revoked AFTER DELETE OR UPDATE OF key_hash, user_id ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_notify_revoked();
CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION api_keys_notify_revoked();

-- POST /backtests counts the user's queued and running runs; this index
-- holds only those, so the count reads no finished run.
CREATE INDEX backtest_runs_unfinished_user_id_idx ON backtest_runs (user_id)
    WHERE status IN ('queued', 'running');

-- +goose Down
DROP INDEX backtest_runs_unfinished_user_id_idx;
DROP TRIGGER api_keys_truncated ON api_keys;
DROP TRIGGER api_keys_revoked ON api_keys;
DROP FUNCTION api_keys_notify_revoked();
DROP INDEX api_keys_key_prefix_idx;
ALTER TABLE api_keys DROP COLUMN key_prefix;
