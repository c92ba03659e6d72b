package store

// Error codes of a failed or cancelled run and of its attempts: the stable
// snake_case words API clients branch on, listed in docs/api.md. The Go type
// of an error is for developers and stays in the logs (error_type).
const (
	// ErrorCodeCancelled: the run was cancelled, over the API or in River.
	ErrorCodeCancelled = "cancelled"
	// ErrorCodeInternal: a fault of the service, details in the logs.
	ErrorCodeInternal = "internal"
)
