package logcatalog

import (
	"log/slog"
	"slices"

	"github.com/backtestd/backtestd/internal/obs"
)

//go:generate go run ./gen

// Scope says which context fields (bound with WithAttrs) an event's lines
// carry besides the keys its EventSpec lists.
type Scope int

const (
	// ScopeNone lines carry only the keys listed.
	ScopeNone Scope = iota
	// ScopeRequest lines, written while handling a request, carry
	// correlation_id, user_id once the API key is checked, and trace_id and
	// span_id when the request had a valid traceparent.
	ScopeRequest
	// ScopeJob lines, written while working a job, carry correlation_id,
	// job_id, job_kind and attempt; a backtest's (job_kind RunJobKind) also
	// user_id, strategy_id and run_id, sweep_id for a run of a sweep, and
	// trace_id and span_id when the request that created it had a valid
	// traceparent.
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
		return []string{obs.KeyCorrelationID}, append([]string{obs.KeyUserID}, TraceKeys()...)
	case ScopeJob:
		return []string{obs.KeyCorrelationID, obs.KeyJobID, obs.KeyJobKind, obs.KeyAttempt},
			append(append(RunKeys(), TraceKeys()...), obs.KeySweepID)
	default:
		return nil, nil
	}
}

// RunKeys returns the keys that a job's lines carry when it works on a run
// (job_kind RunJobKind).
func RunKeys() []string {
	return []string{obs.KeyUserID, obs.KeyStrategyID, obs.KeyRunID}
}

// TraceKeys returns the keys that a request's lines carry when it came with
// a valid W3C traceparent, and a job's lines when the request that created
// it did.
func TraceKeys() []string {
	return []string{obs.KeyTraceID, obs.KeySpanID}
}

// HeaderKeys returns the keys every line carries.
func HeaderKeys() []string {
	return []string{obs.KeyTimestamp, obs.KeyLevel, obs.KeyEvent, obs.KeyService}
}

// TruncationKeys returns the keys of a line cut to its minimal form: such a
// line keeps its header and context fields only, so the rules of its event
// do not apply to it.
func TruncationKeys() []string {
	return []string{obs.KeyLineTruncate, obs.KeyLineBytes}
}

// EventSpec is one event of the catalog: who writes it, at which levels, and
// with which keys. docs/logging.md's events table and docs/log-schema.json
// are generated from Events (go generate ./internal/logcatalog), and the tests check
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
	// level, the library's text in obs.KeyMessage, its own fields besides.
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
		maintenance = "debug for maintenance jobs, such as `reconcile_runs` and `sweep_idempotency_keys`"
		errorKeys   = []string{obs.KeyError, obs.KeyErrorType}
		workerKeys  = []string{obs.KeyQueues, obs.KeyConcurrency}
	)
	return []EventSpec{
		{
			Name: obs.EventServerStarted, Services: server, Levels: info,
			Required: []string{obs.KeyAddr, obs.KeyRiverUI, obs.KeyVersion},
			When:     "listening",
		},
		{
			Name: obs.EventServerStopping, Services: server, Levels: info,
			Required: []string{obs.KeyAddr},
			When:     "SIGTERM received",
		},
		{
			Name: obs.EventServerStopped, Services: server, Levels: info,
			Required: []string{obs.KeyAddr},
			When:     "shutdown finished",
		},
		{
			Name: obs.EventServerShutdownTimedOut, Services: server, Levels: warn,
			Required: []string{obs.KeyAddr, obs.KeyConnectionsClosed},
			When:     "`SHUTDOWN_TIMEOUT` ran out with connections still open (clients too slow to finish); they were closed and the server exits 0",
		},
		{
			Name: obs.EventCorrelationIDRejected, Services: server, Levels: warn, Scope: ScopeRequest,
			Required: []string{obs.KeyReason, obs.KeyHeaderLength},
			When:     "a client's `X-Correlation-ID` was replaced (never logs the value)",
		},
		{
			Name: obs.EventTraceparentRejected, Services: server, Levels: warn, Scope: ScopeRequest,
			Required: []string{obs.KeyReason, obs.KeyHeaderLength},
			When:     "a client's `traceparent` was ignored: the request goes on without trace_id (never logs the value)",
		},
		{
			Name: obs.EventRequestFinished, Services: server, Levels: []slog.Level{slog.LevelInfo, slog.LevelError},
			LevelNote: "error for a 5xx", Scope: ScopeRequest,
			Required: []string{obs.KeyMethod, obs.KeyPath, obs.KeyRoute, obs.KeyStatusCode, obs.KeyDurationMS, obs.KeyClientIP},
			Notes:    map[string]string{obs.KeyStatusCode: "499: the client went away first"},
			When:     "every request, exactly once, 404 and 405 included",
		},
		{
			Name: obs.EventRequestPanicked, Services: server, Levels: errorOnly, Scope: ScopeRequest,
			Required: []string{obs.KeyError, obs.KeyErrorType, obs.KeyTraceback, obs.KeyPanic},
			When:     "a handler panicked; the client got a 500 problem",
		},
		{
			Name: obs.EventRequestFailed, Services: server, Levels: warnOrError, LevelNote: "warn from `/readyz`",
			Scope: ScopeRequest, Required: errorKeys, RequiredAtError: []string{obs.KeyTraceback},
			When: "the request failed inside the server (500, or 503 when the database is unreachable)",
		},
		{
			Name: obs.EventStrategyCreated, Services: server, Levels: info, Scope: ScopeRequest,
			Required: []string{obs.KeyUserID, obs.KeyStrategyID},
			When:     "`POST /strategies`",
		},
		{
			Name: obs.EventBacktestEnqueued, Services: server, Levels: info, Scope: ScopeRequest,
			Required: []string{obs.KeyUserID, obs.KeyRunID, obs.KeyJobID, obs.KeyStrategyID},
			When:     "`POST /backtests`, after the run and its job committed",
		},
		{
			Name: obs.EventSweepEnqueued, Services: server, Levels: info, Scope: ScopeRequest,
			Required: []string{obs.KeyUserID, obs.KeySweepID, obs.KeyRunCount, obs.KeySkippedCount},
			When:     "`POST /sweeps`, after the sweep, its runs and their jobs committed",
		},
		{
			Name: obs.EventIdempotentReplay, Services: server, Levels: info, Scope: ScopeRequest,
			Required: []string{obs.KeyUserID, obs.KeyOriginalCorrID, obs.KeyStatusCode},
			Notes: map[string]string{
				obs.KeyCorrelationID: "the replaying request's; its response body carries the original's",
				obs.KeyStatusCode:    "the replayed status",
			},
			When: "a creating `POST` with an `Idempotency-Key` already used with the same body: " +
				"the stored response was replayed and nothing was created",
		},
		{
			Name: obs.EventBacktestCancelled, Services: server, Levels: info, Scope: ScopeRequest,
			Required: []string{obs.KeyUserID, obs.KeyRunID, obs.KeyJobID, obs.KeyStatus},
			When: "`POST /backtests/{id}/cancel` asked River to cancel the run's job, after it committed; `status` is " +
				"the run's: `cancelled`, or `running` (`queued` if a worker had just taken the job) until the attempt ends",
		},
		{
			Name: obs.EventWorkerStarted, Services: worker, Levels: []slog.Level{slog.LevelInfo, slog.LevelWarn}, LevelNote: "warn with `fault_injection`",
			Required: append(slices.Clone(workerKeys), obs.KeyVersion), Optional: []string{obs.KeyFaultInject},
			When: "started",
		},
		{
			Name: obs.EventWorkerStopping, Services: worker, Levels: info,
			Required: workerKeys,
			When:     "SIGTERM received",
		},
		{
			Name: obs.EventWorkerStopped, Services: worker, Levels: info,
			Required: workerKeys,
			When:     "stopped",
		},
		{
			Name: obs.EventMetricsListening, Services: worker, Levels: info,
			Required: []string{obs.KeyAddr},
			When:     "the worker serves `GET /metrics` on `METRICS_ADDR`",
		},
		{
			Name: obs.EventJobStarted, Services: worker, Levels: lifecycle, LevelNote: maintenance, Scope: ScopeJob,
			Required: []string{obs.KeyQueueWaitMS, obs.KeyMaxAttempts},
			When:     "an attempt begins",
		},
		{
			Name: obs.EventJobProgress, Services: worker, Levels: info, Scope: ScopeJob,
			Required: []string{obs.KeyProgressPct},
			When:     "each tenth of the bars (10, 20, ..., 100)",
		},
		{
			Name: obs.EventJobCompleted, Services: worker, Levels: lifecycle, LevelNote: maintenance, Scope: ScopeJob,
			Required: []string{obs.KeyDurationMS},
			Optional: []string{
				obs.KeyBars, obs.KeyFinalEquity, obs.KeyTotalReturn, obs.KeyCAGR, obs.KeyMaxDrawdown, obs.KeySharpe, obs.KeyTrades,
				obs.KeyDeleted,
			},
			Notes: map[string]string{
				obs.KeyBars:    "this and the rest but `deleted`: a backtest's result",
				obs.KeyDeleted: "`sweep_idempotency_keys`: how many expired keys it deleted",
			},
			When: "the attempt succeeded",
		},
		{
			Name: obs.EventJobFailed, Services: worker, Levels: warnOrError,
			LevelNote: "warn if `will_retry`, or if a cancel asked meanwhile stops the retry", Scope: ScopeJob,
			Required: []string{obs.KeyDurationMS, obs.KeyError, obs.KeyErrorType, obs.KeyErrorCode, obs.KeyTraceback, obs.KeyWillRetry},
			Optional: []string{obs.KeyPanic},
			When: "an attempt failed; the run is now `retrying` (with `next_attempt_at`), or `failed` without retry " +
				"(`cancelled` if a cancel was asked meanwhile)",
		},
		{
			Name: obs.EventJobCancelled, Services: worker, Levels: info, Scope: ScopeJob,
			Required: []string{obs.KeyDurationMS, obs.KeyError},
			Notes:    map[string]string{obs.KeyError: "what the attempt returned when it stopped"},
			When:     "a cancel ended the attempt (the API's, River UI's: River's `JobCancel`); the run is now `cancelled`",
		},
		{
			Name: obs.EventStaleAttempt, Services: worker, Levels: warn, Scope: ScopeJob,
			Required: []string{obs.KeyStatus, obs.KeyError},
			Notes: map[string]string{
				obs.KeyStatus: "what the refused write would have made the run",
				obs.KeyError:  "the refusal, with the run's status and attempt",
			},
			When: "an attempt that is no longer the run's (River rescued its job from this worker, presumed dead, " +
				"and another attempt owns the run) tried to write; nothing changed, the attempt ends",
		},
		{
			Name: obs.EventJobInterrupted, Services: worker, Levels: warn, Scope: ScopeJob,
			Required: []string{obs.KeyDurationMS, obs.KeyError},
			When:     "shutdown cancelled the attempt; the job and its run are back in the queue",
		},
		{
			Name: obs.EventRunUpdateFailed, Services: worker, Levels: warnOrError,
			LevelNote: "warn for a progress save, error for a change of status", Scope: ScopeJob,
			Required: []string{obs.KeyError, obs.KeyStatus},
			Notes:    map[string]string{obs.KeyStatus: "the status the run was to have"},
			When:     "the run row could not be updated (the job goes on)",
		},
		{
			Name: obs.EventRunFailed, Services: worker, Levels: errorOnly,
			Required: []string{
				obs.KeyCorrelationID, obs.KeyUserID, obs.KeyStrategyID, obs.KeyRunID, obs.KeyJobID,
				obs.KeyAttempt, obs.KeyError, obs.KeyErrorType, obs.KeyErrorCode,
			},
			Optional: []string{obs.KeySweepID},
			Notes: map[string]string{
				obs.KeyCorrelationID: "the run's, like the run's other fields",
				obs.KeyErrorType:     "`job_discarded`, or `job_cancelled` for a permanent failure the worker could not write",
			},
			When: "the reconciliation marked a run failed whose job ended without it (a worker crashed on its last attempt)",
		},
		{
			Name: obs.EventRunReconciled, Services: worker, Levels: []slog.Level{slog.LevelInfo, slog.LevelWarn},
			LevelNote: "warn for `job_rescued`",
			Required: []string{
				obs.KeyCorrelationID, obs.KeyUserID, obs.KeyStrategyID, obs.KeyRunID, obs.KeyJobID,
				obs.KeyAttempt, obs.KeyStatus, obs.KeyRiverAction,
			},
			Optional: []string{obs.KeySweepID, obs.KeyErrorCode, obs.KeyError},
			Notes: map[string]string{
				obs.KeyCorrelationID: "the run's, like the run's other fields",
				obs.KeyStatus:        "the run's status now",
				obs.KeyRiverAction: "`job_cancelled`, `job_deleted` (in River: the run is `cancelled`), `job_retried` " +
					"(River UI's Retry: `queued`), `job_rescued` (a worker lost: `retrying`)",
			},
			When: "the reconciliation brought a run in step with what River did to its job without a worker to report it",
		},
		{
			Name: obs.EventSweepFinished, Services: []string{"worker", "server"}, Levels: info,
			Required: []string{
				obs.KeyCorrelationID, obs.KeyUserID, obs.KeySweepID,
				obs.KeySucceededCount, obs.KeyFailedCount, obs.KeyCancelledCount, obs.KeyDurationMS,
			},
			Notes: map[string]string{
				obs.KeyCorrelationID: "the sweep's, which all its runs share",
				obs.KeyDurationMS:    "from the sweep's creation to its last run's end",
			},
			When: "the last run of a sweep reached a final status, once per sweep: logged by the worker that ended it, " +
				"the reconciliation, or the server for a `POST /sweeps/{id}/cancel` (or `POST /backtests/{id}/cancel` of its " +
				"last run) that ended it; the counts add up to its `run_count`",
		},
		{
			Name: obs.EventSweepFinishFailed, Services: worker, Levels: warn, Scope: ScopeJob,
			Required: errorKeys,
			When: "the end of a sweep's run could not check whether the sweep is finished (the run's own status is " +
				"written); the reconciliation finishes the sweep and logs `sweep_finished` if it was the last",
		},
		{
			Name: obs.EventMigrationsApplied, Services: []string{"migrate"}, Levels: info,
			Optional: []string{obs.KeyApplied, obs.KeyVersion, obs.KeyStatus},
			Notes:    map[string]string{obs.KeyStatus: "`database_created`"},
			When:     "`server migrate up` / `down-to`: `applied` and `version`, or `status` when it created the database",
		},
		{
			Name: obs.EventMigrationStatus, Services: []string{"migrate"}, Levels: info,
			Required: []string{obs.KeyVersion, obs.KeyName, obs.KeyStatus},
			When:     "`server migrate status`, one line per migration",
		},
		{
			Name: obs.EventAPIKeyCreated, Services: []string{"create-api-key"}, Levels: info,
			Required: []string{obs.KeyUserID, obs.KeyName, obs.KeyAPIKeyID, obs.KeyAPIKeyPrefix},
			When: "a key was issued (the key itself goes to stdout, never to the log; its first 11 characters, " +
				"`api_key_prefix`, are not secret and name it)",
		},
		{
			Name: obs.EventAPIKeyRevoked, Services: []string{"revoke-api-key"}, Levels: info,
			Required: []string{obs.KeyUserID, obs.KeyAPIKeyID, obs.KeyAPIKeyPrefix},
			Notes:    map[string]string{obs.KeyAPIKeyPrefix: "empty for keys made before prefixes were kept"},
			When:     "`server revoke-api-key` deleted a key",
		},
		{
			Name: obs.EventKeyListenerStarted, Services: server, Levels: info,
			Required: []string{obs.KeyDropped},
			Notes:    map[string]string{obs.KeyDropped: "cached keys forgotten"},
			When:     "the server listens for deleted keys; its key cache starts afresh",
		},
		{
			Name: obs.EventKeyListenerFailed, Services: server, Levels: warn,
			Required: []string{obs.KeyError, obs.KeyErrorType, obs.KeyDropped},
			When: "the listening connection failed: keys are looked up on every request until it listens again " +
				"(retried after 1 s, doubling up to 30 s)",
		},
		{
			Name: obs.EventAPIKeyInvalidated, Services: server, Levels: info,
			Required: []string{obs.KeyDropped},
			Notes:    map[string]string{obs.KeyDropped: "1 if this server had the key cached, else 0; all it had for a `TRUNCATE`"},
			When: "PostgreSQL announced a deleted key (revoked, deleted in SQL, or with its user) " +
				"and the server forgot it",
		},
		{
			Name: obs.EventRiverLog, Services: []string{"server", "worker"}, Levels: anyLevel, Library: true,
			LevelNote: "but see below for a client that went away",
			Required:  []string{obs.KeyMessage}, When: "a line from River",
		},
		{
			Name: obs.EventHTTPServerLog, Services: []string{"server", "worker"}, Levels: anyLevel, Library: true,
			Required: []string{obs.KeyMessage}, When: "a line from net/http's server (the worker's: of its metrics listener)",
		},
		{
			Name: obs.EventGooseLog, Services: []string{"server", "worker", "migrate", "create-api-key", "revoke-api-key"},
			Levels: anyLevel, Library: true,
			Required: []string{obs.KeyMessage}, When: "a line from goose, the migrations",
		},
		{
			Name: obs.EventRiverUILog, Services: server, Levels: anyLevel, Library: true,
			Required: []string{obs.KeyMessage}, When: "a line from River UI",
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
