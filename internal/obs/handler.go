package obs

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxLineBytes is the longest line the Handler writes, newline included.
// Docker splits longer lines into pieces that are no longer JSON.
const MaxLineBytes = 16 * 1024

// Options configures a Handler.
type Options struct {
	// Service names the process on every line ("server", "worker").
	Service string
	// Level is the minimum level written. Defaults to info.
	Level slog.Leveler
}

// Handler is a slog.Handler that writes the log contract's JSON lines: one
// object per line, one write per line, at most MaxLineBytes long, with the
// fields bound to the context by WithAttrs on every line.
//
// It renders JSON itself rather than wrapping slog.JSONHandler so that the
// context fields, rendered once when they are bound, are copied into each
// line instead of being encoded again.
type Handler struct {
	out    *lineWriter
	level  slog.Leveler
	prefix []byte // `,"service":"..."`
	attrs  []byte // attributes from WithAttrs, rendered, inside opened groups
	opened int    // groups opened in attrs
	groups []string
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler returns a Handler writing to w. Write errors are ignored:
// logging must never stop the work it describes.
func NewHandler(w io.Writer, opts Options) *Handler {
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	prefix := appendString([]byte(`,"`+KeyService+`":`), opts.Service, normalLimits.maxString)
	return &Handler{out: &lineWriter{w: w}, level: level, prefix: prefix}
}

// NewLogger returns a logger writing the log contract's lines to w.
func NewLogger(w io.Writer, opts Options) *slog.Logger {
	return slog.New(NewHandler(w, opts))
}

// Enabled reports whether lines at level l are written.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs returns a handler whose lines carry attrs, rendered once now.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var rendered []byte
	for _, a := range attrs {
		rendered, _ = appendAttr(rendered, a, false, normalLimits)
	}
	if len(rendered) == 0 {
		return h
	}
	h2 := *h
	own := make([]byte, len(h.attrs), len(h.attrs)+len(rendered)+32)
	copy(own, h.attrs)
	h2.attrs = h.openGroups(own)
	h2.opened += len(h.groups)
	h2.groups = nil
	if n := len(h2.attrs); n > 0 && h2.attrs[n-1] == '{' {
		rendered = rendered[1:] // first in its group: no comma
	}
	h2.attrs = append(h2.attrs, rendered...)
	return &h2
}

// WithGroup returns a handler that nests later attributes under name. The
// context fields stay at the top level, where jq filters look for them.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.groups = append(slices.Clip(h.groups), name)
	return &h2
}

// openGroups writes the groups that WithGroup named and that now get their
// first attribute.
func (h *Handler) openGroups(b []byte) []byte {
	for _, g := range h.groups {
		if len(b) == 0 || b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = appendString(b, g, normalLimits.maxString)
		b = append(b, ':', '{')
	}
	return b
}

// Handle writes r as one line.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	bp := bufPool.Get().(*[]byte)
	b := h.render(ctx, (*bp)[:0], r, normalLimits)
	if len(b) > MaxLineBytes {
		b = h.render(ctx, b[:0], r, tightLimits)
		if len(b) > MaxLineBytes {
			b = h.renderMinimal(ctx, b, r)
		}
	}
	h.out.write(b)
	if cap(b) <= 64*1024 {
		*bp = b
		bufPool.Put(bp)
	}
	return nil
}

func (h *Handler) render(ctx context.Context, b []byte, r slog.Record, lim limits) []byte {
	b = h.appendHeader(b, r, lim)
	if f := fieldsFrom(ctx); f != nil {
		b = append(b, f.json...)
	}
	if len(h.attrs) > 0 {
		// The leading '{' of the line keeps the comma rule simple: a
		// rendered attribute list never starts a line.
		b = append(b, h.attrs...)
	}
	closing := h.opened
	if r.NumAttrs() > 0 {
		mark := len(b)
		b = h.openGroups(b)
		wrote := false
		r.Attrs(func(a slog.Attr) bool {
			var w bool
			b, w = appendAttr(b, a, b[len(b)-1] == '{', lim)
			wrote = wrote || w
			return true
		})
		if wrote {
			closing += len(h.groups)
		} else {
			b = b[:mark]
		}
	}
	for range closing {
		b = append(b, '}')
	}
	return append(b, '}', '\n')
}

func (h *Handler) appendHeader(b []byte, r slog.Record, lim limits) []byte {
	b = append(b, '{')
	if !r.Time.IsZero() {
		b = append(b, `"`+KeyTimestamp+`":"`...)
		b = appendTimestamp(b, r.Time)
		b = append(b, `",`...)
	}
	b = append(b, `"`+KeyLevel+`":"`...)
	b = append(b, levelName(r.Level)...)
	b = append(b, `","`+KeyEvent+`":`...)
	b = appendString(b, r.Message, min(lim.maxString, 256))
	return append(b, h.prefix...)
}

// renderMinimal is the last resort for a line that stays too long even with
// tight limits (thousands of attributes, say): the header, the context fields
// and a note of what was dropped.
func (h *Handler) renderMinimal(ctx context.Context, b []byte, r slog.Record) []byte {
	size := len(b)
	b = h.appendHeader(b[:0], r, tightLimits)
	if f := fieldsFrom(ctx); f != nil && len(f.json) < MaxLineBytes/2 {
		b = append(b, f.json...)
	}
	b = append(b, `,"`+KeyLineTruncate+`":true,"`+KeyLineBytes+`":`...)
	b = strconv.AppendInt(b, int64(size), 10)
	return append(b, '}', '\n')
}

var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

// lineWriter serialises lines so that each reaches the writer in one call.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lineWriter) write(b []byte) {
	lw.mu.Lock()
	defer func() {
		lw.mu.Unlock()
		_ = recover() // a panicking writer must not take the caller down
	}()
	_, _ = lw.w.Write(b)
}

// libraryHandler turns a library's free-text records into contract lines: a
// constant event, the library's text under KeyMessage.
type libraryHandler struct {
	inner    slog.Handler
	event    string
	minLevel slog.Level
}

// NewLibraryLogger returns a logger for a library (River, goose, net/http)
// that writes through h: each line's event is event, the library's text goes
// to KeyMessage, and records below minLevel are dropped.
func NewLibraryLogger(h slog.Handler, event string, minLevel slog.Level) *slog.Logger {
	return slog.New(&libraryHandler{inner: h, event: event, minLevel: minLevel})
}

func (l *libraryHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= l.minLevel && l.inner.Enabled(ctx, level)
}

func (l *libraryHandler) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, l.event, r.PC)
	nr.AddAttrs(slog.String(KeyMessage, strings.TrimRight(r.Message, "\n")))
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return l.inner.Handle(ctx, nr)
}

func (l *libraryHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &libraryHandler{inner: l.inner.WithAttrs(attrs), event: l.event, minLevel: l.minLevel}
}

func (l *libraryHandler) WithGroup(name string) slog.Handler {
	return &libraryHandler{inner: l.inner.WithGroup(name), event: l.event, minLevel: l.minLevel}
}

// Log writes one line through logger like logger.LogAttrs, minus the walk
// up the stack that slog.Logger does to record the caller's PC, which the
// contract does not print. It is for the lines written for every request
// and every job, where that walk was a fair part of the cost.
func Log(ctx context.Context, logger *slog.Logger, level slog.Level, event string, attrs ...slog.Attr) {
	h := logger.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	r := slog.NewRecord(time.Now(), level, event, 0)
	r.AddAttrs(attrs...)
	_ = h.Handle(ctx, r) // the handler has nowhere to report a failure either
}
