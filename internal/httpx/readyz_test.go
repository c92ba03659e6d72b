package httpx_test

import (
	"log/slog"
	"net/http"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/migrations"
)

// Readiness is the truth: 200 only on the schema the binary embeds, a 503
// problem naming the reason otherwise, so a load balancer stops sending
// requests the API would answer with 500s.
func TestReadyzTellsTheTruth(t *testing.T) {
	t.Parallel()
	latest := migrations.Latest()
	below := migrations.Versions()[len(migrations.Versions())-2]
	tests := []struct {
		name string
		// move moves the schema of the test's database.
		move func(t *testing.T, db *dbtest.DB)
		// unreachable swaps the database readiness asks for one that
		// does not answer.
		unreachable bool
		wantStatus  int
		wantDetail  string
	}{
		{
			name:       "current",
			move:       func(*testing.T, *dbtest.DB) {},
			wantStatus: http.StatusOK,
		},
		{
			name: "behind, moved down by goose",
			move: func(t *testing.T, db *dbtest.DB) {
				t.Helper()
				sqlDB := stdlib.OpenDBFromPool(db.Pool)
				defer sqlDB.Close()
				p, err := migrations.NewProvider(sqlDB, slog.New(slog.DiscardHandler))
				require.NoError(t, err)
				_, err = p.DownTo(t.Context(), below)
				require.NoError(t, err)
			},
			wantStatus: http.StatusServiceUnavailable,
			wantDetail: "The database schema is at version " + strconv.FormatInt(below, 10) +
				"; this server needs version " + strconv.FormatInt(latest, 10) + ".",
		},
		{
			name: "ahead, migrated by a newer release",
			move: func(t *testing.T, db *dbtest.DB) {
				t.Helper()
				_, err := db.Pool.Exec(t.Context(),
					`INSERT INTO goose_db_version (version_id, is_applied) VALUES ($1, true)`, latest+1)
				require.NoError(t, err)
			},
			wantStatus: http.StatusServiceUnavailable,
			wantDetail: "The database schema is at version " + strconv.FormatInt(latest+1, 10) +
				"; this server needs version " + strconv.FormatInt(latest, 10) + ".",
		},
		{
			name:        "unreachable",
			move:        func(*testing.T, *dbtest.DB) {},
			unreachable: true,
			wantStatus:  http.StatusServiceUnavailable,
			wantDetail:  "The database is not reachable.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(d *httpx.Deps) {
				if tt.unreachable {
					pool, err := pgxpool.New(t.Context(), "postgres://postgres@127.0.0.1:1/backtest?sslmode=disable&connect_timeout=2")
					require.NoError(t, err)
					t.Cleanup(pool.Close)
					d.DB = pool
				}
			})
			tt.move(t, b.db)
			r := b.call(t, http.MethodGet, "/readyz", "", "", "")
			if tt.wantStatus == http.StatusOK {
				require.Equal(t, http.StatusOK, r.status, r.raw)
				require.Equal(t, "ready", r.body["status"])
				return
			}
			requireProblem(t, r, tt.wantStatus)
			require.Equal(t, tt.wantDetail, r.body["detail"])
			require.Equal(t, "5", r.header.Get("Retry-After"))
			require.NotNil(t, b.logs.Find(t, obs.EventRequestFailed), "the reason is logged")
		})
	}
}
