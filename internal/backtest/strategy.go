// Package backtest is the engine: it runs a strategy over a daily price
// series and measures the result. It does no I/O and no logging; progress is
// reported through a callback at every tenth of the bars.
package backtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Strategy kinds.
const (
	KindSMACrossover = "sma_crossover"
	KindBuyAndHold   = "buy_and_hold"
	KindRSIReversion = "rsi_reversion"
)

// kindList names the kinds in error messages.
const kindList = KindSMACrossover + ", " + KindBuyAndHold + ", " + KindRSIReversion

// Bounds on parameters, so that one request cannot ask for absurd work.
const (
	maxWindow = 10_000
	maxPeriod = 1_000
)

// Strategy is a validated strategy: its kind and the parameters of that kind.
type Strategy struct {
	Kind string
	// FastWindow and SlowWindow are the SMA lengths of sma_crossover, in bars.
	FastWindow, SlowWindow int
	// Period, Oversold and Overbought configure rsi_reversion.
	Period               int
	Oversold, Overbought float64
}

// ValidationError says which input is wrong and why.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	return e.Field + ": " + e.Message
}

// ValidationErrors are every wrong input of a strategy at once, in the
// order of its fields. errors.As finds each *ValidationError in it.
type ValidationErrors []*ValidationError

func (errs ValidationErrors) Error() string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap gives errors.Is and errors.As each error.
func (errs ValidationErrors) Unwrap() []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}

func (errs *ValidationErrors) add(field, message string) {
	*errs = append(*errs, &ValidationError{Field: field, Message: message})
}

type smaParams struct {
	FastWindow *int `json:"fast_window"`
	SlowWindow *int `json:"slow_window"`
}

type rsiParams struct {
	Period     *int     `json:"period"`
	Oversold   *float64 `json:"oversold"`
	Overbought *float64 `json:"overbought"`
}

// ParseStrategy validates a kind and its JSON parameters. Parameters the
// kind does not have, missing required ones and values out of range give a
// *ValidationError, or ValidationErrors when several parameters are wrong:
// every one is reported at once.
func ParseStrategy(kind string, params json.RawMessage) (Strategy, error) {
	switch kind {
	case KindSMACrossover:
		var p smaParams
		if err := decodeParams(params, &p); err != nil {
			return Strategy{}, err
		}
		var errs ValidationErrors
		switch {
		case p.FastWindow == nil:
			errs.add("params.fast_window", "is required")
		case *p.FastWindow < 1:
			errs.add("params.fast_window", "must be at least 1")
		}
		switch {
		case p.SlowWindow == nil:
			errs.add("params.slow_window", "is required")
		case *p.SlowWindow > maxWindow:
			errs.add("params.slow_window", fmt.Sprintf("must be at most %d", maxWindow))
		}
		if len(errs) > 0 {
			return Strategy{}, errs
		}
		s := Strategy{Kind: kind, FastWindow: *p.FastWindow, SlowWindow: *p.SlowWindow}
		if s.FastWindow >= s.SlowWindow {
			return Strategy{}, &ValidationError{"params.fast_window", "must be less than slow_window"}
		}
		return s, nil
	case KindBuyAndHold:
		var p struct{}
		if err := decodeParams(params, &p); err != nil {
			return Strategy{}, err
		}
		return Strategy{Kind: kind}, nil
	case KindRSIReversion:
		var p rsiParams
		if err := decodeParams(params, &p); err != nil {
			return Strategy{}, err
		}
		s := Strategy{Kind: kind, Period: 14, Oversold: 30, Overbought: 70}
		if p.Period != nil {
			s.Period = *p.Period
		}
		if p.Oversold != nil {
			s.Oversold = *p.Oversold
		}
		if p.Overbought != nil {
			s.Overbought = *p.Overbought
		}
		var errs ValidationErrors
		if s.Period < 2 || s.Period > maxPeriod {
			errs.add("params.period", fmt.Sprintf("must be between 2 and %d", maxPeriod))
		}
		oversoldOK := s.Oversold > 0 && s.Oversold < 100
		if !oversoldOK {
			errs.add("params.oversold", "must be between 0 and 100")
		}
		// Above an oversold that is itself wrong means nothing: only the
		// bound of 100 is checked then.
		if !(s.Overbought < 100) || oversoldOK && !(s.Overbought > s.Oversold) {
			errs.add("params.overbought", "must be above oversold and below 100")
		}
		if len(errs) > 0 {
			return Strategy{}, errs
		}
		return s, nil
	case "":
		return Strategy{}, &ValidationError{"kind", "is required"}
	default:
		return Strategy{}, &ValidationError{"kind", "must be one of " + kindList}
	}
}

// decodeParams decodes params strictly: one JSON object of valid UTF-8, no
// unknown fields, names matched case-sensitively, no name twice at any
// depth (encoding/json v2's defaults, unknown fields refused). Absent or
// null params are an empty object.
func decodeParams(params json.RawMessage, into any) error {
	params = bytes.Trim(params, " \t\r\n")
	if len(params) == 0 || string(params) == "null" {
		params = json.RawMessage(`{}`)
	}
	err := jsonv2.Unmarshal(params, into, jsonv2.RejectUnknownMembers(true))
	var (
		semantic  *jsonv2.SemanticError
		syntactic *jsontext.SyntacticError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &syntactic) && errors.Is(syntactic.Err, jsontext.ErrDuplicateName):
		return &ValidationError{"params", fmt.Sprintf("gives %q more than once", syntactic.JSONPointer.LastToken())}
	case errors.As(err, &syntactic):
		return &ValidationError{"params", "must be valid JSON (" + syntactic.Err.Error() + ")"}
	case errors.As(err, &semantic) && errors.Is(semantic.Err, jsonv2.ErrUnknownName):
		return &ValidationError{"params", fmt.Sprintf("unknown field %q for this kind (names are case-sensitive)",
			semantic.JSONPointer.LastToken())}
	case errors.As(err, &semantic) && semantic.JSONPointer != "" && semantic.GoType != nil:
		field := "params." + semantic.JSONPointer.LastToken()
		if t := semantic.GoType; t.Kind() == reflect.Float64 || t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Float64 {
			return &ValidationError{field, "must be a number"}
		}
		return &ValidationError{field, "must be a whole number"}
	default:
		return &ValidationError{"params", "must be a JSON object"}
	}
}

// Params returns the strategy's parameters as JSON, defaults filled in: what
// is stored and shown back to the user.
func (s Strategy) Params() json.RawMessage {
	var v any
	switch s.Kind {
	case KindSMACrossover:
		v = smaParams{FastWindow: &s.FastWindow, SlowWindow: &s.SlowWindow}
	case KindRSIReversion:
		v = rsiParams{Period: &s.Period, Oversold: &s.Oversold, Overbought: &s.Overbought}
	default:
		return json.RawMessage(`{}`)
	}
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: plain numbers
		return json.RawMessage(`{}`)
	}
	return b
}

// CheckBars returns an *InsufficientDataError when n bars are fewer than
// the strategy needs (BarsNeeded). The engine checks a series with it
// before running, and the API a date range before queueing: one rule.
func (s Strategy) CheckBars(n int) error {
	if need := s.BarsNeeded(); n < need {
		return &InsufficientDataError{Need: need, Have: n}
	}
	return nil
}

// BarsNeeded is how many bars the strategy needs before its first signal.
func (s Strategy) BarsNeeded() int {
	switch s.Kind {
	case KindSMACrossover:
		return s.SlowWindow
	case KindRSIReversion:
		return s.Period + 1
	default:
		return 1
	}
}
