package obs

import (
	"errors"
	"fmt"
	"path"
	"runtime"
	"strconv"
	"strings"
)

// Frame is one call in a Traceback.
type Frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

// Traceback is a goroutine's stack, innermost call first. Very deep stacks
// keep their head and tail and count the frames skipped between them.
type Traceback struct {
	Frames  []Frame
	Skipped int // frames dropped between Frames[:Split] and Frames[Split:]
	Split   int // where the skipped frames were, when Skipped > 0
}

// Capture keeps this many innermost and outermost frames of a deep stack; the
// encoder may keep fewer.
const (
	captureHead = 48
	captureTail = 16
)

// CaptureStack returns the calling goroutine's stack, starting skip frames
// above its caller (0 is the caller of CaptureStack).
func CaptureStack(skip int) Traceback {
	pcs := callers(skip + 2)
	return framesOf(pcs)
}

// PanicStack returns the stack of a panic being recovered: it must be called
// from the deferred function that called recover. The frames of the panic
// machinery itself are dropped, so the first frame is where the panic began.
func PanicStack() Traceback {
	pcs := callers(2)
	frames := runtime.CallersFrames(pcs)
	skip := 0
	for i := 0; ; i++ {
		f, more := frames.Next()
		if f.Function == "runtime.gopanic" {
			skip = i + 1
			break
		}
		if !more {
			break
		}
	}
	// Runtime errors (nil map writes, bad indexes) sit in runtime frames
	// below the panic site; the reader wants the code that caused them.
	tb := framesOf(pcs[min(skip, len(pcs)):])
	for len(tb.Frames) > 1 && strings.HasPrefix(tb.Frames[0].Function, "runtime.") {
		tb.Frames = tb.Frames[1:]
		if tb.Split > 0 {
			tb.Split--
		}
	}
	return tb
}

func callers(skip int) []uintptr {
	pcs := make([]uintptr, 64)
	for {
		n := runtime.Callers(skip+1, pcs)
		if n < len(pcs) {
			return pcs[:n]
		}
		pcs = make([]uintptr, len(pcs)*4)
	}
}

func framesOf(pcs []uintptr) Traceback {
	if len(pcs) <= captureHead+captureTail {
		return Traceback{Frames: resolve(pcs)}
	}
	head := resolve(pcs[:captureHead])
	tail := resolve(pcs[len(pcs)-captureTail:])
	return Traceback{
		Frames:  append(head, tail...),
		Skipped: len(pcs) - captureHead - captureTail,
		Split:   len(head),
	}
}

func resolve(pcs []uintptr) []Frame {
	out := make([]Frame, 0, len(pcs))
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		out = append(out, Frame{Function: f.Function, File: relativeFile(f.Function, f.File), Line: f.Line})
		if !more {
			return out
		}
	}
}

// relativeFile names a source file by its package path, so frames read the
// same whatever directory the binary was built in and leak no build paths.
func relativeFile(function, file string) string {
	if function == "" {
		return path.Base(file)
	}
	slash := strings.LastIndexByte(function, '/')
	dot := strings.IndexByte(function[slash+1:], '.')
	if dot < 0 {
		return path.Base(file)
	}
	return function[:slash+1+dot] + "/" + path.Base(file)
}

// appendTraceback writes tb as a JSON array of frames, keeping at most
// lim.headFrames innermost and lim.tailFrames outermost frames, with a marker
// frame where frames were skipped.
func appendTraceback(b []byte, tb Traceback, lim limits) []byte {
	h, t := lim.headFrames, lim.tailFrames
	var head, tail []Frame
	skipped := tb.Skipped
	if skipped == 0 {
		head = tb.Frames
		if len(head) > h+t {
			tail = head[len(head)-t:]
			head = head[:h]
			skipped = len(tb.Frames) - h - t
		}
	} else {
		head, tail = tb.Frames[:tb.Split], tb.Frames[tb.Split:]
		if len(head) > h {
			skipped += len(head) - h
			head = head[:h]
		}
		if len(tail) > t {
			skipped += len(tail) - t
			tail = tail[len(tail)-t:]
		}
	}
	b = append(b, '[')
	first := true
	sep := func() {
		if !first {
			b = append(b, ',')
		}
		first = false
	}
	for _, f := range head {
		sep()
		b = appendFrame(b, f, lim)
	}
	if skipped > 0 {
		sep()
		b = appendFrame(b, Frame{Function: "... " + strconv.Itoa(skipped) + " frames skipped ..."}, lim)
	}
	for _, f := range tail {
		sep()
		b = appendFrame(b, f, lim)
	}
	return append(b, ']')
}

func appendFrame(b []byte, f Frame, lim limits) []byte {
	b = append(b, `{"function":`...)
	b = appendString(b, f.Function, lim.maxString)
	b = append(b, `,"file":`...)
	b = appendString(b, f.File, lim.maxString)
	b = append(b, `,"line":`...)
	b = strconv.AppendInt(b, int64(f.Line), 10)
	return append(b, '}')
}

// stackError carries the stack of the place an error was noticed.
type stackError struct {
	err error
	tb  Traceback
}

func (e *stackError) Error() string { return e.err.Error() }
func (e *stackError) Unwrap() error { return e.err }

// WithStack returns err annotated with the caller's stack, unless err already
// carries one. Go errors have no stack of their own; call it where a failure
// is first seen so that the log line can show where that was.
func WithStack(err error) error {
	return WithStackSkip(err, 1)
}

// WithStackSkip is WithStack for helpers: the stack starts skip frames
// above the caller, so a helper that classifies errors can leave itself out.
func WithStackSkip(err error, skip int) error {
	if err == nil {
		return nil
	}
	var se *stackError
	if errors.As(err, &se) {
		return err
	}
	return &stackError{err: err, tb: CaptureStack(skip + 1)}
}

// StackOf returns the stack recorded by WithStack anywhere in err's chain.
func StackOf(err error) (Traceback, bool) {
	var se *stackError
	if errors.As(err, &se) {
		return se.tb, true
	}
	return Traceback{}, false
}

// ErrorType names the most specific type in err's chain of wrappers: the
// innermost error, which says what actually went wrong (a *pgconn.PgError
// rather than the *fmt.wrapError around it).
func ErrorType(err error) string {
	if err == nil {
		return ""
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return fmt.Sprintf("%T", err)
		}
		err = next
	}
}
