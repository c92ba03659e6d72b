//go:build faultinject

package jobs

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/backtestd/backtestd/internal/backtest"
)

// FaultsBuilt reports whether this binary was built with fault injection
// (-tags faultinject). Only the tests of the real binaries build it in.
const FaultsBuilt = true

// Fault symbols: with fault injection on, a backtest of a symbol starting
// with one of these misbehaves on purpose. They let the tests of the real
// binaries produce failures that real inputs cannot (a flaky dependency, a
// bug that panics, a job slow enough to be killed midway).
const (
	FaultSlow  = "SLOW"  // sleeps SlowCheckpoint at each checkpoint
	FaultFlaky = "FLAKY" // fails its first attempt with a transient error
	FaultPanic = "PANIC" // panics on its first attempt
	FaultCrash = "CRASH" // panics on every attempt
	FaultHang  = "HANG"  // after its first checkpoint, waits for its context to end
	FaultGap   = "GAP"   // its market data lacks the second half of the range
	// FaultStall hangs as HANG on its first attempt, and runs as SLOW on
	// the others: a worker frozen during the first leaves the second to
	// another worker, still running when the frozen one comes back.
	FaultStall = "STALL"
	// FaultDefer fails its first attempt, and River waits DeferredRetry
	// before the next: the run stays retrying for as long as a test needs
	// to act on it.
	FaultDefer = "DEFER"
)

// DeferredRetry is how long River waits to retry a FaultDefer backtest.
const DeferredRetry = time.Hour

// SlowCheckpoint is how long a FaultSlow backtest sleeps at each checkpoint.
const SlowCheckpoint = 300 * time.Millisecond

// ErrInjected is the transient error of a FaultFlaky backtest.
var ErrInjected = errors.New("injected fault: market data unavailable")

// ErrDeferred is the transient error of a FaultDefer backtest.
var ErrDeferred = errors.New("injected fault: market data delayed")

// faultRetryDelay is DeferredRetry for the error of a FaultDefer backtest,
// else 0: River's retry policy decides.
func faultRetryDelay(err error) time.Duration {
	if errors.Is(err, ErrDeferred) {
		return DeferredRetry
	}
	return 0
}

// withFaults wraps next with the faults named by the input's symbol, for
// the given attempt of the job.
func withFaults(attempt int, next Engine) Engine {
	return func(ctx context.Context, in backtest.Input) (backtest.Result, error) {
		first, symbol := attempt <= 1, in.Symbol
		switch {
		case strings.HasPrefix(symbol, FaultFlaky) && first:
			return backtest.Result{}, ErrInjected
		case strings.HasPrefix(symbol, FaultDefer) && first:
			return backtest.Result{}, ErrDeferred
		case strings.HasPrefix(symbol, FaultPanic) && first, strings.HasPrefix(symbol, FaultCrash):
			panic("injected fault: " + symbol)
		case strings.HasPrefix(symbol, FaultGap):
			// The API refuses a range too short for the strategy up front;
			// data with gaps is how a run can still have too few bars, and
			// the worker must fail it as it would.
			in.Prices = in.Prices[:len(in.Prices)/2]
		case strings.HasPrefix(symbol, FaultHang), strings.HasPrefix(symbol, FaultStall) && first:
			inner := in.Progress
			in.Progress = func(pct int) {
				if inner != nil {
					inner(pct)
				}
				<-ctx.Done() // the engine then returns the context's error
			}
		case strings.HasPrefix(symbol, FaultSlow), strings.HasPrefix(symbol, FaultStall):
			inner := in.Progress
			in.Progress = func(pct int) {
				select {
				case <-ctx.Done():
				case <-time.After(SlowCheckpoint):
				}
				if inner != nil {
					inner(pct)
				}
			}
		}
		return next(ctx, in)
	}
}
