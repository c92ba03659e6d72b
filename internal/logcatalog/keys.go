package logcatalog

import (
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/tracecontext"
)

// Value is the JSON Schema of a key's value, in the few words of JSON Schema
// (draft 2020-12) the contract needs. docs/log-schema.json is generated from
// it, and the tests check every line against that schema.
type Value struct {
	// Type is the JSON type: string, integer, number, boolean, array or
	// object. Empty when Const or Enum says it all.
	Type string `json:"type,omitempty"`
	// Const is the only value allowed: true for a flag that is present only
	// when it is set.
	Const any `json:"const,omitempty"`
	// Enum lists the allowed strings.
	Enum []string `json:"enum,omitempty"`
	// Pattern is the regular expression a string matches.
	Pattern   string `json:"pattern,omitempty"`
	MinLength int    `json:"minLength,omitempty"`
	MaxLength int    `json:"maxLength,omitempty"`
	// Minimum and Maximum bound a number; nil for no bound.
	Minimum *int `json:"minimum,omitempty"`
	Maximum *int `json:"maximum,omitempty"`
	// MinItems and Items describe an array.
	MinItems int    `json:"minItems,omitempty"`
	Items    *Value `json:"items,omitempty"`
	// Required and Properties describe an object.
	Required   []string         `json:"required,omitempty"`
	Properties map[string]Value `json:"properties,omitempty"`
	// AnyOf lists the shapes a key of more than one meaning may take.
	AnyOf []Value `json:"anyOf,omitempty"`
}

// KeySpec is one key of the log contract.
type KeySpec struct {
	Name string
	// Value is what the key's value looks like.
	Value Value
	// Doc says what the value means.
	Doc string
}

// RiverActions are the values of river_action: store's Reason constants,
// what River did to a job that the reconciliation brings its run in step
// with.
func RiverActions() []string {
	return []string{"job_cancelled", "job_deleted", "job_discarded", "job_rescued", "job_retried"}
}

// Common shapes of values.
var (
	aString    = Value{Type: "string"}
	aFlag      = Value{Const: true}
	aBoolean   = Value{Type: "boolean"}
	aNumber    = Value{Type: "number"}
	anID       = Value{Type: "string", MinLength: 1, MaxLength: 128}
	aCount     = Value{Type: "integer", Minimum: new(0)}
	aNonEmpty  = Value{Type: "string", MinLength: 1}
	aDuration  = Value{Type: "integer", Minimum: new(0)}
	aTraceback = Value{
		Type: "array", MinItems: 1,
		Items: &Value{
			Type:     "object",
			Required: []string{"function", "file", "line"},
			Properties: map[string]Value{
				"function": aString,
				"file":     aString,
				"line":     {Type: "integer", Minimum: new(0)},
			},
		},
	}
)

// aCorrelationID is a correlation ID: one the server reused of a client's
// (obs.ValidCorrelationID), or made itself.
var aCorrelationID = Value{Type: "string", Pattern: `^[A-Za-z0-9._:+=/@-]{1,128}$`}

// Keys is every key a line of the service may carry, other than a library's
// own fields on its lines (EventSpec.Library).
var Keys = []KeySpec{
	{
		obs.KeyTimestamp,
		Value{Type: "string", Pattern: `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$`},
		"when the line was written: UTC, RFC 3339 with exactly six fractional digits and Z, so that sorting the strings sorts by time",
	},
	{obs.KeyLevel, Value{Enum: []string{"debug", "info", "warn", "error"}}, "the line's level"},
	{obs.KeyEvent, Value{}, "what happened: a name from the event catalog"},
	{
		obs.KeyService,
		Value{Type: "string", Pattern: `^[a-z][a-z0-9-]*$`},
		"the process: server, worker, or a one-shot command (migrate, create-api-key, revoke-api-key)",
	},

	{
		obs.KeyCorrelationID,
		aCorrelationID,
		"the request's correlation ID, on every line of the request and of the job it created",
	},
	{
		obs.KeyTraceID,
		Value{Type: "string", Pattern: `^[0-9a-f]{32}$`},
		"the W3C trace ID of the request's traceparent, on every line of the request and of the job it created",
	},
	{
		obs.KeySpanID,
		Value{Type: "string", Pattern: `^[0-9a-f]{16}$`},
		"this process's span: the request's (the parent of the traceparent the response and the job carry), or the job attempt's",
	},
	{obs.KeyUserID, anID, "the user whose API key the request carried, or whose run the job works on"},
	{obs.KeyStrategyID, anID, "the strategy"},
	{obs.KeyRunID, anID, "the backtest run"},
	{obs.KeySweepID, anID, "the sweep the run belongs to (POST /sweeps)"},
	{obs.KeySucceededCount, aCount, "how many of the sweep's runs succeeded"},
	{obs.KeyFailedCount, aCount, "how many of the sweep's runs failed"},
	{obs.KeyCancelledCount, aCount, "how many of the sweep's runs were cancelled"},
	{obs.KeyJobID, Value{Type: "integer", Minimum: new(1)}, "the River job"},
	{obs.KeyJobKind, aNonEmpty, "the River job's kind: backtest, reconcile_runs for the periodic reconciliation, " +
		"or sweep_idempotency_keys for the periodic deletion of expired idempotency keys"},
	{obs.KeyAttempt, Value{Type: "integer", Minimum: new(0)}, "the River job's attempt, from 1"},

	{obs.KeyMethod, aString, "the request's HTTP method"},
	{obs.KeyPath, aString, "the request's path, without the query string"},
	{obs.KeyRoute, aString, "the matched route's template (/backtests/{id}); empty when no route matched"},
	{
		obs.KeyStatusCode,
		Value{Type: "integer", Minimum: new(100), Maximum: new(599)},
		"the response's status; 499 when the client went away before its answer",
	},
	{obs.KeyDurationMS, aDuration, "how long the request or the attempt took, in whole milliseconds"},
	{
		obs.KeyReason,
		Value{Enum: []string{
			obs.RejectEmpty, obs.RejectTooLong, obs.RejectInvalid, obs.RejectMultiple,
			tracecontext.RejectMalformed, tracecontext.RejectUnsupportedVersion, tracecontext.RejectZeroTraceID, tracecontext.RejectZeroParentID,
		}},
		"why a client's X-Correlation-ID was replaced, or its traceparent ignored",
	},
	{
		obs.KeyRiverAction,
		Value{Enum: RiverActions()},
		"what River did to a run's job without a worker to report it, which the reconciliation found",
	},
	{obs.KeyHeaderLength, aCount, "the length in bytes of the X-Correlation-ID that was replaced, or of the traceparent ignored (never its value)"},
	{obs.KeyAddr, aString, "the address the server listens on, or the worker's metrics listener"},
	{obs.KeyConnectionsClosed, aCount, "how many connections a stopping server closed when SHUTDOWN_TIMEOUT ran out"},
	{obs.KeyRiverUI, aBoolean, "whether the server serves River UI"},
	{obs.KeyFaultInject, aFlag, "the worker was built with fault injection, a test setting"},
	{obs.KeyClientIP, aNonEmpty, "the client's address: the connection's peer, or the client X-Forwarded-For names when the peer is a trusted proxy"},

	{obs.KeyError, aString, "the error's message"},
	{obs.KeyErrorType, aNonEmpty, "the Go type of the innermost error, or of a panic's value"},
	{obs.KeyErrorCode, Value{Type: "string", Pattern: "^[a-z][a-z0-9_]*$"}, "the failure's stable code, as the run's error has it (docs/api.md lists them)"},
	{obs.KeyTraceback, aTraceback, "the stack, innermost frame first, files named by their package path; long ones keep their ends around a frame that counts what was skipped"},
	{obs.KeyPanic, aFlag, "the error is a recovered panic"},
	{obs.KeyWillRetry, aBoolean, "whether River will try the job again"},

	{obs.KeyQueueWaitMS, aDuration, "how long the job waited in the queue for this attempt, in whole milliseconds"},
	{obs.KeyProgressPct, Value{Type: "integer", Minimum: new(0), Maximum: new(100)}, "how much of the backtest's bars are done, in percent"},
	{obs.KeyQueues, Value{Type: "array", Items: &aString}, "the River queues the worker works"},
	{obs.KeyConcurrency, Value{Type: "integer", Minimum: new(1)}, "how many jobs the worker runs at once"},
	{obs.KeyMaxAttempts, Value{Type: "integer", Minimum: new(1)}, "how many attempts the job gets"},
	{obs.KeyTotalReturn, aNumber, "the backtest's total return, as a fraction"},
	{obs.KeyCAGR, aNumber, "the backtest's compound annual growth rate, as a fraction"},
	{obs.KeyMaxDrawdown, Value{Type: "number", Minimum: new(0), Maximum: new(1)}, "the backtest's largest fall from a peak, as a fraction"},
	{obs.KeySharpe, aNumber, "the backtest's Sharpe ratio"},
	{obs.KeyTrades, aCount, "how many trades the backtest made"},
	{obs.KeyBars, aCount, "how many daily bars the backtest ran over"},
	{obs.KeyFinalEquity, aNumber, "the backtest's final equity"},
	{obs.KeyStatus, aString, "a state: of a run, of a migration, or of the database"},
	{obs.KeyMessage, aString, "a library's own text"},
	{
		obs.KeyVersion,
		Value{AnyOf: []Value{{Type: "integer", Minimum: new(0)}, aNonEmpty}},
		"an integer on the migrate lines, a migration's version; a string on server_started and worker_started, " +
			"the build's version (a release tag, Go's pseudo-version of the commit, or (devel))",
	},
	{obs.KeyApplied, aCount, "how many migrations were applied"},
	{obs.KeyName, aString, "a user's or a migration's name"},
	{obs.KeyLineTruncate, aFlag, "the line was too long and was cut to its header and context fields"},
	{obs.KeyLineBytes, Value{Type: "integer"}, "the length the cut line would have had"},

	{obs.KeyAPIKeyID, anID, "the API key's ID"},
	{obs.KeyAPIKeyPrefix, Value{Type: "string", MaxLength: 16}, "the API key's first 11 characters, which name it and are not secret; empty for keys made before prefixes were kept"},
	{obs.KeyDropped, aCount, "how many cached API keys the server forgot"},
	{
		obs.KeyOriginalCorrID,
		aCorrelationID,
		"the correlation ID of the request whose response an idempotent replay returned",
	},
	{obs.KeyDeleted, aCount, "how many rows a maintenance job deleted"},
	{obs.KeyRunCount, aCount, "how many runs a sweep made"},
	{obs.KeySkippedCount, aCount, "how many of a sweep's combinations the strategy refused, left out"},
}
