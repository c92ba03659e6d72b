package httpx

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/internal/store"
)

// parseID reads an ID in the one form the API writes: 36 characters,
// lowercase hexadecimal in groups of 8-4-4-4-12 separated by dashes.
// uuid.Parse alone would also take braces, a urn:uuid: prefix, no dashes or
// uppercase, so that many spellings would name one resource; a client that
// sends another spelling has not taken the ID from us, and is told so.
func parseID(s string) (uuid.UUID, bool) {
	if len(s) != 36 {
		return uuid.UUID{}, false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return uuid.UUID{}, false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return uuid.UUID{}, false
			}
		}
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

// validName reports whether a strategy name is printable text: valid UTF-8,
// at most store.MaxNameLength characters, and none of the characters that hide or
// rearrange what a reader sees (control characters, C0, DEL and C1, which
// include NUL and the ESC of terminal escape sequences; line and paragraph
// separators; the bidirectional formatting characters).
func validName(name string) bool {
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > store.MaxNameLength {
		return false
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) || bidiControl(r) {
			return false
		}
	}
	return true
}

// bidiControl reports whether r is one of Unicode's bidirectional
// formatting characters (marks, embeddings, overrides and isolates).
func bidiControl(r rune) bool {
	switch {
	case r == '\u061c', r == '\u200e', r == '\u200f':
		return true
	case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return true
	default:
		return false
	}
}

// queryParams parses the request's query string strictly: one that does not
// parse (a bad %-escape, a ';' separator), a parameter not in allowed, or a
// value that is not valid UTF-8 or holds a NUL is a 400 problem, never
// dropped in silence. r.URL.Query() would ignore the parse error and return
// what it could, so that a filter that failed to parse became no filter.
// On failure it has written the problem and returns false.
func queryParams(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, fmt.Sprintf(
			"The query string is malformed (%v): separate parameters with '&' and write '%%' as %%25.", err))
		return nil, false
	}
	var invalid []InvalidParam
	names := make([]string, 0, len(values))
	for name := range values {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			invalid = append(invalid, InvalidParam{Name: printable(name), Reason: "is not a parameter of this resource"})
		case slices.ContainsFunc(values[name], func(v string) bool {
			return !utf8.ValidString(v) || strings.ContainsRune(v, 0)
		}):
			invalid = append(invalid, InvalidParam{Name: name, Reason: "must be valid UTF-8 text without NUL"})
		}
	}
	if len(invalid) > 0 {
		writeProblem(w, r, http.StatusBadRequest, "The query has parameters this resource does not take, or bad values.", invalid...)
		return nil, false
	}
	return values, true
}

// printable quotes a client's parameter name for a problem body when it
// holds anything but printable ASCII, so that no byte of it is echoed raw.
func printable(s string) string {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			q := fmt.Sprintf("%+q", s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

// queryReader reads the parameters of a list's query, collecting every
// invalid one so that a client hears of all of them at once.
type queryReader struct {
	query   url.Values
	invalid []InvalidParam
}

func (qr *queryReader) fail(name, reason string) {
	qr.invalid = append(qr.invalid, InvalidParam{Name: name, Reason: reason})
}

// one returns the value of a parameter given once; a parameter given more
// than once is invalid.
func (qr *queryReader) one(name string) (string, bool) {
	values, ok := qr.query[name]
	if !ok {
		return "", false
	}
	if len(values) != 1 {
		qr.fail(name, "must be given once")
		return "", false
	}
	return values[0], true
}

// oneOf reads a parameter that must be one of values; def when it is
// absent or refused.
func (qr *queryReader) oneOf(name string, values []string, def string) string {
	v, ok := qr.one(name)
	if !ok {
		return def
	}
	if !slices.Contains(values, v) {
		qr.fail(name, "must be one of "+strings.Join(values, ", "))
		return def
	}
	return v
}

// intIn reads a whole number from lo to hi; def when it is absent or
// refused.
func (qr *queryReader) intIn(name string, lo, hi, def int) int {
	v, ok := qr.one(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		qr.fail(name, fmt.Sprintf("must be a whole number from %d to %d", lo, hi))
		return def
	}
	return n
}

// id reads the ID of a resource of the given kind ("strategy"), as parseID
// reads it; the zero UUID when it is absent or refused.
func (qr *queryReader) id(name, kind string) uuid.UUID {
	v, ok := qr.one(name)
	if !ok {
		return uuid.UUID{}
	}
	id, valid := parseID(v)
	if !valid {
		qr.fail(name, idReason(kind))
		return uuid.UUID{}
	}
	return id
}

// idReason refuses what is not the ID of a resource of the given kind.
func idReason(kind string) string {
	return "must be a " + kind + "'s id: a UUID as the API writes it, 36 characters, lowercase"
}

// time reads an RFC 3339 time.
func (qr *queryReader) time(name string) time.Time {
	v, ok := qr.one(name)
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		qr.fail(name, "must be an RFC 3339 time, such as 2026-01-02T15:04:05Z "+
			"(in a query, + means a space: write an offset's + as %2B)")
		return time.Time{}
	}
	return t
}

// answered writes the 400 problem listing every invalid parameter, if there
// is any, and reports whether it did.
func (qr *queryReader) answered(w http.ResponseWriter, r *http.Request) bool {
	switch len(qr.invalid) {
	case 0:
		return false
	case 1:
		writeProblem(w, r, http.StatusBadRequest, qr.invalid[0].Name+" "+qr.invalid[0].Reason, qr.invalid...)
	default:
		writeProblem(w, r, http.StatusBadRequest, "The query has bad values: see invalid_params.", qr.invalid...)
	}
	return true
}

// Bounds on a backtest's or a sweep's request. Below 1 the engine's
// arithmetic loses meaning (a subnormal cash of 5e-324 reported a 100% loss).
const (
	maxSpanYears   = 100
	minInitialCash = 1
	maxInitialCash = 1e12
)

var symbolPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.\-]{0,15}$`)

// symbolReason is the rule of a symbol, in a body or a query.
const symbolReason = "must be 1 to 16 letters, digits, '.' or '-'"

// parseSymbol reads a symbol as the API stores it: in capitals.
func parseSymbol(s string) (string, bool) {
	if !symbolPattern.MatchString(s) {
		return "", false
	}
	return strings.ToUpper(s), true
}

// validateRange reads a body's start and end, refusing what is not a date
// range of at most maxSpanYears; ok when it is one.
func validateRange(refuse func(name, reason string), startText, endText string) (start, end time.Time, ok bool) {
	start, startErr := time.Parse(time.DateOnly, startText)
	if startErr != nil {
		refuse("start", "must be a date, YYYY-MM-DD")
	}
	end, endErr := time.Parse(time.DateOnly, endText)
	switch {
	case endErr != nil:
		refuse("end", "must be a date, YYYY-MM-DD")
	case startErr != nil: // end cannot be compared with it
	case !end.After(start):
		refuse("end", "must be after start")
	case end.After(start.AddDate(maxSpanYears, 0, 0)):
		refuse("end", fmt.Sprintf("must be at most %d years after start", maxSpanYears))
	default:
		return start, end, true
	}
	return start, end, false
}

// validateCash reads a body's initial_cash, refusing none or one out of
// bounds.
func validateCash(refuse func(name, reason string), cash *float64) float64 {
	switch {
	case cash == nil:
		refuse("initial_cash", "is required")
		return 0
	case !(*cash >= minInitialCash && *cash <= maxInitialCash):
		refuse("initial_cash", "must be between 1 and 1e12")
	}
	return *cash
}
