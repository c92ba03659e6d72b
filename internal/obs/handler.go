// Package obs writes the service's log lines: the contract's names, a slog
// handler adding the fields bound to a context to every line, the
// correlation ID rule and tracebacks. It imports nothing else of ours.
package obs

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLineBytes is the longest line the Handler writes, newline included.
// Docker splits longer lines into pieces that are no longer JSON.
const MaxLineBytes = 16 * 1024

// Bounds on what a value adds to a line, so that lines fit by construction.
const (
	maxString  = 4096 // bytes of a string value, cut beyond with a marker
	maxEvent   = 256  // bytes of an event: escaped, the header still fits a line
	headFrames = 32   // traceback frames kept from the innermost end
	tailFrames = 8    // traceback frames kept from the outermost end
)

// Options configures a Handler.
type Options struct {
	Service string       // names the process on every line ("server", "worker")
	Level   slog.Leveler // the minimum level written; defaults to info
}

// Handler is a slog.Handler writing the log contract's lines through
// slog.JSONHandler: one write per line, at most MaxLineBytes, with the fields
// bound by WithAttrs at the top level, whatever groups the logger opened.
type Handler struct {
	base  slog.Handler                      // the JSON handler with the service; context fields bind to it
	ops   []func(slog.Handler) slog.Handler // With and WithGroup calls since base
	inner slog.Handler                      // base after ops, for lines without context fields
	event string                            // for a library's lines: their event (see NewLibraryLogger)
	min   slog.Level                        // for a library's lines: the lowest level written
}

// NewHandler returns a Handler writing to w. Write errors are ignored:
// logging must never stop the work it describes.
func NewHandler(w io.Writer, opts Options) *Handler {
	json := slog.NewJSONHandler(lineWriter{w}, &slog.HandlerOptions{Level: opts.Level, ReplaceAttr: replaceAttr})
	base := json.WithAttrs([]slog.Attr{slog.String(KeyService, opts.Service)})
	return &Handler{base: base, inner: base}
}

// NewLogger returns a logger writing the log contract's lines to w.
func NewLogger(w io.Writer, opts Options) *slog.Logger {
	return slog.New(NewHandler(w, opts))
}

// NewLibraryLogger returns a logger for a library (River, goose, net/http)
// that writes through h: each line's event is event, the library's text goes
// to KeyMessage, and records below minLevel are dropped.
func NewLibraryLogger(h slog.Handler, event string, minLevel slog.Level) *slog.Logger {
	lh := &Handler{base: h, inner: h, event: event, min: minLevel}
	if oh, ok := h.(*Handler); ok { // keep the context fields at the top level
		lh.base, lh.ops, lh.inner = oh.base, oh.ops, oh.inner
	}
	return slog.New(lh)
}

// Enabled reports whether lines at level l are written.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool {
	return (h.event == "" || l >= h.min) && h.inner.Enabled(ctx, l)
}

// WithAttrs returns a handler whose lines carry attrs.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	attrs = slices.Clone(attrs) // kept to replay: the caller may reuse its slice
	return h.with(func(x slog.Handler) slog.Handler { return x.WithAttrs(attrs) })
}

// WithGroup returns a handler that nests later attributes under name. The
// context fields stay at the top level, where jq filters look for them.
func (h *Handler) WithGroup(name string) slog.Handler {
	return h.with(func(x slog.Handler) slog.Handler { return x.WithGroup(name) })
}

func (h *Handler) with(op func(slog.Handler) slog.Handler) *Handler {
	h2 := *h
	h2.ops, h2.inner = append(slices.Clip(h.ops), op), op(h.inner)
	return &h2
}

// Handle writes r as one line. It never fails: write errors are dropped; a
// line still too long becomes its header, context fields and length.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if h.event != "" { // a library's text goes under KeyMessage
		r = r.Clone()
		r.AddAttrs(slog.String(KeyMessage, strings.TrimRight(r.Message, "\n")))
		r.Message = h.event
	}
	f := fieldsFrom(ctx)
	target := h.inner
	if f != nil {
		target = f.handler(h.base)
		for _, op := range h.ops { // only for loggers made with With or WithGroup
			target = op(target)
		}
	}
	err := target.Handle(ctx, r)
	if long, ok := err.(lineTooLong); ok { //nolint:errorlint // slog returns the writer's error as it is
		nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		nr.AddAttrs(slog.Bool(KeyLineTruncate, true), slog.Int(KeyLineBytes, int(long)))
		if f == nil || f.handler(h.base).Handle(ctx, nr) != nil {
			_ = h.base.Handle(ctx, nr) // the context fields do not fit either
		}
	}
	return nil
}

// replaceAttr renames slog's built-in keys, formats the timestamp (fixed
// width: sorting the strings sorts by time) and level, and bounds strings.
func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	top := len(groups) == 0
	switch a.Value.Kind() {
	case slog.KindString:
		if top && a.Key == slog.MessageKey {
			return slog.String(KeyEvent, cut(a.Value.String(), maxEvent))
		}
		a.Value = slog.StringValue(cut(a.Value.String(), maxString))
	case slog.KindTime:
		if top && a.Key == slog.TimeKey {
			return slog.String(KeyTimestamp, a.Value.Time().UTC().Format("2006-01-02T15:04:05.000000Z"))
		}
	case slog.KindAny:
		if l, ok := a.Value.Any().(slog.Level); ok && top && a.Key == slog.LevelKey {
			// Levels between the four round down; slog's are 4 apart from debug.
			return slog.String(KeyLevel, [...]string{"debug", "info", "warn", "error"}[min(max(int(l-slog.LevelDebug), 0)/4, 3)])
		}
	}
	return a
}

// cut keeps at most maxLen bytes of s (whole runes), marking what it drops.
func cut(s string, maxLen int) string {
	if len(s) <= maxLen {
		return s
	}
	end := maxLen
	for end > maxLen-utf8.UTFMax && !utf8.RuneStart(s[end]) { // no further: invalid bytes
		end--
	}
	return s[:end] + "...[truncated " + strconv.Itoa(len(s)-end) + " bytes]"
}

// lineWriter hands each line to w in one call, unless it is too long.
type lineWriter struct{ w io.Writer }

// lineTooLong is the length of a line lineWriter refused.
type lineTooLong int

func (n lineTooLong) Error() string { return "log line of " + strconv.Itoa(int(n)) + " bytes" }

func (lw lineWriter) Write(p []byte) (int, error) {
	if len(p) > MaxLineBytes {
		return 0, lineTooLong(len(p))
	}
	defer func() { _ = recover() }() // a panicking writer must not take the caller down
	_, _ = lw.w.Write(p)             // EPIPE and the like: nowhere to report them
	return len(p), nil
}
