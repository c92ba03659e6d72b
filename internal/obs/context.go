package obs

import (
	"context"
	"log/slog"
)

type ctxKey struct{}

// fields are the attributes bound to a context, rendered once as
// `,"key":value` pairs so that every line copies them instead of encoding them.
type fields struct {
	json          []byte
	correlationID string
	// inline holds json when it fits, which it does for a request's and a
	// job's fields: one allocation per bind instead of two.
	inline [fieldsInline]byte
}

// fieldsInline fits the seven fields a job binds when its correlation ID is
// a UUID (about 300 bytes); longer ones take a buffer of their own.
const fieldsInline = 320

// WithAttrs returns a context whose log lines carry attrs in addition to the
// ones already bound. Bind a request's or a job's fields once, then pass the
// context to every logging call (the *Context methods of slog.Logger).
func WithAttrs(ctx context.Context, attrs ...slog.Attr) context.Context {
	f := &fields{}
	size := 0
	for _, a := range attrs {
		size += len(a.Key) + 8
		if a.Value.Kind() == slog.KindString {
			size += len(a.Value.String())
		} else {
			size += 20
		}
	}
	prev := fieldsFrom(ctx)
	if prev != nil {
		f.correlationID = prev.correlationID
		size += len(prev.json)
	}
	if size <= len(f.inline) {
		f.json = f.inline[:0]
	} else {
		f.json = make([]byte, 0, size) // one allocation, not one per growth
	}
	if prev != nil {
		f.json = append(f.json, prev.json...)
	}
	for _, a := range attrs {
		f.json, _ = appendAttr(f.json, a, false, normalLimits)
		if a.Key == KeyCorrelationID {
			f.correlationID = a.Value.String()
		}
	}
	return context.WithValue(ctx, ctxKey{}, f)
}

// ResetAttrs returns a context with no fields bound, for work that logs on
// behalf of something else: a maintenance job reporting on a run logs with
// the run's fields, not its own.
func ResetAttrs(ctx context.Context) context.Context {
	return context.WithValue(ctx, ctxKey{}, (*fields)(nil))
}

// CorrelationID returns the correlation ID bound to ctx, or "".
func CorrelationID(ctx context.Context) string {
	if f := fieldsFrom(ctx); f != nil {
		return f.correlationID
	}
	return ""
}

func fieldsFrom(ctx context.Context) *fields {
	if ctx == nil {
		return nil
	}
	f, _ := ctx.Value(ctxKey{}).(*fields)
	return f
}
