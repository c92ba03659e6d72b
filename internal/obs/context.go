package obs

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
)

type ctxKey struct{}

// fields are the attributes bound to a context, and the handler writing them:
// slog's WithAttrs pre-formats them once, at the first line of a request or job.
type fields struct {
	attrs []slog.Attr
	bound atomic.Pointer[[2]slog.Handler] // the first base handler asking, and it with attrs
}

func (f *fields) handler(base slog.Handler) slog.Handler {
	if b := f.bound.Load(); b != nil && b[0] == base {
		return b[1]
	}
	h := base.WithAttrs(f.attrs)
	f.bound.CompareAndSwap(nil, &[2]slog.Handler{base, h})
	return h
}

// WithAttrs returns a context whose log lines carry attrs in addition to the
// ones already bound. Bind a request's or a job's fields once, then pass the
// context to every logging call (the *Context methods of slog.Logger).
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	var prev []slog.Attr
	if f := fieldsFrom(ctx); f != nil {
		prev = f.attrs
	}
	return context.WithValue(ctx, ctxKey{}, &fields{attrs: slices.Concat(prev, attrs)})
}

// ResetAttrs returns a context with no fields bound, for work that logs on
// behalf of another: a maintenance job logs a run's fields, not its own.
func ResetAttrs(ctx context.Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, (*fields)(nil))
}

// CorrelationID returns the correlation ID bound to ctx, or "".
func CorrelationID(ctx context.Context) (id string) {
	if f := fieldsFrom(ctx); f != nil {
		for _, a := range f.attrs {
			if a.Key == KeyCorrelationID {
				id = a.Value.String()
			}
		}
	}
	return id
}

func fieldsFrom(ctx context.Context) *fields {
	f, _ := ctx.Value(ctxKey{}).(*fields)
	return f
}
