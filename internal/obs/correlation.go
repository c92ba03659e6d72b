package obs

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"time"
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
	// ID is the correlation ID of the request: the client's, or a new one.
	ID string
	// Rejected is the reason a client's value was not reused, or "".
	Rejected string
	// HeaderLength is the byte length of the rejected value(s).
	HeaderLength int
}

// ResolveCorrelationID applies the reuse rule to the values of a request's
// correlation header. A value is reused when there is exactly one, it is not
// empty, at most MaxCorrelationIDLength bytes long and made only of
// [A-Za-z0-9._:+=/@-] (opaque, but safe to print anywhere). Anything else is
// replaced by a new ID; a value that was sent but not reused is reported in
// Rejected, so the caller can log it once without its raw bytes.
func ResolveCorrelationID(values []string) Correlation {
	switch {
	case len(values) == 0:
		return Correlation{ID: NewCorrelationID()}
	case len(values) > 1:
		n := 0
		for _, v := range values {
			n += len(v)
		}
		return Correlation{ID: NewCorrelationID(), Rejected: RejectMultiple, HeaderLength: n}
	}
	v := values[0]
	if reason := checkCorrelationID(v); reason != "" {
		return Correlation{ID: NewCorrelationID(), Rejected: reason, HeaderLength: len(v)}
	}
	return Correlation{ID: v}
}

// ValidCorrelationID reports whether v passes the reuse rule of
// ResolveCorrelationID. Whatever takes a correlation ID from a client
// elsewhere (a query parameter, say) checks it with the same rule, so that a
// value the header would refuse cannot reach a query or a log.
func ValidCorrelationID(v string) bool { return checkCorrelationID(v) == "" }

func checkCorrelationID(v string) string {
	if v == "" {
		return RejectEmpty
	}
	if len(v) > MaxCorrelationIDLength {
		return RejectTooLong
	}
	for i := 0; i < len(v); i++ {
		if !idByte[v[i]] {
			return RejectInvalid
		}
	}
	return ""
}

var idByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "._:+=/@-" {
		t[c] = true
	}
	return t
}()

// NewCorrelationID returns a new UUID version 7: time-ordered, so IDs made
// close together sort (and index) close together. Its 74 random bits come
// from the runtime's per-thread ChaCha8 generator (math/rand/v2), seeded
// securely: an ID must be unique, not secret, and this costs nanoseconds
// where crypto/rand costs a system call.
func NewCorrelationID() string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[0:8], rand.Uint64())
	binary.BigEndian.PutUint64(u[8:16], rand.Uint64())
	ms := uint64(time.Now().UnixMilli())
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], ms<<16)
	copy(u[:6], ts[:6])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], u[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], u[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], u[8:10])
	out[23] = '-'
	hex.Encode(out[24:], u[10:])
	return string(out[:])
}
