-- Databases migrated before the River files recorded their versions have
-- River's schema versions 1 to 8 with no rows in river_migration, so River's
-- own tools took every version for unapplied (Validate) and failed to apply
-- version 1 again (Migrate up: relation "river_migration" already exists).
-- Record the versions as River's migrator does; rows already there (every
-- database migrated since) are kept.

-- +goose Up
INSERT INTO river_migration (line, version)
SELECT 'main', version FROM generate_series(1, 8) AS version
ON CONFLICT (line, version) DO NOTHING;

-- +goose Down
-- Nothing to undo: the rows are the River files' (00001 to 00008), whose
-- down migrations delete them.
