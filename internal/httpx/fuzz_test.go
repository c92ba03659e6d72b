package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/internal/backtest"
)

// Every body either decodes and validates, or gets a 4xx problem; nothing
// panics, for either endpoint that reads a body.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"kind":"sma_crossover","params":{"fast_window":5,"slow_window":20}}`,
		`{"kind":"rsi_reversion","params":{"period":1e400}}`, `{"kind":"buy_and_hold","params":[1]}`,
		`{"strategy_id":"01a2175f-386b-7761-8b43-c03581273143","symbol":"ACME","start":"2020-01-01","end":"2021-01-01","initial_cash":1}`,
		`{"initial_cash":-0}`, `{"start":"2020-02-30"}`, `{"a":1}{}`, `[`, `"\ud800"`, `{"symbol":"\u0000"}`, `null`,
		`{"kind":"buy_and_hold","kind":"x"}`, `{"KIND":"buy_and_hold"}`, `{"kind":"sma_crossover","params":{"a":{"b":1,"b":2}}}`,
		`{"name":"\u001b[31m","kind":"buy_and_hold"}`, "{\"name\":\"\xff\"}", `{"initial_cash":5e-324}`,
		`{"strategy_id":"{01a2175f-386b-7761-8b43-c03581273143}"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		check := func(rec *httptest.ResponseRecorder, ok bool) {
			t.Helper()
			if ok {
				return
			}
			if rec.Code < 400 || rec.Code > 499 {
				t.Fatalf("status %d for %q", rec.Code, body)
			}
			if rec.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("no problem body for %q", body)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code {
				t.Fatalf("bad problem %q for %q", rec.Body.String(), body)
			}
		}

		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/strategies", strings.NewReader(body))
		sreq, ok := decode[createStrategyRequest](rec, req)
		check(rec, ok)
		if ok {
			if name := strings.TrimSpace(sreq.Name); validName(name) && strings.ContainsFunc(name, unicode.IsControl) {
				t.Fatalf("validName accepted control characters in %q", name)
			}
			_, err := backtest.ParseStrategy(sreq.Kind, sreq.Params)
			var ve *backtest.ValidationError
			if err != nil && !errors.As(err, &ve) {
				t.Fatalf("ParseStrategy(%q): %v is not a ValidationError", body, err)
			}
		}

		rec = httptest.NewRecorder()
		req = httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/backtests", strings.NewReader(body))
		breq, ok := decode[createBacktestRequest](rec, req)
		check(rec, ok)
		if ok {
			// Any ID names a buy_and_hold strategy, which needs one bar.
			anyStrategy := func(context.Context, uuid.UUID) (backtest.Strategy, error) {
				return backtest.Strategy{Kind: backtest.KindBuyAndHold}, nil
			}
			nb, invalid, err := breq.validate(t.Context(), anyStrategy)
			if err != nil {
				t.Fatalf("validate(%q): %v", body, err)
			}
			if len(invalid) == 0 && (nb.InitialCash < 1 || nb.InitialCash > 1e12 || !nb.End.After(nb.Start) || nb.Symbol == "" ||
				backtest.TradingDays(nb.Start, nb.End) < 1) {
				t.Fatalf("validate accepted %q", body)
			}
			names := map[string]bool{}
			for _, p := range invalid {
				if names[p.Name] {
					t.Fatalf("validate named %s twice for %q", p.Name, body)
				}
				names[p.Name] = true
			}
		}
	})
}
