// Package jobargs is what the API server, which enqueues backtests, and the
// worker, which runs them, agree on: a backtest job's arguments, its kind,
// queue and insert options. Both import it; it imports neither, so the
// arguments' keys are spelt once and the server links nothing of the worker.
package jobargs

import (
	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/backtestd/backtestd/internal/config"
)

// Queue is the River queue backtests run on.
const Queue = "backtests"

// KindBacktest is the River job kind of backtests.
const KindBacktest = "backtest"

// Backtest are a backtest job's arguments. They carry the fields every job
// log line needs, so the worker can bind them before loading anything.
type Backtest struct {
	RunID         uuid.UUID `json:"run_id"`
	CorrelationID string    `json:"correlation_id"`
	UserID        uuid.UUID `json:"user_id"`
	StrategyID    uuid.UUID `json:"strategy_id"`
	// Traceparent is the W3C traceparent of the request that created the
	// job, when it came with one: the job's lines carry its trace_id. Jobs
	// enqueued without it (or before it existed) are outside any trace.
	Traceparent string `json:"traceparent,omitempty"`
	// SweepID is the sweep the run belongs to, if any: the job's lines
	// carry it.
	SweepID uuid.UUID `json:"sweep_id,omitzero"`
}

// Kind is the River job kind of backtests.
func (Backtest) Kind() string { return KindBacktest }

// InsertOpts puts backtests on their queue. The enqueuer sets the attempts
// from its settings; the default here covers any other inserter.
func (Backtest) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: Queue, MaxAttempts: config.DefaultJobMaxAttempts}
}
