package httpx

import (
	"context"
	"net/http"
	"time"

	"github.com/gorilla/mux"
)

// deadline bounds a request's context, and with it every query the request
// makes: a database that stops answering (frozen, not down) fails the query
// with context.DeadlineExceeded, which serverError answers with a 503, rather
// than holding the request until the client gives up.
func deadline(d time.Duration) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
