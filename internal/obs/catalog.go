package obs

import "log/slog"

//go:generate go run ./gen

// Events: the value of KeyEvent. Names are stable once shipped; add new ones
// instead of renaming. Each has its entry in Events.
const (
	EventServerStarted  = "server_started"
	EventServerStopping = "server_stopping"
	EventServerStopped  = "server_stopped"
	// EventServerShutdownTimedOut: SHUTDOWN_TIMEOUT ran out with
	// connections still open; they were closed.
	EventServerShutdownTimedOut = "server_shutdown_timed_out"
	EventRequestFinished        = "request_finished"
	EventRequestPanicked        = "request_panicked"
	EventCorrelationIDRejected  = "correlation_id_rejected"
	EventBacktestEnqueued       = "backtest_enqueued"
	EventStrategyCreated        = "strategy_created"
	EventRequestFailed          = "request_failed"
	EventWorkerStarted          = "worker_started"
	EventWorkerStopping         = "worker_stopping"
	EventWorkerStopped          = "worker_stopped"
	EventJobStarted             = "job_started"
	EventJobProgress            = "job_progress"
	EventJobCompleted           = "job_completed"
	EventJobFailed              = "job_failed"
	EventJobInterrupted         = "job_interrupted"
	EventRunUpdateFailed        = "run_update_failed"
	EventRunFailed              = "run_failed"
	EventMigrationsApplied      = "migrations_applied"
	EventMigrationStatus        = "migration_status"
	EventAPIKeyCreated          = "api_key_created"
	EventAPIKeyRevoked          = "api_key_revoked"
	EventAPIKeyInvalidated      = "api_key_invalidated"
	EventKeyListenerStarted     = "api_key_listener_started"
	EventKeyListenerFailed      = "api_key_listener_failed"
	EventRiverLog               = "river_log"
	EventHTTPServerLog          = "http_server_log"
	EventGooseLog               = "goose_log"
	EventRiverUILog             = "riverui_log"
)

// Scope says which context fields (bound with WithAttrs) an event's lines
// carry besides the keys its EventSpec lists.
type Scope int

const (
	// ScopeNone lines carry only the keys listed.
	ScopeNone Scope = iota
	// ScopeRequest lines, written while handling a request, carry
	// correlation_id, and user_id once the API key is checked.
	ScopeRequest
	// ScopeJob lines, written while working a job, carry correlation_id,
	// job_id, job_kind and attempt; a backtest's (job_kind RunJobKind) also
	// user_id, strategy_id and run_id.
	ScopeJob
)

// RunJobKind is the kind of the jobs whose lines carry a run's fields: the
// backtest job's.
const RunJobKind = "backtest"

// String names the scope as the docs' events table does.
func (s Scope) String() string {
	switch s {
	case ScopeRequest:
		return "request"
	case ScopeJob:
		return "job"
	default:
		return ""
	}
}

// Keys returns the context keys every line of the scope carries, and those
// it may carry.
func (s Scope) Keys() (required, optional []string) {
	switch s {
	case ScopeRequest:
		return []string{KeyCorrelationID}, []string{KeyUserID}
	case ScopeJob:
		return []string{KeyCorrelationID, KeyJobID, KeyJobKind, KeyAttempt}, RunKeys()
	default:
		return nil, nil
	}
}

// RunKeys returns the keys that a job's lines carry when it works on a run
// (job_kind RunJobKind).
func RunKeys() []string {
	return []string{KeyUserID, KeyStrategyID, KeyRunID}
}

// HeaderKeys returns the keys every line carries.
func HeaderKeys() []string {
	return []string{KeyTimestamp, KeyLevel, KeyEvent, KeyService}
}

// TruncationKeys returns the keys of a line cut to its minimal form: such a
// line keeps its header and context fields only, so the rules of its event
// do not apply to it.
func TruncationKeys() []string {
	return []string{KeyLineTruncate, KeyLineBytes}
}

// EventSpec is one event of the catalog: who writes it, at which levels, and
// with which keys. docs/logging.md's events table and docs/log-schema.json
// are generated from Events (go generate ./internal/obs), and the tests check
// every line they see against them.
type EventSpec struct {
	Name string
	// Services are the processes that write it.
	Services []string
	// Levels are the levels it is written at.
	Levels []slog.Level
	// LevelNote says when which level applies.
	LevelNote string
	// Scope names the context fields its lines carry.
	Scope Scope
	// Required keys are on every line of the event; Optional ones on some.
	Required, Optional []string
	// RequiredAtError keys are on the event's lines at error level.
	RequiredAtError []string
	// Notes explain a key's value on this event, for the docs.
	Notes map[string]string
	// Library lines come from a library's logger (NewLibraryLogger): any
	// level, the library's text in KeyMessage, its own fields besides.
	Library bool
	// When says what happened.
	When string
}

// Events is the catalog: every event the service writes. An event written
// without its required keys, or with a key it does not list, fails the
// tests.
var Events = catalog()

func catalog() []EventSpec {
	var (
		server      = []string{"server"}
		worker      = []string{"worker"}
		anyLevel    = []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
		info        = []slog.Level{slog.LevelInfo}
		warn        = []slog.Level{slog.LevelWarn}
		errorOnly   = []slog.Level{slog.LevelError}
		warnOrError = []slog.Level{slog.LevelWarn, slog.LevelError}
		lifecycle   = []slog.Level{slog.LevelDebug, slog.LevelInfo}
		maintenance = "debug for maintenance jobs, such as `reconcile_runs`"
		errorKeys   = []string{KeyError, KeyErrorType}
		workerKeys  = []string{KeyQueues, KeyConcurrency}
	)
	return []EventSpec{
		{
			Name: EventServerStarted, Services: server, Levels: info,
			Required: []string{KeyAddr, KeyRiverUI},
			When:     "listening",
		},
		{
			Name: EventServerStopping, Services: server, Levels: info,
			Required: []string{KeyAddr},
			When:     "SIGTERM received",
		},
		{
			Name: EventServerStopped, Services: server, Levels: info,
			Required: []string{KeyAddr},
			When:     "shutdown finished",
		},
		{
			Name: EventServerShutdownTimedOut, Services: server, Levels: warn,
			Required: []string{KeyAddr, KeyConnectionsClosed},
			When:     "`SHUTDOWN_TIMEOUT` ran out with connections still open (clients too slow to finish); they were closed and the server exits 0",
		},
		{
			Name: EventCorrelationIDRejected, Services: server, Levels: warn, Scope: ScopeRequest,
			Required: []string{KeyReason, KeyHeaderLength},
			When:     "a client's `X-Correlation-ID` was replaced (never logs the value)",
		},
		{
			Name: EventRequestFinished, Services: server, Levels: []slog.Level{slog.LevelInfo, slog.LevelError},
			LevelNote: "error for a 5xx", Scope: ScopeRequest,
			Required: []string{KeyMethod, KeyPath, KeyRoute, KeyStatusCode, KeyDurationMS, KeyClientIP},
			Notes:    map[string]string{KeyStatusCode: "499: the client went away first"},
			When:     "every request, exactly once, 404 and 405 included",
		},
		{
			Name: EventRequestPanicked, Services: server, Levels: errorOnly, Scope: ScopeRequest,
			Required: []string{KeyError, KeyErrorType, KeyTraceback, KeyPanic},
			When:     "a handler panicked; the client got a 500 problem",
		},
		{
			Name: EventRequestFailed, Services: server, Levels: warnOrError, LevelNote: "warn from `/readyz`",
			Scope: ScopeRequest, Required: errorKeys, RequiredAtError: []string{KeyTraceback},
			When: "the request failed inside the server (500, or 503 when the database is unreachable)",
		},
		{
			Name: EventStrategyCreated, Services: server, Levels: info, Scope: ScopeRequest,
			Required: []string{KeyUserID, KeyStrategyID},
			When:     "`POST /strategies`",
		},
		{
			Name: EventBacktestEnqueued, Services: server, Levels: info, Scope: ScopeRequest,
			Required: []string{KeyUserID, KeyRunID, KeyJobID, KeyStrategyID},
			When:     "`POST /backtests`, after the run and its job committed",
		},
		{
			Name: EventWorkerStarted, Services: worker, Levels: []slog.Level{slog.LevelInfo, slog.LevelWarn}, LevelNote: "warn with `fault_injection`",
			Required: workerKeys, Optional: []string{KeyFaultInject},
			When: "started",
		},
		{
			Name: EventWorkerStopping, Services: worker, Levels: info,
			Required: workerKeys,
			When:     "SIGTERM received",
		},
		{
			Name: EventWorkerStopped, Services: worker, Levels: info,
			Required: workerKeys,
			When:     "stopped",
		},
		{
			Name: EventJobStarted, Services: worker, Levels: lifecycle, LevelNote: maintenance, Scope: ScopeJob,
			Required: []string{KeyQueueWaitMS, KeyMaxAttempts},
			When:     "an attempt begins",
		},
		{
			Name: EventJobProgress, Services: worker, Levels: info, Scope: ScopeJob,
			Required: []string{KeyProgressPct},
			When:     "each tenth of the bars (10, 20, ..., 100)",
		},
		{
			Name: EventJobCompleted, Services: worker, Levels: lifecycle, LevelNote: maintenance, Scope: ScopeJob,
			Required: []string{KeyDurationMS},
			Optional: []string{KeyBars, KeyFinalEquity, KeyTotalReturn, KeyCAGR, KeyMaxDrawdown, KeySharpe, KeyTrades},
			Notes:    map[string]string{KeyBars: "this and the rest: a backtest's result"},
			When:     "the attempt succeeded",
		},
		{
			Name: EventJobFailed, Services: worker, Levels: warnOrError, LevelNote: "warn if `will_retry`",
			Scope:    ScopeJob,
			Required: []string{KeyDurationMS, KeyError, KeyErrorType, KeyTraceback, KeyWillRetry},
			Optional: []string{KeyPanic},
			When:     "an attempt failed; without retry the run is now `failed`",
		},
		{
			Name: EventJobInterrupted, Services: worker, Levels: warn, Scope: ScopeJob,
			Required: []string{KeyDurationMS, KeyError},
			When:     "shutdown cancelled the attempt; the job and its run are back in the queue",
		},
		{
			Name: EventRunUpdateFailed, Services: worker, Levels: warnOrError,
			LevelNote: "warn for a progress save, error for a change of status", Scope: ScopeJob,
			Required: []string{KeyError, KeyStatus},
			Notes:    map[string]string{KeyStatus: "the status the run was to have"},
			When:     "the run row could not be updated (the job goes on)",
		},
		{
			Name: EventRunFailed, Services: worker, Levels: errorOnly,
			Required: []string{
				KeyCorrelationID, KeyUserID, KeyStrategyID, KeyRunID, KeyJobID,
				KeyAttempt, KeyError, KeyErrorType,
			},
			Notes: map[string]string{
				KeyCorrelationID: "the run's, like the run's other fields",
				KeyErrorType:     "`job_discarded`, `job_cancelled` or `job_lost`",
			},
			When: "the reconciliation marked a run failed whose job ended without it (a worker crashed on its last attempt)",
		},
		{
			Name: EventMigrationsApplied, Services: []string{"migrate"}, Levels: info,
			Optional: []string{KeyApplied, KeyVersion, KeyStatus},
			Notes:    map[string]string{KeyStatus: "`database_created`"},
			When:     "`server migrate up` / `down-to`: `applied` and `version`, or `status` when it created the database",
		},
		{
			Name: EventMigrationStatus, Services: []string{"migrate"}, Levels: info,
			Required: []string{KeyVersion, KeyName, KeyStatus},
			When:     "`server migrate status`, one line per migration",
		},
		{
			Name: EventAPIKeyCreated, Services: []string{"create-api-key"}, Levels: info,
			Required: []string{KeyUserID, KeyName, KeyAPIKeyID, KeyAPIKeyPrefix},
			When: "a key was issued (the key itself goes to stdout, never to the log; its first 11 characters, " +
				"`api_key_prefix`, are not secret and name it)",
		},
		{
			Name: EventAPIKeyRevoked, Services: []string{"revoke-api-key"}, Levels: info,
			Required: []string{KeyUserID, KeyAPIKeyID, KeyAPIKeyPrefix},
			Notes:    map[string]string{KeyAPIKeyPrefix: "empty for keys made before prefixes were kept"},
			When:     "`server revoke-api-key` deleted a key",
		},
		{
			Name: EventKeyListenerStarted, Services: server, Levels: info,
			Required: []string{KeyDropped},
			Notes:    map[string]string{KeyDropped: "cached keys forgotten"},
			When:     "the server listens for deleted keys; its key cache starts afresh",
		},
		{
			Name: EventKeyListenerFailed, Services: server, Levels: warn,
			Required: []string{KeyError, KeyErrorType, KeyDropped},
			When: "the listening connection failed: keys are looked up on every request until it listens again " +
				"(retried after 1 s, doubling up to 30 s)",
		},
		{
			Name: EventAPIKeyInvalidated, Services: server, Levels: info,
			Required: []string{KeyDropped},
			Notes:    map[string]string{KeyDropped: "1 if this server had the key cached, else 0; all it had for a `TRUNCATE`"},
			When: "PostgreSQL announced a deleted key (revoked, deleted in SQL, or with its user) " +
				"and the server forgot it",
		},
		{
			Name: EventRiverLog, Services: []string{"server", "worker"}, Levels: anyLevel, Library: true,
			LevelNote: "but see below for a client that went away",
			Required:  []string{KeyMessage}, When: "a line from River",
		},
		{
			Name: EventHTTPServerLog, Services: server, Levels: anyLevel, Library: true,
			Required: []string{KeyMessage}, When: "a line from net/http's server",
		},
		{
			Name: EventGooseLog, Services: []string{"server", "worker", "migrate", "create-api-key", "revoke-api-key"},
			Levels: anyLevel, Library: true,
			Required: []string{KeyMessage}, When: "a line from goose, the migrations",
		},
		{
			Name: EventRiverUILog, Services: server, Levels: anyLevel, Library: true,
			Required: []string{KeyMessage}, When: "a line from River UI",
		},
	}
}

// LookupEvent returns the catalog's entry for name.
func LookupEvent(name string) (EventSpec, bool) {
	for _, e := range Events {
		if e.Name == name {
			return e, true
		}
	}
	return EventSpec{}, false
}

// LookupKey returns the catalog's entry for name.
func LookupKey(name string) (KeySpec, bool) {
	for _, k := range Keys {
		if k.Name == name {
			return k, true
		}
	}
	return KeySpec{}, false
}
