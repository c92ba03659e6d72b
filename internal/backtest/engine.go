package backtest

import (
	"context"
	"fmt"
	"math"
)

// TradingDaysPerYear annualises daily figures (CAGR, Sharpe ratio).
const TradingDaysPerYear = 252

// Checkpoints is how many times a run reports progress: at every tenth of
// its bars.
const Checkpoints = 10

// Result measures a run.
type Result struct {
	Bars        int     `json:"bars"`
	FinalEquity float64 `json:"final_equity"`
	// TotalReturn is final equity over initial cash, minus one.
	TotalReturn float64 `json:"total_return"`
	// CAGR is the compound annual growth rate over Bars/252 years.
	CAGR float64 `json:"cagr"`
	// MaxDrawdown is the largest fall from a peak of equity, as a fraction
	// of that peak (0.25 is a 25% drawdown).
	MaxDrawdown float64 `json:"max_drawdown"`
	// Sharpe is the annualised Sharpe ratio of daily returns, risk-free rate 0.
	Sharpe float64 `json:"sharpe"`
	// Trades counts buys and sells.
	Trades int `json:"trades"`
}

// InsufficientDataError is returned when the series is shorter than the
// strategy's warm-up. Running again will not help: it is a permanent failure.
type InsufficientDataError struct {
	Need, Have int
}

func (e *InsufficientDataError) Error() string {
	return fmt.Sprintf("strategy needs at least %d bars, the date range has %d", e.Need, e.Have)
}

// Progress receives the percentage of bars done at each checkpoint: 10, 20,
// ..., 100.
type Progress func(pct int)

// ctxCheckEvery bounds how many bars run between cancellation checks, so a
// cancelled run stops promptly even between checkpoints of a long series.
const ctxCheckEvery = 1 << 16

// Input is what a run needs: the series and the strategy to trade over it.
type Input struct {
	// Symbol names the series. The engine trades Prices alone; the symbol
	// is there for whatever runs in its place (a stand-in in tests, the
	// fault injection of test builds), which must not have to recognise a
	// series by its numbers.
	Symbol string
	// Strategy decides, bar by bar, whether to be in or out.
	Strategy Strategy
	// Prices are the closes, one per bar, oldest first.
	Prices []float64
	// InitialCash is the account's equity before the first bar.
	InitialCash float64
	// Progress, if set, is called at each checkpoint.
	Progress Progress
}

// Run trades in.Strategy over in.Prices starting with in.InitialCash, all in
// or all out, at the close of the bar that signals. It stops with the
// context's error when ctx is done.
func Run(ctx context.Context, in Input) (Result, error) {
	s, prices, initialCash, progress := in.Strategy, in.Prices, in.InitialCash, in.Progress
	n := len(prices)
	if err := s.CheckBars(n); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	sig := newSignal(s)
	b := book{cash: initialCash, peak: initialCash, prevEquity: initialCash}
	checkpoint, next := 1, checkpointBar(n, 1)
	for i, p := range prices {
		b.step(p, sig.next(p))
		if i == next {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
			for ; i == next; next = checkpointBar(n, checkpoint) {
				if progress != nil {
					progress(checkpoint * 100 / Checkpoints)
				}
				checkpoint++
			}
		} else if i%ctxCheckEvery == ctxCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return Result{}, err
			}
		}
	}
	return b.result(initialCash, n), nil
}

// checkpointBar is the index of the bar that completes checkpoint k of n
// bars; several checkpoints of a short series may share one bar, and each is
// still reported.
func checkpointBar(n, k int) int {
	if k > Checkpoints {
		return -1
	}
	return (n*k+Checkpoints-1)/Checkpoints - 1
}

// book keeps the account and the running statistics, so a run needs no
// memory per bar.
type book struct {
	cash, shares float64
	trades       int
	peak, maxDD  float64
	prevEquity   float64
	// Welford's running mean and variance of daily returns.
	nRet      int
	mean, m2  float64
	lastPrice float64
}

// step applies the signal at price p and books the bar's equity.
func (b *book) step(p float64, want position) {
	switch {
	case want == long && b.shares == 0 && p > 0:
		b.shares, b.cash = b.cash/p, 0
		b.trades++
	case want == flat && b.shares > 0:
		b.cash, b.shares = b.shares*p, 0
		b.trades++
	}
	equity := b.cash + b.shares*p
	if b.lastPrice != 0 {
		r := equity/b.prevEquity - 1
		b.nRet++
		d := r - b.mean
		b.mean += d / float64(b.nRet)
		b.m2 += d * (r - b.mean)
	}
	b.lastPrice = p
	b.prevEquity = equity
	if equity > b.peak {
		b.peak = equity
	} else if dd := (b.peak - equity) / b.peak; dd > b.maxDD {
		b.maxDD = dd
	}
}

func (b *book) result(initialCash float64, bars int) Result {
	r := Result{Bars: bars, FinalEquity: b.prevEquity, MaxDrawdown: b.maxDD, Trades: b.trades}
	growth := b.prevEquity / initialCash
	r.TotalReturn = growth - 1
	if years := float64(bars) / TradingDaysPerYear; growth > 0 {
		r.CAGR = math.Pow(growth, 1/years) - 1
	} else {
		r.CAGR = -1
	}
	if b.nRet > 1 {
		if sd := math.Sqrt(b.m2 / float64(b.nRet-1)); sd > 0 {
			r.Sharpe = b.mean / sd * math.Sqrt(TradingDaysPerYear)
		}
	}
	return r
}

type position int8

const (
	hold position = iota // no opinion: keep what is held
	flat
	long
)

// signal turns each bar's close into a position.
type signal interface {
	next(price float64) position
}

func newSignal(s Strategy) signal {
	switch s.Kind {
	case KindSMACrossover:
		return &smaCross{fast: newWindow(s.FastWindow), slow: newWindow(s.SlowWindow)}
	case KindRSIReversion:
		return &rsiReversion{period: float64(s.Period), oversold: s.Oversold, overbought: s.Overbought}
	default:
		return buyAndHold{}
	}
}

type buyAndHold struct{}

func (buyAndHold) next(float64) position { return long }

// window is a moving sum over the last len(buf) values.
type window struct {
	buf  []float64
	i, n int
	sum  float64
}

func newWindow(size int) window { return window{buf: make([]float64, size)} }

func (w *window) push(v float64) {
	w.sum += v - w.buf[w.i]
	w.buf[w.i] = v
	w.i++
	if w.i == len(w.buf) {
		w.i = 0
	}
	if w.n < len(w.buf) {
		w.n++
	}
}

func (w *window) full() bool    { return w.n == len(w.buf) }
func (w *window) mean() float64 { return w.sum / float64(len(w.buf)) }

// smaCross is long while the fast moving average is above the slow one.
type smaCross struct {
	fast, slow window
}

func (s *smaCross) next(p float64) position {
	s.fast.push(p)
	s.slow.push(p)
	if !s.slow.full() {
		return hold
	}
	if s.fast.mean() > s.slow.mean() {
		return long
	}
	return flat
}

// rsiReversion buys when Wilder's RSI falls below oversold and sells when it
// rises above overbought.
type rsiReversion struct {
	period               float64
	oversold, overbought float64
	prev                 float64
	seen                 int
	avgGain, avgLoss     float64
}

func (s *rsiReversion) next(p float64) position {
	s.seen++
	if s.seen == 1 {
		s.prev = p
		return hold
	}
	gain, loss := 0.0, 0.0
	if d := p - s.prev; d > 0 {
		gain = d
	} else {
		loss = -d
	}
	s.prev = p
	if s.seen <= int(s.period)+1 { // the first average is a plain mean
		s.avgGain += gain / s.period
		s.avgLoss += loss / s.period
		if s.seen <= int(s.period) {
			return hold
		}
	} else {
		s.avgGain = (s.avgGain*(s.period-1) + gain) / s.period
		s.avgLoss = (s.avgLoss*(s.period-1) + loss) / s.period
	}
	rsi := 100.0
	if s.avgLoss > 0 {
		rsi = 100 - 100/(1+s.avgGain/s.avgLoss)
	}
	switch {
	case rsi < s.oversold:
		return long
	case rsi > s.overbought:
		return flat
	default:
		return hold
	}
}
