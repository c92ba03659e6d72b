// Package obs writes the service's log lines: the JSON line contract (keys and
// event names), a slog handler that adds the fields bound to a context to
// every line, the correlation ID rule, and structured tracebacks.
//
// It imports nothing else of the service, so every other package can use it.
package obs
