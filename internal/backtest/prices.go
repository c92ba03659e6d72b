package backtest

import (
	"hash/fnv"
	"math"
	"time"
)

// SyntheticPrices returns n daily closes for symbol: a random walk with a
// small drift, the same for the same symbol every time, so a backtest can be
// run again and give the same result.
func SyntheticPrices(symbol string, n int) []float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(symbol))
	rng := splitmix64(h.Sum64())
	prices := make([]float64, n)
	p := 20 + float64(rng.next()%18000)/100 // 20.00 to 199.99
	const drift, vol = 0.0003, 0.015
	for i := range prices {
		// The sum of four uniforms is close enough to normal for a walk.
		u := rng.float() + rng.float() + rng.float() + rng.float()
		z := (u - 2) / math.Sqrt(4.0/12)
		p *= 1 + drift + vol*z
		p = max(p, 0.01)
		prices[i] = p
	}
	return prices
}

type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (s *splitmix64) float() float64 {
	return float64(s.next()>>11) / (1 << 53)
}

// TradingDays counts the weekdays from start to end, both included: the bars
// of a daily series over that range.
func TradingDays(start, end time.Time) int {
	start = time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC)
	end = time.Date(end.Year(), end.Month(), end.Day(), 0, 0, 0, 0, time.UTC)
	if end.Before(start) {
		return 0
	}
	days := int(end.Sub(start).Hours()/24) + 1
	n := days / 7 * 5
	wd := start.Weekday()
	for range days % 7 {
		if wd != time.Saturday && wd != time.Sunday {
			n++
		}
		wd = (wd + 1) % 7
	}
	return n
}
