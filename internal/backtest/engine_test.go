package backtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
)

func sharpe(returns ...float64) float64 {
	var mean float64
	for _, r := range returns {
		mean += r
	}
	mean /= float64(len(returns))
	var ss float64
	for _, r := range returns {
		ss += (r - mean) * (r - mean)
	}
	return mean / math.Sqrt(ss/float64(len(returns)-1)) * math.Sqrt(252)
}

func TestRunMetricsOnHandCheckedSeries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		strategy backtest.Strategy
		prices   []float64
		want     backtest.Result
	}{
		{
			// Buys 10 shares at 10; equity 100 110 120 110 100 120.
			name:     "buy and hold",
			strategy: backtest.Strategy{Kind: backtest.KindBuyAndHold},
			prices:   []float64{10, 11, 12, 11, 10, 12},
			want: backtest.Result{
				Bars: 6, FinalEquity: 120, TotalReturn: 0.2, MaxDrawdown: 20.0 / 120, Trades: 1,
				CAGR:   math.Pow(1.2, 252.0/6) - 1,
				Sharpe: sharpe(0.1, 10.0/110, -10.0/120, -10.0/110, 0.2),
			},
		},
		{
			// fast=1, slow=2: long at bar 1 (2 > 1.5) buying 50 at 2, out at
			// bar 3 (2 < 2.5) selling at 2, in again at bar 5 (2 > 1.5).
			// Equity 100 100 150 100 100 100.
			name:     "sma crossover",
			strategy: backtest.Strategy{Kind: backtest.KindSMACrossover, FastWindow: 1, SlowWindow: 2},
			prices:   []float64{1, 2, 3, 2, 1, 2},
			want: backtest.Result{
				Bars: 6, FinalEquity: 100, TotalReturn: 0, MaxDrawdown: 50.0 / 150, Trades: 3,
				CAGR:   0,
				Sharpe: sharpe(0, 0.5, -50.0/150, 0, 0),
			},
		},
		{
			// period 2: the first RSI (bar 2) follows two falls, so 0: buy 10
			// at 10. Bar 3 and 4 rise: RSI climbs above 70, sell at 14.
			name:     "rsi reversion",
			strategy: backtest.Strategy{Kind: backtest.KindRSIReversion, Period: 2, Oversold: 30, Overbought: 70},
			prices:   []float64{12, 11, 10, 12, 14, 13},
			want: backtest.Result{
				Bars: 6, FinalEquity: 140, TotalReturn: 0.4, MaxDrawdown: 0, Trades: 2,
				CAGR:   math.Pow(1.4, 252.0/6) - 1,
				Sharpe: sharpe(0, 0, 0.2, 20.0/120, 0),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := backtest.Run(t.Context(), backtest.Input{Strategy: tt.strategy, Prices: tt.prices, InitialCash: 100})
			require.NoError(t, err)
			require.Equal(t, tt.want.Bars, got.Bars)
			require.Equal(t, tt.want.Trades, got.Trades)
			require.InDelta(t, tt.want.FinalEquity, got.FinalEquity, 1e-9)
			require.InDelta(t, tt.want.TotalReturn, got.TotalReturn, 1e-9)
			require.InDelta(t, tt.want.MaxDrawdown, got.MaxDrawdown, 1e-9)
			require.InEpsilon(t, 1+tt.want.CAGR, 1+got.CAGR, 1e-9)
			require.InDelta(t, tt.want.Sharpe, got.Sharpe, 1e-9)
		})
	}
}

func TestRunReportsEveryTenthOfTheBars(t *testing.T) {
	t.Parallel()
	all := []int{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, n := range []int{1, 5, 10, 100, 1001} {
		var got []int
		prices := backtest.SyntheticPrices("ACME", n)
		_, err := backtest.Run(t.Context(), backtest.Input{
			Symbol: "ACME", Strategy: backtest.Strategy{Kind: backtest.KindBuyAndHold}, Prices: prices, InitialCash: 100,
			Progress: func(pct int) { got = append(got, pct) },
		})
		require.NoError(t, err)
		require.Equal(t, all, got, "n=%d", n)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	prices := backtest.SyntheticPrices("ACME", 1000)
	ctx, cancel := context.WithCancel(t.Context())
	var got []int
	_, err := backtest.Run(ctx, backtest.Input{
		Symbol: "ACME", Strategy: backtest.Strategy{Kind: backtest.KindBuyAndHold}, Prices: prices, InitialCash: 100,
		Progress: func(pct int) {
			got = append(got, pct)
			if pct == 30 {
				cancel()
			}
		},
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, []int{10, 20, 30}, got)

	_, err = backtest.Run(ctx, backtest.Input{Symbol: "ACME", Strategy: backtest.Strategy{Kind: backtest.KindBuyAndHold}, Prices: prices, InitialCash: 100})
	require.ErrorIs(t, err, context.Canceled)
}

func TestRunNeedsEnoughBars(t *testing.T) {
	t.Parallel()
	s := backtest.Strategy{Kind: backtest.KindSMACrossover, FastWindow: 5, SlowWindow: 50}
	_, err := backtest.Run(t.Context(), backtest.Input{Symbol: "ACME", Strategy: s, Prices: backtest.SyntheticPrices("ACME", 49), InitialCash: 100})
	var ide *backtest.InsufficientDataError
	require.ErrorAs(t, err, &ide)
	require.Equal(t, 50, ide.Need)
	require.Equal(t, 49, ide.Have)
}

// The API refuses a range up front with CheckBars; the engine fails the
// same series with the same count: one rule.
func TestCheckBarsIsTheEnginesRule(t *testing.T) {
	t.Parallel()
	for _, s := range []backtest.Strategy{
		{Kind: backtest.KindBuyAndHold},
		{Kind: backtest.KindSMACrossover, FastWindow: 5, SlowWindow: 50},
		{Kind: backtest.KindRSIReversion, Period: 14, Oversold: 30, Overbought: 70},
	} {
		need := s.BarsNeeded()
		for _, n := range []int{0, need - 1, need, need + 1} {
			if n < 0 {
				continue
			}
			_, runErr := backtest.Run(t.Context(), backtest.Input{
				Symbol: "ACME", Strategy: s, Prices: backtest.SyntheticPrices("ACME", n), InitialCash: 100,
			})
			checkErr := s.CheckBars(n)
			require.Equal(t, checkErr, runErr, "%s over %d bars", s.Kind, n)
			var ide *backtest.InsufficientDataError
			require.Equal(t, n < need, errors.As(checkErr, &ide), "%s over %d bars", s.Kind, n)
		}
	}
}

// Every wrong parameter is reported at once.
func TestParseStrategyReportsEveryField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind, params string
		want         []string
	}{
		{"sma_crossover", `{}`, []string{"params.fast_window", "params.slow_window"}},
		{"sma_crossover", `{"fast_window":0,"slow_window":20000}`, []string{"params.fast_window", "params.slow_window"}},
		{"rsi_reversion", `{"period":1,"oversold":0,"overbought":100}`, []string{"params.period", "params.oversold", "params.overbought"}},
		{"rsi_reversion", `{"period":1,"oversold":0,"overbought":50}`, []string{"params.period", "params.oversold"}},
		{"rsi_reversion", `{"oversold":60,"overbought":50}`, []string{"params.overbought"}},
	}
	for _, tt := range tests {
		_, err := backtest.ParseStrategy(tt.kind, json.RawMessage(tt.params))
		var errs backtest.ValidationErrors
		require.ErrorAs(t, err, &errs, tt.params)
		var fields []string
		for _, e := range errs {
			fields = append(fields, e.Field)
		}
		require.Equal(t, tt.want, fields, tt.params)
	}
}

func TestParseStrategy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind, params string
		want         backtest.Strategy
		wantField    string
		wantMessage  string // part of the message, when it matters
	}{
		{
			kind: "sma_crossover", params: `{"fast_window":5,"slow_window":20}`,
			want: backtest.Strategy{Kind: "sma_crossover", FastWindow: 5, SlowWindow: 20},
		},
		{kind: "sma_crossover", params: `{"fast_window":20,"slow_window":20}`, wantField: "params.fast_window"},
		{kind: "sma_crossover", params: `{"fast_window":0,"slow_window":20}`, wantField: "params.fast_window"},
		{kind: "sma_crossover", params: `{"slow_window":20}`, wantField: "params.fast_window"},
		{kind: "sma_crossover", params: `{"fast_window":"5","slow_window":20}`, wantField: "params.fast_window"},
		{kind: "sma_crossover", params: `{"fast_window":5,"slow_window":20,"x":1}`, wantField: "params"},
		{kind: "sma_crossover", params: `{"fast_window":5,"slow_window":20000}`, wantField: "params.slow_window"},
		{kind: "buy_and_hold", params: ``, want: backtest.Strategy{Kind: "buy_and_hold"}},
		{kind: "buy_and_hold", params: `null`, want: backtest.Strategy{Kind: "buy_and_hold"}},
		{kind: "buy_and_hold", params: `{"fast_window":1}`, wantField: "params"},
		{kind: "buy_and_hold", params: `[1]`, wantField: "params"},
		{
			kind: "rsi_reversion", params: `{}`,
			want: backtest.Strategy{Kind: "rsi_reversion", Period: 14, Oversold: 30, Overbought: 70},
		},
		{kind: "rsi_reversion", params: `{"oversold":80}`, wantField: "params.overbought"},
		{kind: "rsi_reversion", params: `{"period":1}`, wantField: "params.period"},
		{
			kind: "sma_crossover", params: `{"fast_window":5,"slow_window":20,"fast_window":6}`,
			wantField: "params", wantMessage: `"fast_window" more than once`,
		},
		{
			kind: "sma_crossover", params: `{"FAST_WINDOW":5,"slow_window":20}`,
			wantField: "params", wantMessage: `unknown field "FAST_WINDOW"`,
		},
		{kind: "sma_crossover", params: `{"Fast_Window":5,"slow_window":20}`, wantField: "params"},
		{kind: "sma_crossover", params: "{\"fast_window\":5,\"slow_window\":20,\"\xff\":1}", wantField: "params", wantMessage: "UTF-8"},
		{kind: "sma_crossover", params: `{"fast_window":5.5,"slow_window":20}`, wantField: "params.fast_window", wantMessage: "whole number"},
		{kind: "rsi_reversion", params: `{"period":14,"period":15}`, wantField: "params", wantMessage: "more than once"},
		{kind: "rsi_reversion", params: `{"oversold":"30"}`, wantField: "params.oversold", wantMessage: "must be a number"},
		{kind: "buy_and_hold", params: `{}{}`, wantField: "params"},
		{kind: "", params: `{}`, wantField: "kind"},
		{kind: "martingale", params: `{}`, wantField: "kind"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+tt.params, func(t *testing.T) {
			t.Parallel()
			got, err := backtest.ParseStrategy(tt.kind, json.RawMessage(tt.params))
			if tt.wantField != "" {
				var ve *backtest.ValidationError
				require.ErrorAs(t, err, &ve)
				require.Equal(t, tt.wantField, ve.Field, ve.Message)
				require.Contains(t, ve.Message, tt.wantMessage)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			back, err := backtest.ParseStrategy(got.Kind, got.Params())
			require.NoError(t, err)
			require.Equal(t, got, back, "Params round-trips")
		})
	}
}

func TestSyntheticPricesAreDeterministic(t *testing.T) {
	t.Parallel()
	a := backtest.SyntheticPrices("ACME", 500)
	require.Equal(t, a, backtest.SyntheticPrices("ACME", 500))
	require.NotEqual(t, a, backtest.SyntheticPrices("INITECH", 500))
	for _, p := range a {
		require.Greater(t, p, 0.0)
	}
}

func TestTradingDays(t *testing.T) {
	t.Parallel()
	d := func(s string) time.Time {
		v, err := time.Parse(time.DateOnly, s)
		require.NoError(t, err)
		return v
	}
	require.Equal(t, 5, backtest.TradingDays(d("2026-11-23"), d("2026-11-29"))) // Mon..Sun
	require.Equal(t, 1, backtest.TradingDays(d("2026-11-27"), d("2026-11-29"))) // Fri..Sun
	require.Equal(t, 0, backtest.TradingDays(d("2026-11-28"), d("2026-11-29"))) // weekend
	require.Equal(t, 0, backtest.TradingDays(d("2026-11-29"), d("2026-11-28")))
	require.Equal(t, 261, backtest.TradingDays(d("2025-01-01"), d("2025-12-31")))
}

// BenchmarkRunSMACrossover1M reports the engine's cost per bar over a
// million bars (the prices are made once, outside the timer).
func BenchmarkRunSMACrossover1M(b *testing.B) {
	const n = 1_000_000
	prices := backtest.SyntheticPrices("ACME", n)
	in := backtest.Input{
		Symbol: "ACME", Strategy: backtest.Strategy{Kind: backtest.KindSMACrossover, FastWindow: 20, SlowWindow: 100},
		Prices: prices, InitialCash: 10_000, Progress: func(int) {},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := backtest.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/bar")
}
