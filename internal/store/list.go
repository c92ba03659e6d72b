package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Position is a place in a list ordered by (created_at, id), newest first:
// the last item of a page. The next page holds what sorts after it, so rows
// inserted meanwhile (newer, hence before it) neither repeat an item nor
// push one off the page.
type Position struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// Page is which part of a list to read: at most Limit items after After
// (nil: from the start).
type Page struct {
	After *Position
	Limit int
}

// RunFilter narrows a list of runs; a zero field does not filter. Each
// filter is served by an index of migration 00014 (correlation_id by the
// one of 00009).
type RunFilter struct {
	Status        string
	StrategyID    uuid.UUID
	Symbol        string
	CorrelationID string
	// SweepID keeps a sweep's runs (migration 00015's index).
	SweepID uuid.UUID
	// CreatedAfter and CreatedBefore are exclusive bounds on created_at.
	CreatedAfter  time.Time
	CreatedBefore time.Time
}

// ListRuns returns a page of userID's runs that pass f, newest first, and
// whether more follow.
func (q *Queries) ListRuns(ctx context.Context, userID uuid.UUID, f RunFilter, p Page) ([]Run, bool, error) {
	sql, args := listRunsQuery(userID, f, p)
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list runs: %w", err)
	}
	runs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Run, error) { return scanRun(row) })
	if err != nil {
		return nil, false, fmt.Errorf("list runs: %w", err)
	}
	more := len(runs) > p.Limit
	return runs[:min(len(runs), p.Limit)], more, nil
}

// ListStrategies returns a page of userID's strategies, deleted ones left
// out, newest first, and whether more follow.
func (q *Queries) ListStrategies(ctx context.Context, userID uuid.UUID, p Page) ([]Strategy, bool, error) {
	sql, args := listStrategiesQuery(userID, p)
	rows, err := q.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list strategies: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Strategy, error) { return scanStrategy(row) })
	if err != nil {
		return nil, false, fmt.Errorf("list strategies: %w", err)
	}
	more := len(out) > p.Limit
	return out[:min(len(out), p.Limit)], more, nil
}

// listRunsQuery writes the query of ListRuns with only the predicates f
// asks for: a predicate such as ($2 IS NULL OR status = $2) would leave the
// planner of a cached statement unable to pick the filter's index. It reads
// one row more than the page, to learn whether another page follows.
func listRunsQuery(userID uuid.UUID, f RunFilter, p Page) (string, []any) {
	var w where
	w.add("user_id = $%d", userID)
	if f.Status != "" {
		w.add("status = $%d", f.Status)
	}
	if f.StrategyID != uuid.Nil {
		w.add("strategy_id = $%d", f.StrategyID)
	}
	if f.Symbol != "" {
		w.add("symbol = $%d", f.Symbol)
	}
	if f.CorrelationID != "" {
		w.add("correlation_id = $%d", f.CorrelationID)
	}
	if f.SweepID != uuid.Nil {
		w.add("sweep_id = $%d", f.SweepID)
	}
	if !f.CreatedAfter.IsZero() {
		w.add("created_at > $%d", f.CreatedAfter)
	}
	if !f.CreatedBefore.IsZero() {
		w.add("created_at < $%d", f.CreatedBefore)
	}
	w.after(p.After)
	return `SELECT ` + runColumns + ` FROM backtest_runs WHERE ` + w.String() +
		` ORDER BY created_at DESC, id DESC LIMIT ` + w.arg(p.Limit+1), w.args
}

// listStrategiesQuery writes the query of ListStrategies.
func listStrategiesQuery(userID uuid.UUID, p Page) (string, []any) {
	var w where
	w.add("user_id = $%d", userID)
	w.add("deleted_at IS NULL")
	w.after(p.After)
	return `SELECT ` + strategyColumns + ` FROM strategies WHERE ` + w.String() +
		` ORDER BY created_at DESC, id DESC LIMIT ` + w.arg(p.Limit+1), w.args
}

// where builds a WHERE clause of numbered parameters.
type where struct {
	conds []string
	args  []any
}

// add appends a condition; each %d in it is the number of the next value.
func (w *where) add(cond string, values ...any) {
	nums := make([]any, len(values))
	for i, v := range values {
		w.args = append(w.args, v)
		nums[i] = len(w.args)
	}
	if len(nums) > 0 {
		cond = fmt.Sprintf(cond, nums...)
	}
	w.conds = append(w.conds, cond)
}

// after keeps what sorts after pos, newest first. The row comparison is
// an index condition of the (..., created_at DESC, id DESC) indexes: the
// scan starts at the position instead of reading and dropping every newer
// row.
func (w *where) after(pos *Position) {
	if pos != nil {
		w.add("(created_at, id) < ($%d, $%d)", pos.CreatedAt, pos.ID)
	}
}

// arg adds a value and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) String() string { return strings.Join(w.conds, " AND ") }
