package httpx

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
