package obs

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// limits bounds what one value may add to a line. A line that still comes
// out too long is rendered again with tighter limits (see Handler.Handle).
type limits struct {
	maxString  int // bytes of a string value before it is cut
	headFrames int // traceback frames kept from the innermost end
	tailFrames int // traceback frames kept from the outermost end
}

var (
	normalLimits = limits{maxString: 4096, headFrames: 32, tailFrames: 8}
	tightLimits  = limits{maxString: 512, headFrames: 12, tailFrames: 4}
)

// truncatedMarker follows the kept part of a cut string; the number says how
// many bytes were dropped.
const truncatedMarker = "...[truncated "

// appendTimestamp writes t as a fixed-width RFC 3339 UTC time with
// microseconds, so sorting the strings sorts the lines by time.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond()/1000, 6)
	return append(b, 'Z')
}

func appendDigits(b []byte, v, width int) []byte {
	var tmp [8]byte
	for i := width - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[:width]...)
}

// levelName maps any slog level onto the four names of the log contract.
func levelName(l slog.Level) string {
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}

// safeASCII marks the bytes that go into a JSON string as they are.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString writes s as a quoted JSON string, cutting it after max bytes
// with a marker. Invalid UTF-8 becomes U+FFFD, and U+2028/U+2029 are escaped
// so that no reader mistakes them for line breaks.
func appendString(b []byte, s string, maxLen int) []byte {
	dropped := 0
	if maxLen > 0 && len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		dropped = len(s) - cut
		s = s[:cut]
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	if dropped > 0 {
		b = append(b, truncatedMarker...)
		b = strconv.AppendInt(b, int64(dropped), 10)
		b = append(b, " bytes]"...)
	}
	return append(b, '"')
}

// appendAttr writes `,"key":value` (or `"key":value` when first is true) and
// reports whether it wrote anything: empty attributes and empty groups are
// skipped, as slog's own handlers do.
func appendAttr(b []byte, a slog.Attr, first bool, lim limits) ([]byte, bool) {
	// Both checks are written out: Resolve sets up a recover, and Attr.Equal
	// is generic, and this runs for every attribute of every line.
	if a.Value.Kind() == slog.KindLogValuer {
		a.Value = a.Value.Resolve()
	}
	if a.Key == "" && a.Value.Kind() == slog.KindAny && a.Value.Any() == nil {
		return b, false // the zero Attr, which handlers ignore
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return b, false
		}
		if a.Key == "" { // an unnamed group is inlined
			wrote := false
			for _, ga := range attrs {
				var w bool
				b, w = appendAttr(b, ga, first && !wrote, lim)
				wrote = wrote || w
			}
			return b, wrote
		}
		mark := len(b)
		if !first {
			b = append(b, ',')
		}
		b = appendString(b, a.Key, lim.maxString)
		b = append(b, ':', '{')
		wrote := false
		for _, ga := range attrs {
			var w bool
			b, w = appendAttr(b, ga, !wrote, lim)
			wrote = wrote || w
		}
		if !wrote {
			return b[:mark], false
		}
		return append(b, '}'), true
	}
	if !first {
		b = append(b, ',')
	}
	b = appendString(b, a.Key, lim.maxString)
	b = append(b, ':')
	return appendValue(b, a.Value, lim), true
}

func appendValue(b []byte, v slog.Value, lim limits) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendString(b, v.String(), lim.maxString)
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		return appendFloat(b, v.Float64())
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindTime:
		b = append(b, '"')
		b = v.Time().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"')
	case slog.KindAny, slog.KindLogValuer, slog.KindGroup:
		return appendAny(b, v.Any(), lim)
	default:
		return appendString(b, v.String(), lim.maxString)
	}
}

// appendFloat writes f as a JSON number; NaN and infinities, which JSON
// cannot express, become strings.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendString(b, strconv.FormatFloat(f, 'g', -1, 64), 0)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendAny renders values slog leaves to the handler. Nothing a value does
// can fail the line: a value whose Error, MarshalJSON or String method panics
// or fails is written as a descriptive string instead.
func appendAny(b []byte, v any, lim limits) (out []byte) {
	mark := len(b)
	defer func() {
		if r := recover(); r != nil {
			out = appendString(b[:mark], fmt.Sprintf("!PANIC in %T: %v", v, r), lim.maxString)
		}
	}()
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case Traceback:
		return appendTraceback(b, x, lim)
	case *Traceback:
		if x == nil {
			return append(b, "null"...)
		}
		return appendTraceback(b, *x, lim)
	case error:
		return appendString(b, x.Error(), lim.maxString)
	case []string:
		b = append(b, '[')
		for i, s := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s, lim.maxString)
		}
		return append(b, ']')
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return appendString(b, fmt.Sprintf("!MARSHAL %T: %+v", v, v), lim.maxString)
	}
	if len(raw) > lim.maxString {
		// Cutting JSON would break it: keep the text, as a string.
		return appendString(b, string(raw), lim.maxString)
	}
	return append(b, raw...)
}
