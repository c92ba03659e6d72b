package jobs

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/backtestd/backtestd/internal/backtest"
)

// Fault symbols: with fault injection on, a backtest of a symbol starting
// with one of these misbehaves on purpose. They let the tests of the real
// binaries produce failures that real inputs cannot (a flaky dependency, a
// bug that panics, a job slow enough to be killed midway).
const (
	FaultSlow  = "SLOW"  // sleeps SlowCheckpoint at each checkpoint
	FaultFlaky = "FLAKY" // fails its first attempt with a transient error
	FaultPanic = "PANIC" // panics on its first attempt
	FaultCrash = "CRASH" // panics on every attempt
)

// SlowCheckpoint is how long a FaultSlow backtest sleeps at each checkpoint.
const SlowCheckpoint = 300 * time.Millisecond

// ErrInjected is the transient error of a FaultFlaky backtest.
var ErrInjected = errors.New("injected fault: market data unavailable")

// FaultEngine wraps next with the faults named by the symbol. The worker
// uses it only when FAULT_INJECTION is set: it is for tests, never for
// production.
func FaultEngine(symbol string, next Engine) Engine {
	return func(ctx context.Context, s backtest.Strategy, prices []float64, cash float64, progress backtest.Progress) (backtest.Result, error) {
		first := attemptFrom(ctx) <= 1
		switch {
		case strings.HasPrefix(symbol, FaultFlaky) && first:
			return backtest.Result{}, ErrInjected
		case strings.HasPrefix(symbol, FaultPanic) && first, strings.HasPrefix(symbol, FaultCrash):
			panic("injected fault: " + symbol)
		case strings.HasPrefix(symbol, FaultSlow):
			inner := progress
			progress = func(pct int) {
				select {
				case <-ctx.Done():
				case <-time.After(SlowCheckpoint):
				}
				if inner != nil {
					inner(pct)
				}
			}
		}
		return next(ctx, s, prices, cash, progress)
	}
}

type attemptKey struct{}

func withAttempt(ctx context.Context, attempt int) context.Context {
	return context.WithValue(ctx, attemptKey{}, attempt)
}

func attemptFrom(ctx context.Context) int {
	a, _ := ctx.Value(attemptKey{}).(int)
	return a
}
