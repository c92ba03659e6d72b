package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

// insertRun inserts a run of strategy with its fields set as given, and
// created_at at the given time: the tests of pages need many runs of known
// order.
func insertRun(t *testing.T, db store.DBTX, user store.User, strategy uuid.UUID, status, symbol, cid string, at time.Time) uuid.UUID {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	_, err := db.Exec(t.Context(), `
		INSERT INTO backtest_runs (id, user_id, strategy_id, correlation_id, river_job_id, symbol,
		                           start_date, end_date, initial_cash, status, created_at)
		VALUES ($1, $2, $3, $4, 1, $5, '2020-01-01', '2021-01-01', 1000, $6, $7)`,
		id, user.ID, strategy, cid, symbol, status, at)
	require.NoError(t, err)
	return id
}

func ids(runs []store.Run) []uuid.UUID {
	out := make([]uuid.UUID, len(runs)) // never nil: compared with want
	for i, r := range runs {
		out[i] = r.ID
	}
	return out
}

func TestListRunsFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	other, err := b.q.CreateStrategy(ctx, store.NewStrategy{UserID: b.alice.ID, Name: "o", Kind: "buy_and_hold", Params: json.RawMessage(`{}`)})
	require.NoError(t, err)
	bobs, err := b.q.CreateStrategy(ctx, store.NewStrategy{UserID: b.bob.ID, Name: "b", Kind: "buy_and_hold", Params: json.RawMessage(`{}`)})
	require.NoError(t, err)

	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type row struct {
		id          uuid.UUID
		strategy    uuid.UUID
		status, sym string
		cid         string
		at          time.Time
	}
	// Two runs share a created_at: the ID breaks the tie.
	rows := []row{
		{strategy: b.strategy.ID, status: store.StatusQueued, sym: "ACME", cid: "c1", at: base},
		{strategy: other.ID, status: store.StatusFailed, sym: "ACME", cid: "c2", at: base.Add(-time.Minute)},
		{strategy: b.strategy.ID, status: store.StatusSucceeded, sym: "BETA", cid: "c2", at: base.Add(-2 * time.Minute)},
		{strategy: b.strategy.ID, status: store.StatusSucceeded, sym: "BETA", cid: "c3", at: base.Add(-2 * time.Minute)},
		{strategy: other.ID, status: store.StatusRetrying, sym: "ACME", cid: "c3", at: base.Add(-3 * time.Minute)},
		{strategy: b.strategy.ID, status: store.StatusCancelled, sym: "GAMMA", cid: "c4", at: base.Add(-4 * time.Minute)},
	}
	for i, r := range rows {
		rows[i].id = insertRun(t, b.db.Pool, b.alice, r.strategy, r.status, r.sym, r.cid, r.at)
	}
	insertRun(t, b.db.Pool, b.bob, bobs.ID, store.StatusQueued, "ACME", "c1", base)
	// The order the API promises: created_at, then id, both descending.
	slices.SortFunc(rows, func(x, y row) int {
		if c := y.at.Compare(x.at); c != 0 {
			return c
		}
		return strings.Compare(y.id.String(), x.id.String())
	})

	tests := []struct {
		name   string
		filter store.RunFilter
		keep   func(row) bool
	}{
		{"none", store.RunFilter{}, func(row) bool { return true }},
		{"status", store.RunFilter{Status: store.StatusSucceeded}, func(r row) bool { return r.status == store.StatusSucceeded }},
		{"strategy", store.RunFilter{StrategyID: other.ID}, func(r row) bool { return r.strategy == other.ID }},
		{"another user's strategy", store.RunFilter{StrategyID: bobs.ID}, func(row) bool { return false }},
		{"symbol", store.RunFilter{Symbol: "ACME"}, func(r row) bool { return r.sym == "ACME" }},
		{"correlation id", store.RunFilter{CorrelationID: "c3"}, func(r row) bool { return r.cid == "c3" }},
		{
			"created after, exclusive",
			store.RunFilter{CreatedAfter: base.Add(-2 * time.Minute)},
			func(r row) bool { return r.at.After(base.Add(-2 * time.Minute)) },
		},
		{
			"created before, exclusive",
			store.RunFilter{CreatedBefore: base.Add(-2 * time.Minute)},
			func(r row) bool { return r.at.Before(base.Add(-2 * time.Minute)) },
		},
		{
			"all at once",
			store.RunFilter{
				Status: store.StatusRetrying, StrategyID: other.ID, Symbol: "ACME", CorrelationID: "c3",
				CreatedAfter: base.Add(-time.Hour), CreatedBefore: base,
			},
			func(r row) bool { return r.status == store.StatusRetrying },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := []uuid.UUID{}
			for _, r := range rows {
				if tt.keep(r) {
					want = append(want, r.id)
				}
			}
			runs, more, err := b.q.ListRuns(t.Context(), b.alice.ID, tt.filter, store.Page{Limit: 50})
			require.NoError(t, err)
			require.False(t, more)
			require.Equal(t, want, ids(runs))

			// Pages of one: the same runs in the same order, and "more"
			// exactly until the last.
			paged := []uuid.UUID{}
			page := store.Page{Limit: 1}
			for {
				runs, more, err := b.q.ListRuns(t.Context(), b.alice.ID, tt.filter, page)
				require.NoError(t, err)
				require.LessOrEqual(t, len(runs), 1)
				paged = append(paged, ids(runs)...)
				if !more {
					break
				}
				page.After = &store.Position{CreatedAt: runs[0].CreatedAt, ID: runs[0].ID}
			}
			require.Equal(t, want, paged)
		})
	}
}

// Pages stay true while runs are inserted between them: no run is seen
// twice, and every run that existed when paging began is seen. The inserts
// run in another goroutine, each committed before the next page is read.
func TestListRunsPagesAreStableUnderInserts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	existing := map[uuid.UUID]bool{}
	for range 40 {
		r, err := b.newRun(t, store.NewRun{CorrelationID: "before"})
		require.NoError(t, err)
		existing[r.ID] = true
	}

	inserted := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(inserted)
		for {
			// Each round commits a run newer than every page read so far:
			// an offset would shift by one and show a run twice.
			_, err := b.newRun(t, store.NewRun{CorrelationID: "during"})
			if err != nil {
				t.Error(err)
				return
			}
			select {
			case inserted <- struct{}{}:
			case <-stop:
				return
			}
		}
	})

	seen := map[uuid.UUID]int{}
	page := store.Page{Limit: 7}
	pages := 0
	for {
		<-inserted // a run committed since the last page
		runs, more, err := b.q.ListRuns(ctx, b.alice.ID, store.RunFilter{}, page)
		require.NoError(t, err)
		pages++
		for _, r := range runs {
			seen[r.ID]++
		}
		if !more {
			break
		}
		last := runs[len(runs)-1]
		page.After = &store.Position{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	close(stop)
	wg.Wait()

	require.GreaterOrEqual(t, pages, 40/7, "the walk took several pages, with inserts between them")
	for id, n := range seen {
		require.Equal(t, 1, n, "run %s seen %d times", id, n)
	}
	for id := range existing {
		require.Contains(t, seen, id, "run %s, there all along, was skipped", id)
	}
}

// explain returns the plan of the query run with args, as text.
func explain(ctx context.Context, t *testing.T, db store.DBTX, sql string, args ...any) string {
	t.Helper()
	rows, err := db.Query(ctx, "EXPLAIN "+sql, args...)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return strings.Join(plan, "\n")
}

// Each filter of GET /backtests, each page after the first, the list of
// strategies, and the check before a strategy is deleted read an index in
// the list's order: no sequential scan, no sort of all the user's rows.
func TestListsAreServedByIndexes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	// Two users with 10 000 runs each over 4 strategies, 6 statuses and 50
	// symbols, and 2 000 strategies each: enough for the planner to prefer
	// an index without being told to.
	_, err := b.db.Pool.Exec(ctx, `
		INSERT INTO strategies (id, user_id, name, kind, params, created_at)
		SELECT gen_random_uuid(), u.id, 's' || i, 'buy_and_hold', '{}', now() - i * interval '1 minute'
		FROM users u, generate_series(1, 2000) AS i`)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `
		INSERT INTO backtest_runs (id, user_id, strategy_id, correlation_id, river_job_id, symbol,
		                           start_date, end_date, initial_cash, status, created_at)
		SELECT gen_random_uuid(), s.user_id, s.id, 'cid-' || s.name || '-' || i, i, 'SYM' || (i % 50),
		       '2020-01-01', '2021-01-01', 1000,
		       (ARRAY['queued','running','retrying','succeeded','failed','cancelled'])[1 + i % 6],
		       now() - i * interval '1 second'
		FROM (SELECT id, user_id, name FROM strategies WHERE name IN ('s1', 's2', 's3', 's4')) s,
		     generate_series(1, 2500) AS i`)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `ANALYZE backtest_runs; ANALYZE strategies`)
	require.NoError(t, err)
	var strategy uuid.UUID
	require.NoError(t, b.db.Pool.QueryRow(ctx,
		`SELECT id FROM strategies WHERE user_id = $1 AND name = 's2'`, b.alice.ID).Scan(&strategy))
	// A cursor a few pages in.
	after := &store.Position{}
	require.NoError(t, b.db.Pool.QueryRow(ctx, `
		SELECT created_at, id FROM backtest_runs WHERE user_id = $1
		ORDER BY created_at DESC, id DESC OFFSET 200 LIMIT 1`, b.alice.ID).Scan(&after.CreatedAt, &after.ID))

	tests := []struct {
		name   string
		filter store.RunFilter
		page   store.Page
		index  string
	}{
		{"first page", store.RunFilter{}, store.Page{Limit: 50}, "backtest_runs_user_id_created_at_idx"},
		{"next page", store.RunFilter{}, store.Page{Limit: 50, After: after}, "backtest_runs_user_id_created_at_idx"},
		{"status", store.RunFilter{Status: store.StatusFailed}, store.Page{Limit: 50}, "backtest_runs_user_id_status_created_at_idx"},
		{"status, next page", store.RunFilter{Status: store.StatusFailed}, store.Page{Limit: 50, After: after}, "backtest_runs_user_id_status_created_at_idx"},
		{"strategy", store.RunFilter{StrategyID: strategy}, store.Page{Limit: 50}, "backtest_runs_strategy_id_created_at_idx"},
		{"symbol", store.RunFilter{Symbol: "SYM7"}, store.Page{Limit: 50}, "backtest_runs_user_id_symbol_created_at_idx"},
		{"correlation id", store.RunFilter{CorrelationID: "cid-s2-7"}, store.Page{Limit: 50}, "backtest_runs_correlation_id_idx"},
		{"created after", store.RunFilter{CreatedAfter: time.Now().Add(-time.Minute)}, store.Page{Limit: 50}, "backtest_runs_user_id_created_at_idx"},
		{"created before", store.RunFilter{CreatedBefore: time.Now().Add(-time.Hour)}, store.Page{Limit: 50}, "backtest_runs_user_id_created_at_idx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sql, args := store.ListRunsQuery(b.alice.ID, tt.filter, tt.page)
			plan := explain(t.Context(), t, b.db.Pool, sql, args...)
			require.Contains(t, plan, "Index Scan using "+tt.index, plan)
			require.NotContains(t, plan, "Seq Scan", plan)
			require.NotContains(t, plan, "Sort", "the index gives the order: "+plan)
			if tt.page.After != nil {
				require.Regexp(t, `Index Cond: .*ROW\(created_at, id\) <`, plan, "the cursor bounds the scan: "+plan)
			}
		})
	}
}

func TestStrategyQueriesAreServedByIndexes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	_, err := b.db.Pool.Exec(ctx, `
		INSERT INTO strategies (id, user_id, name, kind, params, created_at)
		SELECT gen_random_uuid(), u.id, 's' || i, 'buy_and_hold', '{}', now() - i * interval '1 minute'
		FROM users u, generate_series(1, 5000) AS i`)
	require.NoError(t, err)
	// A strategy with many finished runs and a few unfinished ones.
	_, err = b.db.Pool.Exec(ctx, `
		INSERT INTO backtest_runs (id, user_id, strategy_id, correlation_id, river_job_id, symbol,
		                           start_date, end_date, initial_cash, status)
		SELECT gen_random_uuid(), $1, $2, 'cid-' || i, i, 'ACME', '2020-01-01', '2021-01-01', 1000,
		       CASE WHEN i % 1000 = 0 THEN 'queued' ELSE 'succeeded' END
		FROM generate_series(1, 10000) AS i`, b.alice.ID, b.strategy.ID)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `ANALYZE backtest_runs; ANALYZE strategies`)
	require.NoError(t, err)
	after := &store.Position{}
	require.NoError(t, b.db.Pool.QueryRow(ctx, `
		SELECT created_at, id FROM strategies WHERE user_id = $1
		ORDER BY created_at DESC, id DESC OFFSET 200 LIMIT 1`, b.alice.ID).Scan(&after.CreatedAt, &after.ID))

	for _, p := range []store.Page{{Limit: 50}, {Limit: 50, After: after}} {
		sql, args := store.ListStrategiesQuery(b.alice.ID, p)
		plan := explain(ctx, t, b.db.Pool, sql, args...)
		require.Contains(t, plan, "Index Scan using strategies_user_id_created_at_idx", plan)
		require.NotContains(t, plan, "Seq Scan", plan)
		require.NotContains(t, plan, "Sort", plan)
	}
	plan := explain(ctx, t, b.db.Pool, store.LockStrategySQL, b.strategy.ID, b.alice.ID)
	require.Contains(t, plan, "backtest_runs_unfinished_strategy_id_idx", plan)
	require.NotContains(t, plan, "Seq Scan", plan)
}
