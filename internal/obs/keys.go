package obs

// Keys every line carries. They are written by the Handler itself, never by
// call sites.
const (
	KeyTimestamp = "timestamp"
	KeyLevel     = "level"
	KeyEvent     = "event"
	KeyService   = "service"
)

// Context keys: the fields that tie a line to a request or a job.
const (
	KeyCorrelationID = "correlation_id"
	KeyUserID        = "user_id"
	KeyStrategyID    = "strategy_id"
	KeyRunID         = "run_id"
	KeyJobID         = "job_id"
	KeyJobKind       = "job_kind"
	KeyAttempt       = "attempt"
)

// Keys of request lines.
const (
	KeyMethod       = "method"
	KeyPath         = "path"
	KeyRoute        = "route"
	KeyStatusCode   = "status_code"
	KeyDurationMS   = "duration_ms"
	KeyReason       = "reason"
	KeyHeaderLength = "header_length"
	KeyAddr         = "addr"
	// KeyConnectionsClosed counts the connections a stopping server closed
	// because SHUTDOWN_TIMEOUT ran out before they finished.
	KeyConnectionsClosed = "connections_closed"
	KeyRiverUI           = "riverui"
	KeyFaultInject       = "fault_injection"
	KeyClientIP          = "client_ip"
)

// Keys of error lines.
const (
	KeyError     = "error"
	KeyErrorType = "error_type"
	KeyTraceback = "traceback"
	KeyPanic     = "panic"
	KeyWillRetry = "will_retry"
)

// Keys of job and worker lines.
const (
	KeyQueueWaitMS  = "queue_wait_ms"
	KeyProgressPct  = "progress_pct"
	KeyQueues       = "queues"
	KeyConcurrency  = "concurrency"
	KeyMaxAttempts  = "max_attempts"
	KeyTotalReturn  = "total_return"
	KeyCAGR         = "cagr"
	KeyMaxDrawdown  = "max_drawdown"
	KeySharpe       = "sharpe"
	KeyTrades       = "trades"
	KeyBars         = "bars"
	KeyFinalEquity  = "final_equity"
	KeyStatus       = "status"
	KeyMessage      = "message"
	KeyVersion      = "version"
	KeyApplied      = "applied"
	KeyName         = "name"
	KeyLineTruncate = "line_truncated"
	KeyLineBytes    = "line_bytes"
)

// Keys of API key lines.
const (
	KeyAPIKeyID     = "api_key_id"
	KeyAPIKeyPrefix = "api_key_prefix"
	KeyDropped      = "dropped"
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
}

// KeySpec is one key of the log contract.
type KeySpec struct {
	Name string
	// Value is what the key's value looks like.
	Value Value
	// Doc says what the value means.
	Doc string
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

// Keys is every key a line of the service may carry, other than a library's
// own fields on its lines (EventSpec.Library).
var Keys = []KeySpec{
	{
		KeyTimestamp,
		Value{Type: "string", Pattern: `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$`},
		"when the line was written: UTC, RFC 3339 with exactly six fractional digits and Z, so that sorting the strings sorts by time",
	},
	{KeyLevel, Value{Enum: []string{"debug", "info", "warn", "error"}}, "the line's level"},
	{KeyEvent, Value{}, "what happened: a name from the event catalog"},
	{
		KeyService,
		Value{Type: "string", Pattern: `^[a-z][a-z0-9-]*$`},
		"the process: server, worker, or a one-shot command (migrate, create-api-key, revoke-api-key)",
	},

	{
		KeyCorrelationID,
		Value{Type: "string", Pattern: `^[A-Za-z0-9._:+=/@-]{1,128}$`},
		"the request's correlation ID, on every line of the request and of the job it created",
	},
	{KeyUserID, anID, "the user whose API key the request carried, or whose run the job works on"},
	{KeyStrategyID, anID, "the strategy"},
	{KeyRunID, anID, "the backtest run"},
	{KeyJobID, Value{Type: "integer", Minimum: new(1)}, "the River job"},
	{KeyJobKind, aNonEmpty, "the River job's kind: backtest, or reconcile_runs for the periodic reconciliation"},
	{KeyAttempt, Value{Type: "integer", Minimum: new(0)}, "the River job's attempt, from 1"},

	{KeyMethod, aString, "the request's HTTP method"},
	{KeyPath, aString, "the request's path, without the query string"},
	{KeyRoute, aString, "the matched route's template (/backtests/{id}); empty when no route matched"},
	{
		KeyStatusCode,
		Value{Type: "integer", Minimum: new(100), Maximum: new(599)},
		"the response's status; 499 when the client went away before its answer",
	},
	{KeyDurationMS, aDuration, "how long the request or the attempt took, in whole milliseconds"},
	{
		KeyReason,
		Value{Enum: []string{RejectEmpty, RejectTooLong, RejectInvalid, RejectMultiple}},
		"why a client's X-Correlation-ID was replaced",
	},
	{KeyHeaderLength, aCount, "the length in bytes of the X-Correlation-ID that was replaced (never its value)"},
	{KeyAddr, aString, "the address the server listens on"},
	{KeyConnectionsClosed, aCount, "how many connections a stopping server closed when SHUTDOWN_TIMEOUT ran out"},
	{KeyRiverUI, aBoolean, "whether the server serves River UI"},
	{KeyFaultInject, aFlag, "the worker was built with fault injection, a test setting"},
	{KeyClientIP, aNonEmpty, "the client's address: the connection's peer, or the client X-Forwarded-For names when the peer is a trusted proxy"},

	{KeyError, aString, "the error's message"},
	{KeyErrorType, aNonEmpty, "the Go type of the innermost error, or of a panic's value"},
	{KeyTraceback, aTraceback, "the stack, innermost frame first, files named by their package path; long ones keep their ends around a frame that counts what was skipped"},
	{KeyPanic, aFlag, "the error is a recovered panic"},
	{KeyWillRetry, aBoolean, "whether River will try the job again"},

	{KeyQueueWaitMS, aDuration, "how long the job waited in the queue for this attempt, in whole milliseconds"},
	{KeyProgressPct, Value{Type: "integer", Minimum: new(0), Maximum: new(100)}, "how much of the backtest's bars are done, in percent"},
	{KeyQueues, Value{Type: "array", Items: &aString}, "the River queues the worker works"},
	{KeyConcurrency, Value{Type: "integer", Minimum: new(1)}, "how many jobs the worker runs at once"},
	{KeyMaxAttempts, Value{Type: "integer", Minimum: new(1)}, "how many attempts the job gets"},
	{KeyTotalReturn, aNumber, "the backtest's total return, as a fraction"},
	{KeyCAGR, aNumber, "the backtest's compound annual growth rate, as a fraction"},
	{KeyMaxDrawdown, Value{Type: "number", Minimum: new(0), Maximum: new(1)}, "the backtest's largest fall from a peak, as a fraction"},
	{KeySharpe, aNumber, "the backtest's Sharpe ratio"},
	{KeyTrades, aCount, "how many trades the backtest made"},
	{KeyBars, aCount, "how many daily bars the backtest ran over"},
	{KeyFinalEquity, aNumber, "the backtest's final equity"},
	{KeyStatus, aString, "a state: of a run, of a migration, or of the database"},
	{KeyMessage, aString, "a library's own text"},
	{KeyVersion, Value{Type: "integer", Minimum: new(0)}, "a migration's version"},
	{KeyApplied, aCount, "how many migrations were applied"},
	{KeyName, aString, "a user's or a migration's name"},
	{KeyLineTruncate, aFlag, "the line was too long and was cut to its header and context fields"},
	{KeyLineBytes, Value{Type: "integer"}, "the length the cut line would have had"},

	{KeyAPIKeyID, anID, "the API key's ID"},
	{KeyAPIKeyPrefix, Value{Type: "string", MaxLength: 16}, "the API key's first 11 characters, which name it and are not secret; empty for keys made before prefixes were kept"},
	{KeyDropped, aCount, "how many cached API keys the server forgot"},
}
