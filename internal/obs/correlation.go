package obs

import (
	"strings"

	"github.com/google/uuid"
)

// MaxCorrelationIDLength is the longest correlation ID reused from a client.
const MaxCorrelationIDLength = 128

// Reasons a client's correlation ID is not reused, logged as KeyReason.
const (
	RejectMultiple = "multiple_values"
	RejectEmpty    = "empty"
	RejectTooLong  = "too_long"
	RejectInvalid  = "invalid_characters"
)

// Correlation is the outcome of applying the reuse rule to a request.
type Correlation struct {
	ID           string // the request's correlation ID: the client's, or a new one
	Rejected     string // why the client's value was not reused, or ""
	HeaderLength int    // the byte length of the rejected value(s)
}

// ResolveCorrelationID applies the reuse rule to a request's correlation
// header values: reuse the only one if it is 1 to MaxCorrelationIDLength bytes
// of [A-Za-z0-9._:+=/@-] (safe to print), else make one, saying why in Rejected.
func ResolveCorrelationID(values []string) Correlation {
	var c Correlation
	for _, v := range values {
		c.HeaderLength += len(v)
	}
	switch {
	case len(values) == 0:
	case len(values) > 1:
		c.Rejected = RejectMultiple
	default:
		if c.Rejected = checkCorrelationID(values[0]); c.Rejected == "" {
			return Correlation{ID: values[0]}
		}
	}
	c.ID = NewCorrelationID()
	return c
}

// ValidCorrelationID reports whether v passes the reuse rule of
// ResolveCorrelationID. Whatever takes a correlation ID from a client
// elsewhere (a query parameter, say) checks it with the same rule, so that a
// value the header would refuse cannot reach a query or a log.
func ValidCorrelationID(v string) bool { return checkCorrelationID(v) == "" }

// checkCorrelationID says why v cannot be reused, or "" if it can.
func checkCorrelationID(v string) string {
	switch {
	case v == "":
		return RejectEmpty
	case len(v) > MaxCorrelationIDLength:
		return RejectTooLong
	case strings.IndexFunc(v, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && !strings.ContainsRune("._:+=/@-", r)
	}) >= 0:
		return RejectInvalid
	}
	return ""
}

// NewCorrelationID returns a new UUID version 7: time-ordered, so IDs made
// close together sort (and index) close together.
func NewCorrelationID() string {
	// NewV7 fails only if crypto/rand does, which crashes instead (Go 1.24+).
	return uuid.Must(uuid.NewV7()).String()
}
