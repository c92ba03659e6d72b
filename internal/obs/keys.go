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
	KeyRiverUI      = "riverui"
	KeyFaultInject  = "fault_injection"
	KeyClientIP     = "client_ip"
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
	KeyComponent    = "component"
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

// Events: the value of KeyEvent. Names are stable once shipped; add new ones
// instead of renaming.
const (
	EventServerStarted         = "server_started"
	EventServerStopping        = "server_stopping"
	EventServerStopped         = "server_stopped"
	EventRequestFinished       = "request_finished"
	EventRequestPanicked       = "request_panicked"
	EventCorrelationIDRejected = "correlation_id_rejected"
	EventBacktestEnqueued      = "backtest_enqueued"
	EventStrategyCreated       = "strategy_created"
	EventRequestFailed         = "request_failed"
	EventWorkerStarted         = "worker_started"
	EventWorkerStopping        = "worker_stopping"
	EventWorkerStopped         = "worker_stopped"
	EventJobStarted            = "job_started"
	EventJobProgress           = "job_progress"
	EventJobCompleted          = "job_completed"
	EventJobFailed             = "job_failed"
	EventJobInterrupted        = "job_interrupted"
	EventRunUpdateFailed       = "run_update_failed"
	EventRunFailed             = "run_failed"
	EventMigrationsApplied     = "migrations_applied"
	EventMigrationStatus       = "migration_status"
	EventAPIKeyCreated         = "api_key_created"
	EventAPIKeyRevoked         = "api_key_revoked"
	EventAPIKeyInvalidated     = "api_key_invalidated"
	EventKeyListenerStarted    = "api_key_listener_started"
	EventKeyListenerFailed     = "api_key_listener_failed"
	EventRiverLog              = "river_log"
	EventHTTPServerLog         = "http_server_log"
	EventGooseLog              = "goose_log"
	EventRiverUILog            = "riverui_log"
)

// Keys and events of the server's limits.
const (
	// KeyConnectionsClosed counts the connections a stopping server closed
	// because SHUTDOWN_TIMEOUT ran out before they finished.
	KeyConnectionsClosed = "connections_closed"
	// EventServerShutdownTimedOut: SHUTDOWN_TIMEOUT ran out with connections
	// still open; they were closed.
	EventServerShutdownTimedOut = "server_shutdown_timed_out"
)
