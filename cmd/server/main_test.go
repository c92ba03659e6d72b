package main

import (
	"context"
	"crypto/sha256"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/buildinfo"
	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/migrations"
)

func TestMain(m *testing.M) { os.Exit(dbtest.Main(m)) }

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestServeStartsAnswersAndStops(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	env := getenv(map[string]string{"DATABASE_URL": db.URL, "HTTP_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": "2s"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &logtest.Sink{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"server"}, env, out, io.Discard) }()

	var started map[string]any
	require.Eventually(t, func() bool { started = out.Find(t, obs.EventServerStarted); return started != nil },
		10*time.Second, 10*time.Millisecond)
	require.Equal(t, buildinfo.Read().Version, started[obs.KeyVersion], "the line says which build runs")
	addr, _ := started[obs.KeyAddr].(string)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("X-Correlation-ID"))

	healthEnv := getenv(map[string]string{"HTTP_ADDR": addr})
	require.NoError(t, run(ctx, []string{"server", "healthcheck"}, healthEnv, io.Discard, io.Discard))

	cancel()
	require.NoError(t, <-done)
	require.Error(t, run(t.Context(), []string{"server", "healthcheck"}, healthEnv, io.Discard, io.Discard),
		"no server, no health")
	lines := out.Lines(t)
	require.Equal(t, obs.EventServerStopped, lines[len(lines)-1][obs.KeyEvent])
}

func TestCommands(t *testing.T) {
	t.Parallel()
	_, dbURL := dbtest.NewEmpty(t)
	env := getenv(map[string]string{"DATABASE_URL": dbURL})
	ctx := t.Context()

	err := run(ctx, []string{"server"}, env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "does not exist", "serve refuses a missing database")

	out := &logtest.Sink{}
	require.NoError(t, run(ctx, []string{"server", "migrate", "up"}, env, out, io.Discard))
	require.NotNil(t, out.Find(t, obs.EventMigrationsApplied))

	var key strings.Builder
	logs := &logtest.Sink{}
	require.NoError(t, run(ctx, []string{"server", "create-api-key", "-user", "ops"}, env, &key, logs))
	require.Regexp(t, `^bt_[A-Za-z0-9_-]{43}\n$`, key.String(), "stdout holds the key alone")
	created := logs.Find(t, obs.EventAPIKeyCreated)
	require.NotNil(t, created)
	require.Equal(t, key.String()[:11], created[obs.KeyAPIKeyPrefix], "the key's public prefix names it")
	require.NotEmpty(t, created[obs.KeyAPIKeyID])
	require.NotContains(t, logs.String(), strings.TrimSpace(key.String()), "the key is not logged")

	status := &logtest.Sink{}
	require.NoError(t, run(ctx, []string{"server", "migrate", "status"}, env, status, io.Discard))
	// One line a migration: as many as are embedded, so a River upgrade's
	// new files change nothing here.
	files, err := fs.Glob(migrations.FS, "*.sql")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	require.Len(t, status.Lines(t), len(files))

	require.ErrorContains(t, run(ctx, []string{"server", "create-api-key"}, env, io.Discard, io.Discard), "-user")
	require.ErrorContains(t, run(ctx, []string{"server", "migrate", "sideways"}, env, io.Discard, io.Discard), "unknown action")
	require.ErrorContains(t, run(ctx, []string{"server", "frobnicate"}, env, io.Discard, io.Discard), "unknown command")

	// Every command but migrate refuses a schema that is behind.
	require.NoError(t, run(ctx, []string{"server", "migrate", "down-to", "9"}, env, io.Discard, io.Discard))
	for _, args := range [][]string{{"server"}, {"server", "create-api-key", "-user", "ops"}, {"server", "revoke-api-key", "-prefix", "bt_XXXXXXXX"}} {
		require.ErrorIs(t, run(ctx, args, env, io.Discard, io.Discard), migrations.ErrPending, "%v", args)
	}
	require.NoError(t, run(ctx, []string{"server", "migrate", "up"}, env, io.Discard, io.Discard))
}

func TestUnreachableDatabaseIsOneClearLine(t *testing.T) {
	t.Parallel()
	env := getenv(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/backtest?sslmode=disable"})
	err := run(t.Context(), []string{"server"}, env, io.Discard, io.Discard)
	require.EqualError(t, err, "cannot reach PostgreSQL at 127.0.0.1:1/backtest: connect: connection refused (set DATABASE_URL)")
}

// newKey runs create-api-key and returns the key and its api_key_created line.
func newKey(t *testing.T, env func(string) string, user string) (string, map[string]any) {
	t.Helper()
	var key strings.Builder
	logs := &logtest.Sink{}
	require.NoError(t, run(t.Context(), []string{"server", "create-api-key", "-user", user}, env, &key, logs))
	return strings.TrimSpace(key.String()), logs.Find(t, obs.EventAPIKeyCreated)
}

func TestRevokeAPIKey(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	env := getenv(map[string]string{"DATABASE_URL": db.URL})
	byPrefix, _ := newKey(t, env, "ops")
	_, created := newKey(t, env, "ops")
	byID, _ := created[obs.KeyAPIKeyID].(string)
	kept, _ := newKey(t, env, "ops")

	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"by prefix", []string{"-prefix", byPrefix[:11]}, ""},
		{"the same prefix again", []string{"-prefix", byPrefix[:11]}, "no API key starts with " + byPrefix[:11]},
		{"by id", []string{"-id", byID}, ""},
		{"the same id again", []string{"-id", byID}, "no API key has the id " + byID},
		{"neither", nil, "needs -prefix bt_XXXXXXXX or -id ID"},
		{"both", []string{"-prefix", kept[:11], "-id", byID}, "one of them"},
		{"the whole key", []string{"-prefix", kept}, "never the whole key"},
		{"not a key's prefix", []string{"-prefix", "xx_12345678"}, "first 11 characters"},
		{"an id that is no uuid", []string{"-id", "7"}, "is not a key id"},
		{"a stray argument", []string{"-id", byID, "extra"}, "one of them"},
	}
	for _, tt := range tests { // in order: the second revocations find nothing
		out := &logtest.Sink{}
		err := run(t.Context(), append([]string{"server", "revoke-api-key"}, tt.args...), env, out, io.Discard)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, tt.name)
			continue
		}
		require.NoError(t, err, tt.name)
		revoked := out.Find(t, obs.EventAPIKeyRevoked)
		require.NotNil(t, revoked, tt.name)
		require.NotEmpty(t, revoked[obs.KeyUserID])
		require.NotEmpty(t, revoked[obs.KeyAPIKeyID])
	}
	var left int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM api_keys`).Scan(&left))
	require.Equal(t, 1, left, "only the kept key is left")
	hash := sha256.Sum256([]byte(kept))
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM api_keys WHERE key_hash = $1`, hash[:]).Scan(&left))
	require.Equal(t, 1, left)

	// Two keys sharing a prefix (48 bits do collide, rarely): the command
	// names them and asks for an id.
	_, err := db.Pool.Exec(t.Context(), `UPDATE api_keys SET key_prefix = 'bt_SAMEPREF'`)
	require.NoError(t, err)
	_, created = newKey(t, env, "ops")
	_, err = db.Pool.Exec(t.Context(), `UPDATE api_keys SET key_prefix = 'bt_SAMEPREF'`)
	require.NoError(t, err)
	err = run(t.Context(), []string{"server", "revoke-api-key", "-prefix", "bt_SAMEPREF"}, env, io.Discard, io.Discard)
	require.ErrorContains(t, err, "2 keys start with bt_SAMEPREF")
	require.ErrorContains(t, err, created[obs.KeyAPIKeyID].(string))
}

// A key revoked by the command stops working on a running server at once:
// the next request after the server heard of it is refused, while the
// cache would have kept the key for 30 seconds.
func TestRevokeReachesARunningServer(t *testing.T) {
	t.Parallel()
	db := dbtest.NewDatabase(t) // revocations are announced database-wide

	env := getenv(map[string]string{"DATABASE_URL": db.URL, "HTTP_ADDR": "127.0.0.1:0", "SHUTDOWN_TIMEOUT": "2s"})
	key, _ := newKey(t, env, "ops")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &logtest.Sink{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"server"}, env, out, io.Discard) }()
	var started map[string]any
	require.Eventually(t, func() bool {
		started = out.Find(t, obs.EventServerStarted)
		return started != nil && out.Find(t, obs.EventKeyListenerStarted) != nil
	}, 10*time.Second, 10*time.Millisecond)
	addr, _ := started[obs.KeyAddr].(string)
	get := func() int {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/backtests", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get())
	require.Equal(t, http.StatusOK, get(), "from the cache")

	require.NoError(t, run(ctx, []string{"server", "revoke-api-key", "-prefix", key[:11]}, env, io.Discard, io.Discard))
	require.Eventually(t, func() bool { return out.Find(t, obs.EventAPIKeyInvalidated) != nil }, 10*time.Second, 10*time.Millisecond)
	require.InDelta(t, 1, out.Find(t, obs.EventAPIKeyInvalidated)[obs.KeyDropped], 0)
	require.Equal(t, http.StatusUnauthorized, get())

	cancel()
	require.NoError(t, <-done)
	lines := out.Lines(t)
	require.Equal(t, obs.EventServerStopped, lines[len(lines)-1][obs.KeyEvent])
}

// create-api-key counts a user's name in characters, as the users table's
// CHECK does: a name the command takes, the table takes, and a name past the
// limit is refused before anything is written.
func TestCreateAPIKeyNameLimitIsInCharacters(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	env := getenv(map[string]string{"DATABASE_URL": db.URL})
	tests := []struct {
		name    string
		user    string
		wantErr string
	}{
		{name: "at the limit in two-byte characters", user: strings.Repeat("é", store.MaxNameLength)},
		{name: "at the limit in ASCII", user: strings.Repeat("a", store.MaxNameLength)},
		{name: "one past the limit", user: strings.Repeat("é", store.MaxNameLength+1), wantErr: "1 to 100 characters"},
		{name: "empty", user: "", wantErr: "1 to 100 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := run(t.Context(), []string{"server", "create-api-key", "-user", tt.user}, env, io.Discard, io.Discard)
			var users int
			require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM users WHERE name = $1`, tt.user).Scan(&users))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Zero(t, users, "nothing is written")
				return
			}
			require.NoError(t, err)
			require.Equal(t, 1, users)
		})
	}
}

// migrate down-to refuses a target it would misread, before it touches
// anything: the schema stays where it was.
func TestMigrateDownToRefusesUnknownAndUnappliedVersions(t *testing.T) {
	t.Parallel()
	versions := migrations.Versions()
	latest, below := versions[len(versions)-1], versions[len(versions)-2]
	tests := []struct {
		name    string
		version string
		want    string
	}{
		{name: "not a number", version: "nine", want: `"nine" is not a version number`},
		{name: "negative", version: "-1", want: `"-1" is not a version number`},
		{name: "unknown, far above", version: "99", want: "no migration has version 99 (the database is at version " + itoa(below) + ";"},
		{name: "unknown, next", version: itoa(latest + 1), want: "no migration has version " + itoa(latest+1)},
		{name: "known, above the current one", version: itoa(latest), want: "version " + itoa(latest) + " is not applied (the database is at version " + itoa(below) + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := dbtest.New(t)
			env := getenv(map[string]string{"DATABASE_URL": db.URL})
			require.NoError(t, run(ctx, []string{"server", "migrate", "down-to", itoa(below)}, env, io.Discard, io.Discard))

			out := &logtest.Sink{}
			err := run(ctx, []string{"server", "migrate", "down-to", tt.version}, env, out, io.Discard)
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, out.Find(t, obs.EventMigrationsApplied), "nothing is reported done")
			v, err := migrations.Current(ctx, db.Pool)
			require.NoError(t, err)
			require.Equal(t, below, v, "the schema was not touched")
		})
	}
}

// A down-to an applied version rolls back to it and says so; 0 rolls back
// everything.
func TestMigrateDownToAnAppliedVersion(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := dbtest.New(t)
	env := getenv(map[string]string{"DATABASE_URL": db.URL})
	versions := migrations.Versions()
	for _, target := range []int64{versions[len(versions)-2], versions[0], 0} {
		out := &logtest.Sink{}
		require.NoError(t, run(ctx, []string{"server", "migrate", "down-to", itoa(target)}, env, out, io.Discard))
		applied := out.Find(t, obs.EventMigrationsApplied)
		require.NotNil(t, applied)
		require.InDelta(t, target, applied[obs.KeyVersion], 0)
		v, err := migrations.Current(ctx, db.Pool)
		require.NoError(t, err)
		require.Equal(t, target, v)
	}
}

// A command that needs the schema names the version it found and the one it
// needs.
func TestRefusalNamesTheVersions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := dbtest.New(t)
	env := getenv(map[string]string{"DATABASE_URL": db.URL})
	versions := migrations.Versions()
	below := versions[len(versions)-2]
	require.NoError(t, run(ctx, []string{"server", "migrate", "down-to", itoa(below)}, env, io.Discard, io.Discard))
	err := run(ctx, []string{"server"}, env, io.Discard, io.Discard)
	require.ErrorIs(t, err, migrations.ErrPending)
	require.EqualError(t, err, "the database schema is at version "+itoa(below)+", this binary needs version "+
		itoa(migrations.Latest())+": run `server migrate up`")
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// server version prints the build, with no settings and no database.
func TestVersion(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	require.NoError(t, run(t.Context(), []string{"server", "version"}, getenv(nil), &out, io.Discard))
	require.Equal(t, "server "+buildinfo.Read().String()+"\n", out.String())
	require.NotEqual(t, "server \n", out.String())
}
