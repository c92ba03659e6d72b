package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/backtestd/backtestd/internal/obs"
)

// HeaderCorrelationID carries the correlation ID in requests and responses.
const HeaderCorrelationID = "X-Correlation-ID"

// correlationHeaderKey is HeaderCorrelationID as net/http stores it in a
// Header map. Indexing the map with it skips the canonicalization (and its
// allocation) that Header.Get and Header.Set do on every request.
const correlationHeaderKey = "X-Correlation-Id"

// requestInfo is what inner layers learn about a request (its route, its
// user) for the access line that the outermost layer writes.
type requestInfo struct {
	route  string
	userID string
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
func observe(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		corr := obs.ResolveCorrelationID(r.Header[correlationHeaderKey])
		w.Header()[correlationHeaderKey] = []string{corr.ID}
		// One allocation holds what the request's layers share.
		ex := &exchange{recorder: recorder{ResponseWriter: w}}
		rec, info := &ex.recorder, &ex.info
		ctx := obs.WithAttrs(r.Context(), slog.String(obs.KeyCorrelationID, corr.ID))
		ctx = context.WithValue(ctx, requestInfoKey{}, info)
		r = r.WithContext(ctx)
		if corr.Rejected != "" {
			logger.WarnContext(ctx, obs.EventCorrelationIDRejected,
				slog.String(obs.KeyReason, corr.Rejected), slog.Int(obs.KeyHeaderLength, corr.HeaderLength))
		}
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
					// the correlation ID belongs on the error.
					for k := range rec.Header() {
						if k != correlationHeaderKey {
							rec.Header().Del(k)
						}
					}
					writeProblem(rec, r, http.StatusInternalServerError, "The server failed to handle the request.")
				}
			}
			logFinished(logger, r, rec.status(), info, start)
		}()
		next.ServeHTTP(rec, r)
	})
}

// logFinished writes the access line, through obs.Log: it is written for
// every request.
func logFinished(logger *slog.Logger, r *http.Request, status int, info *requestInfo, start time.Time) {
	level := slog.LevelInfo
	if status >= http.StatusInternalServerError {
		level = slog.LevelError
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs,
		slog.String(obs.KeyMethod, r.Method),
		slog.String(obs.KeyPath, r.URL.Path),
		slog.String(obs.KeyRoute, info.route),
		slog.Int(obs.KeyStatusCode, status),
		slog.Int64(obs.KeyDurationMS, time.Since(start).Milliseconds()))
	if info.userID != "" {
		attrs = append(attrs, slog.String(obs.KeyUserID, info.userID))
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

// exchange is the per-request state of observe, allocated once.
type exchange struct {
	recorder recorder
	info     requestInfo
}

// recorder remembers the status written through it.
type recorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (rec *recorder) WriteHeader(code int) {
	if !rec.wroteHeader {
		rec.code, rec.wroteHeader = code, true
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if !rec.wroteHeader {
		rec.code, rec.wroteHeader = http.StatusOK, true
	}
	return rec.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

func (rec *recorder) status() int {
	if !rec.wroteHeader {
		return http.StatusOK // a handler that writes nothing sends 200
	}
	return rec.code
}

// serverError answers an internal failure: logged with its stack, answered
// with a problem that reveals nothing of it (503 when the database is out of
// reach, 500 otherwise).
func serverError(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	status, detail := http.StatusInternalServerError, "The server failed to handle the request."
	if unavailable(err) {
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

// unavailable reports whether err means the database is out of reach (down,
// restarting, the connection cut, too slow): worth a 503 and a retry later,
// not a 500.
func unavailable(err error) bool {
	var (
		connectErr *pgconn.ConnectError
		netErr     net.Error
		pgErr      *pgconn.PgError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, pgconn.ErrConnClosed), errors.As(err, &connectErr), errors.As(err, &netErr),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return true
	case errors.As(err, &pgErr):
		// Class 08: connection exceptions; 57P01-03: shutting down, starting.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	default:
		return false
	}
}
