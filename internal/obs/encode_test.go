package obs

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// TestAppendTimestampMatchesTimeFormat holds the fixed-width timestamp to
// what the time package prints, at the edges of months, leap years and the
// four-digit years, and at random instants.
func TestAppendTimestampMatchesTimeFormat(t *testing.T) {
	t.Parallel()
	const layout = "2006-01-02T15:04:05.000000Z07:00"
	times := []time.Time{
		time.Unix(0, 0),
		time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		{}, // the zero time: year 1
		time.Date(2000, 2, 29, 12, 0, 0, 0, time.UTC),
		time.Date(2000, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2100, 2, 28, 23, 59, 59, 0, time.UTC),
		time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 12, 31, 23, 59, 59, 999_999_000, time.UTC),
		time.Date(2026, 11, 26, 12, 34, 56, 789_012_345, time.FixedZone("east", 5*3600+1800)),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), // five digits: time's own format
	}
	const year9999 = 253402300799 // 9999-12-31T23:59:59Z
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		times = append(times, time.Unix(rng.Int64N(year9999+1), rng.Int64N(1e9)))
	}
	for _, tm := range times {
		require.Equal(t, tm.UTC().Format(layout), string(appendTimestamp(nil, tm)), "%v", tm)
	}
}

// TestAppendStringEscapes puts every byte that needs care at every offset of
// plain strings, and random bytes, and requires valid JSON that decodes to the string (invalid UTF-8 as U+FFFD,
// one per byte) with no raw control byte or line separator left.
func TestAppendStringEscapes(t *testing.T) {
	t.Parallel()
	special := []string{"\"", "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "é", "\u2028", "\u2029", "\xff", "\xe2\x80"}
	var inputs []string
	for _, sp := range special {
		for at := range 20 {
			for _, n := range []int{7, 8, 9, 16, 17, 24} {
				plain := strings.Repeat("a1-Z", 7)[:n]
				at := min(at, n)
				inputs = append(inputs, plain[:at]+sp+plain[at:])
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 5_000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = byte(rng.IntN(256))
			} else {
				b[i] = byte(' ' + rng.IntN(95))
			}
		}
		inputs = append(inputs, string(b))
	}
	for _, s := range inputs {
		out := appendString(nil, s, 0)
		require.True(t, json.Valid(out), "%q gave %s", s, out)
		var got string
		require.NoError(t, json.Unmarshal(out, &got))
		require.Equal(t, perByteValid(s), got, "%q", s)
		for _, c := range out {
			require.GreaterOrEqual(t, c, byte(0x20), "raw control byte in %q", out)
		}
		require.NotContains(t, string(out), "\u2028")
		require.NotContains(t, string(out), "\u2029")
	}
}

// perByteValid replaces each byte of invalid UTF-8 with U+FFFD.
func perByteValid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte, which is U+FFFD
		i += size
	}
	return b.String()
}
