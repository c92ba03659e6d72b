package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/gorilla/mux"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/internal/tracecontext"
)

// HeaderCorrelationID carries the correlation ID in requests and responses.
const HeaderCorrelationID = "X-Correlation-ID"

// HeaderTraceparent carries the W3C trace context in requests and
// responses.
const HeaderTraceparent = "Traceparent"

// continueTrace joins the request to its client's trace: with a valid
// traceparent, the request gets a span of its own, a child of the client's,
// whose trace_id and span_id go on every line of the request, and whose
// traceparent goes back on the response and on to the job the request
// creates. A traceparent that does not parse is ignored, and logged once
// without its value; the request goes on outside any trace, as it does
// without one.
func continueTrace(ctx context.Context, logger *slog.Logger, w http.ResponseWriter, values []string) context.Context {
	tp := tracecontext.Resolve(values)
	if tp.Rejected != "" {
		logger.WarnContext(ctx, obs.EventTraceparentRejected,
			slog.String(obs.KeyReason, tp.Rejected), slog.Int(obs.KeyHeaderLength, tp.HeaderLength))
	}
	if !tp.Valid {
		return ctx
	}
	span := tp.Context.Child()
	w.Header().Set(HeaderTraceparent, span.String())
	return tracecontext.With(ctx, span)
}

// requestInfo is what inner layers learn about a request (its route, its
// user) for the access line that the outermost layer writes.
type requestInfo struct {
	route  string
	userID string
	// clientIP is the client's address as logged; clientAddr the same
	// parsed, for the limits (see clientAddress).
	clientIP   string
	clientAddr netip.Addr
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{} // outside observe (tests of a single handler)
}

// observe is the outermost layer. It gives the request its correlation ID
// (set on the response before anything else can write it), binds the ID to
// the request's context for every line logged while handling it, recovers
// panics into a 500 problem, and writes exactly one request_finished line.
//
// It wraps the whole router rather than being registered with Router.Use,
// which gorilla/mux runs only for matched routes: 404 and 405 responses need
// the ID and the line too.
//
// It counts the request in metrics, which may be nil.
func observe(logger *slog.Logger, metrics *Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		corr := obs.ResolveCorrelationID(r.Header.Values(HeaderCorrelationID))
		w.Header().Set(HeaderCorrelationID, corr.ID)
		info := &requestInfo{}
		ctx := obs.WithAttrs(r.Context(), slog.String(obs.KeyCorrelationID, corr.ID))
		ctx = context.WithValue(ctx, requestInfoKey{}, info)
		if corr.Rejected != "" {
			logger.WarnContext(ctx, obs.EventCorrelationIDRejected,
				slog.String(obs.KeyReason, corr.Rejected), slog.Int(obs.KeyHeaderLength, corr.HeaderLength))
		}
		ctx = continueTrace(ctx, logger, w, r.Header.Values(HeaderTraceparent))
		rec := &recorder{ResponseWriter: w, ctx: ctx}
		r = r.WithContext(ctx)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { //nolint:errorlint // net/http compares it the same way
					panic(p) // the client is gone; net/http handles this one quietly
				}
				tb := obs.PanicStack()
				logger.LogAttrs(ctx, slog.LevelError, obs.EventRequestPanicked,
					slog.String(obs.KeyError, fmt.Sprint(p)),
					slog.String(obs.KeyErrorType, fmt.Sprintf("%T", p)),
					slog.Any(obs.KeyTraceback, tb),
					slog.Bool(obs.KeyPanic, true))
				if !rec.wroteHeader {
					// Drop what the handler had set (a Location, say): only
					// the correlation ID and trace belong on the error.
					for k := range rec.Header() {
						if k != http.CanonicalHeaderKey(HeaderCorrelationID) && k != HeaderTraceparent {
							rec.Header().Del(k)
						}
					}
					writeProblem(rec, r, http.StatusInternalServerError, "The server failed to handle the request.")
				}
			}
			status := rec.status()
			logFinished(logger, r, status, info, start)
			metrics.observe(info.route, r.Method, status, time.Since(start))
		}()
		next.ServeHTTP(rec, r)
	})
}

// logFinished writes the access line, once for every request.
func logFinished(logger *slog.Logger, r *http.Request, status int, info *requestInfo, start time.Time) {
	level := slog.LevelInfo
	if status >= http.StatusInternalServerError {
		level = slog.LevelError
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs,
		slog.String(obs.KeyMethod, r.Method),
		slog.String(obs.KeyPath, r.URL.Path),
		slog.String(obs.KeyRoute, info.route),
		slog.Int(obs.KeyStatusCode, status),
		slog.Int64(obs.KeyDurationMS, time.Since(start).Milliseconds()))
	if info.userID != "" {
		attrs = append(attrs, slog.String(obs.KeyUserID, info.userID))
	}
	if info.clientIP != "" {
		attrs = append(attrs, slog.String(obs.KeyClientIP, info.clientIP))
	}
	logger.LogAttrs(r.Context(), level, obs.EventRequestFinished, attrs...)
}

// routeTemplate records the matched route's template (/backtests/{id}) for
// the access line: paths vary, templates can be grouped.
func routeTemplate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if route := mux.CurrentRoute(r); route != nil {
			if tpl, err := route.GetPathTemplate(); err == nil {
				infoFrom(r.Context()).route = tpl
			}
		}
		next.ServeHTTP(w, r)
	})
}

// StatusClientClosedRequest is nginx's status for a request whose client
// went away before it was answered. It is never sent (nobody is there to
// read it); the access line records it, so that a departed client counts
// neither as a success nor as a server error.
const StatusClientClosedRequest = 499

// recorder remembers the status written through it.
type recorder struct {
	http.ResponseWriter
	ctx         context.Context // the request's, to tell a departed client at the first write
	code        int
	wroteHeader bool
}

func (rec *recorder) WriteHeader(code int) {
	if !rec.wroteHeader {
		rec.record(code)
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if !rec.wroteHeader {
		rec.record(http.StatusOK)
	}
	return rec.ResponseWriter.Write(b)
}

// record keeps the status of the answer, or 499 when the client had gone
// before it: whatever the handler made of a broken body or a cancelled
// query (a 400, a 503) was not the client's answer.
func (rec *recorder) record(code int) {
	rec.code, rec.wroteHeader = code, true
	if clientGone(rec.ctx) {
		rec.code = StatusClientClosedRequest
	}
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *recorder) status() int {
	if !rec.wroteHeader {
		if clientGone(rec.ctx) {
			return StatusClientClosedRequest // serverError wrote nothing for a departed client
		}
		return http.StatusOK // a handler that writes nothing sends 200
	}
	return rec.code
}

// clientGone reports whether the request's client went away: net/http
// cancels the request's context when the connection breaks (a reset, a
// close) or an HTTP/2 stream is reset. A deadline of the server's own ends
// the context with context.DeadlineExceeded instead, which is the server's
// failure to answer in time, not the client's departure.
func clientGone(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// serverError answers an internal failure: logged with its stack, answered
// with a problem that reveals nothing of it (503 when the database is out of
// reach, 500 otherwise).
//
// A failure that follows the client's departure is not one: its cancelled
// context cancelled the query. It is neither logged nor answered, and the
// access line records 499.
func serverError(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	if clientGone(r.Context()) {
		return
	}
	status, detail := http.StatusInternalServerError, "The server failed to handle the request."
	if store.Unavailable(err) {
		status, detail = http.StatusServiceUnavailable, "The database is unavailable; try again shortly."
	}
	tb, ok := obs.StackOf(err)
	if !ok {
		tb = obs.CaptureStack(1)
	}
	logger.LogAttrs(r.Context(), slog.LevelError, obs.EventRequestFailed,
		slog.String(obs.KeyError, err.Error()),
		slog.String(obs.KeyErrorType, obs.ErrorType(err)),
		slog.Any(obs.KeyTraceback, tb))
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeProblem(w, r, status, detail)
}
