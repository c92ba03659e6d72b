package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Sweep is a grid of a strategy's parameters run over several symbols: a
// run of each combination the strategy accepts.
type Sweep struct {
	ID                uuid.UUID
	UserID            uuid.UUID
	CorrelationID     string
	Kind              string
	ParamsGrid        json.RawMessage
	Symbols           []string
	Start, End        time.Time
	InitialCash       float64
	RunCount          int
	SkippedCount      int
	CreatedAt         time.Time
	FinishedAt        *time.Time
	CancelRequestedAt *time.Time
}

const sweepColumns = `id, user_id, correlation_id, kind, params_grid, symbols, start_date, end_date, initial_cash,
	run_count, skipped_count, created_at, finished_at, cancel_requested_at`

func scanSweep(row pgx.Row) (Sweep, error) {
	var s Sweep
	err := row.Scan(&s.ID, &s.UserID, &s.CorrelationID, &s.Kind, &s.ParamsGrid, &s.Symbols, &s.Start, &s.End,
		&s.InitialCash, &s.RunCount, &s.SkippedCount, &s.CreatedAt, &s.FinishedAt, &s.CancelRequestedAt)
	return s, err
}

// InsertSweep inserts s (its ID chosen by the caller) and returns it as
// stored. It returns ErrUserGone when the user no longer exists.
func (q *Queries) InsertSweep(ctx context.Context, s Sweep) (Sweep, error) {
	out, err := scanSweep(q.db.QueryRow(ctx, `
		INSERT INTO sweeps (id, user_id, correlation_id, kind, params_grid, symbols, start_date, end_date,
		                    initial_cash, run_count, skipped_count)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		RETURNING `+sweepColumns,
		s.ID, s.UserID, s.CorrelationID, s.Kind, s.ParamsGrid, s.Symbols, s.Start, s.End, s.InitialCash,
		s.RunCount, s.SkippedCount))
	if err != nil {
		return Sweep{}, fmt.Errorf("insert sweep: %w", userGone(err))
	}
	return out, nil
}

// SweepStrategy is one combination of a sweep's grid, saved as a strategy.
type SweepStrategy struct {
	ID     uuid.UUID
	Name   string
	Params json.RawMessage
}

// CopyStrategies saves the strategies of a sweep's combinations with COPY,
// all of userID and of kind.
func (q *Queries) CopyStrategies(ctx context.Context, userID uuid.UUID, kind string, ss []SweepStrategy) error {
	n, err := q.db.CopyFrom(ctx, pgx.Identifier{"strategies"}, []string{"id", "user_id", "name", "kind", "params"},
		pgx.CopyFromSlice(len(ss), func(i int) ([]any, error) {
			return []any{ss[i].ID, userID, ss[i].Name, kind, string(ss[i].Params)}, nil
		}))
	if err != nil {
		return fmt.Errorf("copy %d strategies: %w", len(ss), userGone(err))
	}
	if int(n) != len(ss) {
		return fmt.Errorf("copy strategies: %d of %d written", n, len(ss))
	}
	return nil
}

// SweepRun is one run of a sweep, as CopyRuns writes it.
type SweepRun struct {
	ID         uuid.UUID
	StrategyID uuid.UUID
	JobID      int64
	Symbol     string
}

// CopyRuns inserts the queued runs of sweep with COPY; every one shares
// the sweep's user, correlation ID, dates and cash.
func (q *Queries) CopyRuns(ctx context.Context, sweep Sweep, runs []SweepRun) error {
	n, err := q.db.CopyFrom(ctx, pgx.Identifier{"backtest_runs"},
		[]string{
			"id", "user_id", "strategy_id", "correlation_id", "river_job_id", "symbol", "start_date",
			"end_date", "initial_cash", "sweep_id",
		},
		pgx.CopyFromSlice(len(runs), func(i int) ([]any, error) {
			r := runs[i]
			return []any{
				r.ID, sweep.UserID, r.StrategyID, sweep.CorrelationID, r.JobID, r.Symbol,
				sweep.Start, sweep.End, sweep.InitialCash, sweep.ID,
			}, nil
		}))
	if err != nil {
		return fmt.Errorf("copy %d runs: %w", len(runs), err)
	}
	if int(n) != len(runs) {
		return fmt.Errorf("copy runs: %d of %d written", n, len(runs))
	}
	return nil
}

// SweepJobIDs maps the run IDs of sweepID's River jobs to the jobs' IDs,
// from River's index on the jobs' arguments.
func (q *Queries) SweepJobIDs(ctx context.Context, sweepID uuid.UUID) (map[uuid.UUID]int64, error) {
	rows, err := q.db.Query(ctx, `
		SELECT (args->>'run_id')::uuid, id FROM river_job
		WHERE args @> jsonb_build_object('sweep_id', $1::text)`, sweepID.String())
	if err != nil {
		return nil, fmt.Errorf("read the jobs of sweep %s: %w", sweepID, err)
	}
	out := map[uuid.UUID]int64{}
	var (
		runID uuid.UUID
		jobID int64
	)
	_, err = pgx.ForEachRow(rows, []any{&runID, &jobID}, func() error {
		out[runID] = jobID
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the jobs of sweep %s: %w", sweepID, err)
	}
	return out, nil
}

// Sweep returns userID's sweep id, or ErrNotFound.
func (q *Queries) Sweep(ctx context.Context, userID, id uuid.UUID) (Sweep, error) {
	s, err := scanSweep(q.db.QueryRow(ctx,
		`SELECT `+sweepColumns+` FROM sweeps WHERE id = $1 AND user_id = $2`, id, userID))
	if err != nil {
		return Sweep{}, fmt.Errorf("load sweep %s: %w", id, notFound(err))
	}
	return s, nil
}

// LockSweep returns userID's sweep id, locked until the transaction ends,
// or ErrNotFound.
func (q *Queries) LockSweep(ctx context.Context, userID, id uuid.UUID) (Sweep, error) {
	s, err := scanSweep(q.db.QueryRow(ctx,
		`SELECT `+sweepColumns+` FROM sweeps WHERE id = $1 AND user_id = $2 FOR UPDATE`, id, userID))
	if err != nil {
		return Sweep{}, fmt.Errorf("lock sweep %s: %w", id, notFound(err))
	}
	return s, nil
}

// SweepCounts counts a sweep's runs by status: every status is present,
// zero when no run has it.
func (q *Queries) SweepCounts(ctx context.Context, sweepID uuid.UUID) (map[string]int, error) {
	rows, err := q.db.Query(ctx,
		`SELECT status, count(*) FROM backtest_runs WHERE sweep_id = $1 GROUP BY status`, sweepID)
	if err != nil {
		return nil, fmt.Errorf("count the runs of sweep %s: %w", sweepID, err)
	}
	out := map[string]int{
		StatusQueued: 0, StatusRunning: 0, StatusRetrying: 0,
		StatusSucceeded: 0, StatusFailed: 0, StatusCancelled: 0,
	}
	var (
		status string
		n      int
	)
	_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		out[status] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count the runs of sweep %s: %w", sweepID, err)
	}
	return out, nil
}

// Metrics a sweep's runs can be ranked by: fields of a run's result.
// MetricMaxDrawdown ranks smallest first, the others largest first.
const (
	MetricSharpe      = "sharpe"
	MetricTotalReturn = "total_return"
	MetricCAGR        = "cagr"
	MetricMaxDrawdown = "max_drawdown"
	MetricFinalEquity = "final_equity"
)

// RankedRun is a succeeded run of a sweep with the value it is ranked by.
type RankedRun struct {
	RunID  uuid.UUID
	Symbol string
	Params json.RawMessage
	Value  float64
}

// BestRuns returns the top succeeded runs of sweepID by metric (one of the
// Metric constants), best first; ties go to the earlier run.
func (q *Queries) BestRuns(ctx context.Context, sweepID uuid.UUID, metric string, top int) ([]RankedRun, error) {
	order := "DESC"
	switch metric {
	case MetricSharpe, MetricTotalReturn, MetricCAGR, MetricFinalEquity:
	case MetricMaxDrawdown:
		order = "ASC"
	default:
		return nil, fmt.Errorf("rank sweep %s: unknown metric %q", sweepID, metric)
	}
	// metric is one of the constants above, never the client's text.
	rows, err := q.db.Query(ctx, `
		SELECT r.id, r.symbol, s.params, (r.result->>'`+metric+`')::float8 AS value
		FROM backtest_runs r JOIN strategies s ON s.id = r.strategy_id
		WHERE r.sweep_id = $1 AND r.status = 'succeeded' AND jsonb_typeof(r.result->'`+metric+`') = 'number'
		ORDER BY value `+order+`, r.id
		LIMIT $2`, sweepID, top)
	if err != nil {
		return nil, fmt.Errorf("rank sweep %s by %s: %w", sweepID, metric, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RankedRun, error) {
		var r RankedRun
		err := row.Scan(&r.RunID, &r.Symbol, &r.Params, &r.Value)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("rank sweep %s by %s: %w", sweepID, metric, err)
	}
	return out, nil
}

// UnfinishedSweepRun is a run of a sweep that a cancel must end or stop.
type UnfinishedSweepRun struct {
	ID     uuid.UUID
	JobID  int64
	Status string
}

// LockUnfinishedSweepRuns returns the queued, running and retrying runs of
// sweepID, locked until the transaction ends.
func (q *Queries) LockUnfinishedSweepRuns(ctx context.Context, sweepID uuid.UUID) ([]UnfinishedSweepRun, error) {
	rows, err := q.db.Query(ctx, `
		SELECT id, river_job_id, status FROM backtest_runs
		WHERE sweep_id = $1 AND status IN ('queued', 'running', 'retrying')
		ORDER BY id FOR UPDATE`, sweepID)
	if err != nil {
		return nil, fmt.Errorf("lock the unfinished runs of sweep %s: %w", sweepID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (UnfinishedSweepRun, error) {
		var r UnfinishedSweepRun
		err := row.Scan(&r.ID, &r.JobID, &r.Status)
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("lock the unfinished runs of sweep %s: %w", sweepID, err)
	}
	return out, nil
}

// CancelWaitingJobs cancels, in one statement, those of jobIDs that wait
// for an attempt (available, scheduled, retryable or pending), as River's
// own cancel does to such a job, and returns the IDs it cancelled. A job a
// worker holds is left alone: River's cancel, one job at a time, reaches
// its worker.
func (q *Queries) CancelWaitingJobs(ctx context.Context, jobIDs []int64) (map[int64]bool, error) {
	rows, err := q.db.Query(ctx, `
		UPDATE river_job
		SET state = 'cancelled', finalized_at = now(),
		    metadata = jsonb_set(metadata, '{cancel_attempted_at}', to_jsonb(now()))
		WHERE id = ANY($1) AND state IN ('available', 'scheduled', 'retryable', 'pending')
		RETURNING id`, jobIDs)
	if err != nil {
		return nil, fmt.Errorf("cancel %d jobs: %w", len(jobIDs), err)
	}
	out := map[int64]bool{}
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		out[id] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cancel %d jobs: %w", len(jobIDs), err)
	}
	return out, nil
}

// CancelSweepRuns marks the unfinished runs ids cancelled at once, with
// error code cancelled and message, and counts them.
func (q *Queries) CancelSweepRuns(ctx context.Context, ids []uuid.UUID, message string) (int, error) {
	tag, err := q.db.Exec(ctx, cancelRunsSQL, ids, ErrorCodeCancelled, capText(message, MaxErrorBytes))
	if err != nil {
		return 0, fmt.Errorf("cancel %d runs: %w", len(ids), err)
	}
	return int(tag.RowsAffected()), nil
}

// RequestSweepRunsCancel records that a cancel was asked of the runs ids,
// whose jobs are running: each ends when its attempt does.
func (q *Queries) RequestSweepRunsCancel(ctx context.Context, ids []uuid.UUID) error {
	_, err := q.db.Exec(ctx, requestCancelSQL, ids)
	if err != nil {
		return fmt.Errorf("request cancel of %d runs: %w", len(ids), err)
	}
	return nil
}

// RequestSweepCancel records that a cancel was asked of the sweep, keeping
// the time of a first request, and returns the sweep.
func (q *Queries) RequestSweepCancel(ctx context.Context, id uuid.UUID) (Sweep, error) {
	s, err := scanSweep(q.db.QueryRow(ctx, `
		UPDATE sweeps SET cancel_requested_at = COALESCE(cancel_requested_at, now())
		WHERE id = $1 RETURNING `+sweepColumns, id))
	if err != nil {
		return Sweep{}, fmt.Errorf("request cancel of sweep %s: %w", id, notFound(err))
	}
	return s, nil
}
