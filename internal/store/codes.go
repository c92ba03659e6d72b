package store

// Error codes of a failed or cancelled run and of its attempts: the stable
// snake_case words API clients branch on, listed in docs/api.md. The Go type
// of an error is for developers and stays in the logs (error_type).
const (
	// ErrorCodeInsufficientData: the date range has fewer bars than the
	// strategy needs before it can trade. Permanent.
	ErrorCodeInsufficientData = "insufficient_data"
	// ErrorCodeInvalidStrategy: the engine refused the strategy's kind or
	// parameters. Permanent.
	ErrorCodeInvalidStrategy = "invalid_strategy"
	// ErrorCodeStrategyNotFound: the run's strategy was deleted before an
	// attempt could load it. Permanent.
	ErrorCodeStrategyNotFound = "strategy_not_found"
	// ErrorCodePanic: the attempt panicked (a bug); retried while attempts
	// are left.
	ErrorCodePanic = "panic"
	// ErrorCodeTimeout: the attempt ran longer than JOB_TIMEOUT; retried
	// while attempts are left.
	ErrorCodeTimeout = "timeout"
	// ErrorCodeInternal: a fault of the service, details in the logs;
	// retried while attempts are left.
	ErrorCodeInternal = "internal"
	// ErrorCodeWorkerLost: the worker running the attempt stopped answering
	// (killed, crashed, frozen) and River rescued the job; on an attempt
	// (outcome interrupted), or on a run waiting for its next attempt.
	ErrorCodeWorkerLost = "worker_lost"
	// ErrorCodeCancelled: the run was cancelled, over the API or in River.
	ErrorCodeCancelled = "cancelled"
	// ErrorCodeJobDeleted: the run's River job was deleted (River UI, SQL)
	// before it finished; the run is cancelled.
	ErrorCodeJobDeleted = "job_deleted"
	// ErrorCodeJobDiscarded: River discarded the run's job with its attempts
	// used up and no worker reporting the last one (it crashed); the run
	// is failed.
	ErrorCodeJobDiscarded = "job_discarded"
)

// ErrorCodes returns every error code, for the docs and their tests.
func ErrorCodes() []string {
	return []string{
		ErrorCodeInsufficientData, ErrorCodeInvalidStrategy, ErrorCodeStrategyNotFound, ErrorCodePanic,
		ErrorCodeTimeout, ErrorCodeInternal, ErrorCodeWorkerLost, ErrorCodeCancelled, ErrorCodeJobDeleted,
		ErrorCodeJobDiscarded,
	}
}
