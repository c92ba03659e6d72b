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

// Traceback is a goroutine's stack, innermost call first. A deep one keeps its
// innermost and outermost frames around a frame counting those skipped.
type Traceback []Frame

// CaptureStack returns the calling goroutine's stack, starting skip frames
// above its caller (0 is the caller of CaptureStack).
func CaptureStack(skip int) Traceback {
	var pcs []uintptr
	for n := 64; len(pcs) == cap(pcs); n *= 4 { // the whole stack, to keep its outermost frames
		pcs = make([]uintptr, n)
		pcs = pcs[:runtime.Callers(skip+2, pcs)]
	}
	if len(pcs) <= headFrames+tailFrames {
		return resolve(nil, pcs)
	}
	tb := resolve(make(Traceback, 0, headFrames+tailFrames+1), pcs[:headFrames])
	tb = append(tb, Frame{Function: "... " + strconv.Itoa(len(pcs)-headFrames-tailFrames) + " frames skipped ..."})
	return resolve(tb, pcs[len(pcs)-tailFrames:])
}

// PanicStack returns the stack of a panic being recovered, from where it
// began: call it in the deferred function that called recover. The runtime's
// frames above (the panic machinery, a bad index's check) are dropped.
func PanicStack() Traceback {
	tb := CaptureStack(2) // from runtime.gopanic
	for len(tb) > 1 && strings.HasPrefix(tb[0].Function, "runtime.") {
		tb = tb[1:]
	}
	return tb
}

// resolve appends the frames of pcs to tb, files named by package path: the
// same wherever the binary was built, and no build paths leaked.
func resolve(tb Traceback, pcs []uintptr) Traceback {
	frames := runtime.CallersFrames(pcs)
	for more := len(pcs) > 0; more; {
		var f runtime.Frame
		f, more = frames.Next()
		file := path.Base(f.File)
		slash := strings.LastIndexByte(f.Function, '/')
		if dot := strings.IndexByte(f.Function[slash+1:], '.'); dot >= 0 {
			file = f.Function[:slash+1+dot] + "/" + file
		}
		tb = append(tb, Frame{Function: f.Function, File: file, Line: f.Line})
	}
	return tb
}

// stackError carries the stack of the place an error was noticed.
type stackError struct {
	err error
	tb  Traceback
}

func (e *stackError) Error() string { return e.err.Error() }
func (e *stackError) Unwrap() error { return e.err }

// WithStackSkip returns err with the stack from skip frames above its caller
// (0: the caller), unless err carries one: Go errors have none of their own.
func WithStackSkip(err error, skip int) error {
	if _, ok := errors.AsType[*stackError](err); err == nil || ok {
		return err
	}
	return &stackError{err: err, tb: CaptureStack(skip + 1)}
}

// StackOf returns the stack recorded by WithStackSkip anywhere in err's chain.
func StackOf(err error) (Traceback, bool) {
	se, ok := errors.AsType[*stackError](err)
	if !ok {
		return nil, false
	}
	return se.tb, true
}

// ErrorType names the innermost error's type, which says what went wrong (a
// *pgconn.PgError rather than the *fmt.wrapError around it).
func ErrorType(err error) string {
	if err == nil {
		return ""
	}
	for next := errors.Unwrap(err); next != nil; next = errors.Unwrap(err) {
		err = next
	}
	return fmt.Sprintf("%T", err)
}
