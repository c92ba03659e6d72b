package enqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/store"
)

// River priorities (1 is fetched first): a sweep's thousands of runs wait
// behind any single backtest, so one user's sweep does not starve
// another's run.
const (
	PrioritySingle = 1
	PrioritySweep  = 2
)

// Grid is a sweep's grid: for each parameter of the strategy's kind, the
// values to try.
type Grid map[string][]json.RawMessage

// Combination is one point of a grid the strategy accepts.
type Combination struct {
	Strategy backtest.Strategy
	// Params are the strategy's parameters as stored: the grid's values,
	// with the kind's defaults for parameters the grid leaves out.
	Params json.RawMessage
}

// Expansion is a grid's cross product, split into what the strategy
// accepts and what it refuses.
type Expansion struct {
	Combinations []Combination
	// Skipped counts the combinations the strategy refused.
	Skipped int
	// FirstRefusal is why the first refused combination was refused: the
	// answer to give when every one is.
	FirstRefusal error
}

// Candidates is how many combinations grid has: the product of its lists'
// lengths (1 for an empty grid), capped at upTo+1 so that a huge grid does
// not overflow.
func Candidates(grid Grid, upTo int) int {
	n := 1
	for _, values := range grid {
		n *= len(values)
		if n > upTo {
			return upTo + 1
		}
	}
	return n
}

// Expand runs through grid's cross product in a fixed order (parameters by
// name, the last varying fastest) and parses each combination as a
// strategy of kind whose range has bars weekdays: a combination
// backtest.ParseStrategy or Strategy.CheckBars refuses is skipped and
// counted. Only a fault of the encoder is returned as an error.
func Expand(kind string, grid Grid, bars int) (Expansion, error) {
	names := make([]string, 0, len(grid))
	for name := range grid {
		names = append(names, name)
	}
	slices.Sort(names)
	keys := make([][]byte, len(names))
	for i, name := range names {
		key, err := json.Marshal(name)
		if err != nil {
			return Expansion{}, fmt.Errorf("encode parameter name: %w", err)
		}
		keys[i] = key
	}
	var out Expansion
	idx := make([]int, len(names))
	for {
		var b bytes.Buffer
		b.WriteByte('{')
		for i, name := range names {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(keys[i])
			b.WriteByte(':')
			b.Write(grid[name][idx[i]])
		}
		b.WriteByte('}')
		spec, err := backtest.ParseStrategy(kind, b.Bytes())
		if err == nil {
			err = spec.CheckBars(bars)
		}
		if err != nil {
			out.Skipped++
			if out.FirstRefusal == nil {
				out.FirstRefusal = err
			}
		} else {
			out.Combinations = append(out.Combinations, Combination{Strategy: spec, Params: spec.Params()})
		}
		// Next index, the last parameter fastest.
		i := len(names) - 1
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < len(grid[names[i]]) {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return out, nil
		}
	}
}

// NewSweep is a sweep a user asked for: its combinations already expanded.
type NewSweep struct {
	UserID        uuid.UUID
	CorrelationID string
	Kind          string
	// ParamsGrid is the grid as the user sent it, kept with the sweep.
	ParamsGrid   json.RawMessage
	Combinations []Combination
	Skipped      int
	Symbols      []string
	Start, End   time.Time
	InitialCash  float64
	// Traceparent, if set, is the W3C traceparent of the request's span.
	Traceparent string
	// Hook, if set, runs inside the sweep's transaction.
	Hook TxHook[store.Sweep]
}

// EnqueueSweep inserts the sweep, a strategy per combination, a run per
// combination and symbol, and a River job per run, in one transaction:
// all or nothing. The jobs go in with COPY (River's InsertManyFastTx), at
// PrioritySweep. Having written nothing, it returns an error wrapping
// store.ErrUserGone when the user no longer exists, and a
// *TooManyUnfinishedError when the sweep's runs would take the user past
// the bound of unfinished runs: a sweep counts as many runs as it has.
func (e *Enqueuer) EnqueueSweep(ctx context.Context, ns NewSweep) (store.Sweep, error) {
	sweepID, err := uuid.NewV7()
	if err != nil {
		return store.Sweep{}, fmt.Errorf("new sweep id: %w", err)
	}
	n := len(ns.Combinations) * len(ns.Symbols)
	if n == 0 {
		return store.Sweep{}, errors.New("enqueue sweep: no runs")
	}
	strategies := make([]store.SweepStrategy, len(ns.Combinations))
	for i, c := range ns.Combinations {
		strategies[i] = store.SweepStrategy{
			ID: uuid.Must(uuid.NewV7()), Name: combinationName(ns.Kind, c.Params), Params: c.Params,
		}
	}
	runs := make([]store.SweepRun, 0, n)
	jobs := make([]river.InsertManyParams, 0, n)
	opts := &river.InsertOpts{MaxAttempts: e.maxAttempts, Priority: PrioritySweep}
	for _, s := range strategies {
		for _, symbol := range ns.Symbols {
			runID := uuid.Must(uuid.NewV7())
			runs = append(runs, store.SweepRun{ID: runID, StrategyID: s.ID, Symbol: symbol})
			jobs = append(jobs, river.InsertManyParams{Args: jobargs.Backtest{
				RunID: runID, CorrelationID: ns.CorrelationID, UserID: ns.UserID, StrategyID: s.ID,
				Traceparent: ns.Traceparent, SweepID: sweepID,
			}, InsertOpts: opts})
		}
	}
	var sweep store.Sweep
	err = pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		q := store.New(tx)
		if ns.Hook != nil {
			if err := ns.Hook.Before(ctx, tx); err != nil {
				return err
			}
		}
		if err := e.checkRoomFor(ctx, q, ns.UserID, n); err != nil {
			return err
		}
		var err error
		sweep, err = q.InsertSweep(ctx, store.Sweep{
			ID: sweepID, UserID: ns.UserID, CorrelationID: ns.CorrelationID, Kind: ns.Kind,
			ParamsGrid: ns.ParamsGrid, Symbols: ns.Symbols, Start: ns.Start, End: ns.End,
			InitialCash: ns.InitialCash, RunCount: n, SkippedCount: ns.Skipped,
		})
		if err != nil {
			return err
		}
		if err := q.CopyStrategies(ctx, ns.UserID, ns.Kind, strategies); err != nil {
			return err
		}
		inserted, err := e.river.InsertManyFastTx(ctx, tx, jobs)
		if err != nil {
			return fmt.Errorf("insert %d jobs: %w", n, err)
		}
		if inserted != n {
			return fmt.Errorf("insert jobs: %d of %d inserted", inserted, n)
		}
		// COPY returns no IDs: read them back by the sweep's ID, from
		// River's index on the arguments.
		ids, err := q.SweepJobIDs(ctx, sweepID)
		if err != nil {
			return err
		}
		for i := range runs {
			id, ok := ids[runs[i].ID]
			if !ok {
				return fmt.Errorf("the job of run %s is missing", runs[i].ID)
			}
			runs[i].JobID = id
		}
		if err := q.CopyRuns(ctx, sweep, runs); err != nil {
			return err
		}
		if ns.Hook == nil {
			return nil
		}
		return ns.Hook.After(ctx, tx, sweep)
	})
	if err != nil {
		return store.Sweep{}, fmt.Errorf("enqueue sweep: %w", err)
	}
	return sweep, nil
}

// checkRoomFor locks the user's row, then returns a
// *TooManyUnfinishedError if n more runs would take the user past the bound.
func (e *Enqueuer) checkRoomFor(ctx context.Context, q *store.Queries, userID uuid.UUID, n int) error {
	if err := q.LockUser(ctx, userID); err != nil {
		return err
	}
	unfinished, err := q.CountUnfinishedRuns(ctx, userID, e.maxUnfinished)
	if err != nil {
		return err
	}
	if unfinished+n > e.maxUnfinished {
		return &TooManyUnfinishedError{Limit: e.maxUnfinished, Unfinished: unfinished, Requested: n}
	}
	return nil
}

// combinationName names a combination's strategy: its kind and parameters,
// cut to store.MaxNameLength characters.
func combinationName(kind string, params json.RawMessage) string {
	var m map[string]json.RawMessage
	name := kind
	if json.Unmarshal(params, &m) == nil && len(m) > 0 {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + string(m[k])
		}
		name += " " + strings.Join(parts, " ")
	}
	if utf8.RuneCountInString(name) > store.MaxNameLength {
		name = string([]rune(name)[:store.MaxNameLength])
	}
	return name
}

// SweepCancellation is what CancelSweep did.
type SweepCancellation struct {
	Sweep store.Sweep
	// Cancelled counts the runs cancelled at once; Asked those still
	// running, asked to stop.
	Cancelled, Asked int
	// Finished is the sweep, when this cancel ended its last run: the
	// caller logs sweep_finished with it. Nil otherwise.
	Finished *store.SweepFinished
}

// CancelSweep cancels what has not finished of userID's sweep id, in one
// transaction with the River jobs, as Cancel does for one run: runs waiting
// for an attempt are cancelled at once with their jobs, running ones are
// asked to stop and end when their attempt does. A sweep whose runs have
// all finished returns a *FinishedError, unless a cancel was asked of it
// before: asking again changes nothing and is not an error. It returns an
// error wrapping store.ErrNotFound when the sweep is not the user's.
func (e *Enqueuer) CancelSweep(ctx context.Context, userID, id uuid.UUID) (SweepCancellation, error) {
	var c SweepCancellation
	err := pgx.BeginFunc(ctx, e.db, func(tx pgx.Tx) error {
		q := store.New(tx)
		sweep, err := q.LockSweep(ctx, userID, id)
		if err != nil {
			return err
		}
		runs, err := q.LockUnfinishedSweepRuns(ctx, id)
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			if sweep.CancelRequestedAt != nil {
				c.Sweep = sweep
				return nil
			}
			return &FinishedError{Status: "finished"}
		}
		if c.Sweep, err = q.RequestSweepCancel(ctx, id); err != nil {
			return err
		}
		jobIDs := make([]int64, len(runs))
		for i, r := range runs {
			jobIDs[i] = r.JobID
		}
		waiting, err := q.CancelWaitingJobs(ctx, jobIDs)
		if err != nil {
			return err
		}
		var now, later []uuid.UUID
		for _, r := range runs {
			if waiting[r.JobID] {
				now = append(now, r.ID)
				continue
			}
			// Few: only the jobs workers hold, or ones that ended meanwhile.
			cancelNow, err := e.cancelJob(ctx, tx, r.JobID)
			switch {
			case err != nil:
				return err
			case cancelNow:
				now = append(now, r.ID)
			default:
				later = append(later, r.ID)
			}
		}
		if c.Cancelled, err = q.CancelSweepRuns(ctx, now, CancelledMessage); err != nil {
			return err
		}
		if err := q.RequestSweepRunsCancel(ctx, later); err != nil {
			return err
		}
		c.Asked = len(later)
		finished, done, err := q.FinishSweep(ctx, id)
		if err != nil {
			return err
		}
		if done {
			c.Finished, c.Sweep.FinishedAt = &finished, &finished.FinishedAt
		}
		return nil
	})
	if err != nil {
		return SweepCancellation{}, fmt.Errorf("cancel sweep %s: %w", id, err)
	}
	return c, nil
}
