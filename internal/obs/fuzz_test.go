package obs_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"testing"

	"github.com/backtestd/backtestd/internal/obs"
)

var (
	reusable  = regexp.MustCompile(`^[A-Za-z0-9._:+=/@-]{1,128}$`)
	timestamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
)

func FuzzResolveCorrelationID(f *testing.F) {
	for _, seed := range []string{"", "abc", "   ", "a\r\nb", "a\x00b", "caf\u00e9", "01ARZ3NDEKTSV4RRFFQ69G5FAV", string(make([]byte, 200))} {
		f.Add(seed, "")
		f.Add(seed, "second")
	}
	f.Fuzz(func(t *testing.T, first, second string) {
		values := []string{first}
		if second != "" {
			values = append(values, second)
		}
		c := obs.ResolveCorrelationID(values)
		if !reusable.MatchString(c.ID) {
			t.Fatalf("ID %q breaks the rule", c.ID)
		}
		if c.Rejected == "" && (len(values) != 1 || c.ID != first) {
			t.Fatalf("reused %q for %q", c.ID, values)
		}
		if c.Rejected != "" && (c.ID == first || len(c.ID) != 36) {
			t.Fatalf("rejected %q but kept %q", values, c.ID)
		}
		if c.Rejected == "" && !reusable.MatchString(first) {
			t.Fatalf("reused the invalid %q", first)
		}
	})
}

// Whatever the attributes, the handler writes one valid JSON line of at
// most MaxLineBytes.
func FuzzHandler(f *testing.F) {
	f.Add("key", "value", []byte("raw"), int64(1), 0.5, "group")
	f.Add("", "", []byte{}, int64(0), math.Inf(1), "")
	f.Add("k\"\\\n", "\xff\xfe\u2028\x00", []byte{0, 1, 2}, int64(-1), math.NaN(), "g\x00")
	f.Add("long", string(bytes.Repeat([]byte("é"), 20_000)), bytes.Repeat([]byte{0xff}, 9000), int64(math.MaxInt64), math.Copysign(0, -1), "x")
	f.Fuzz(func(t *testing.T, key, value string, raw []byte, n int64, x float64, group string) {
		var buf bytes.Buffer
		l := obs.NewLogger(&buf, obs.Options{Service: "fuzz"})
		ctx := obs.WithAttrs(t.Context(), slog.String(key, value))
		l.With(slog.String(value, key)).WithGroup(group).InfoContext(ctx, value, //nolint:forbidigo,sloglint // arbitrary input is the point
			slog.String(key, value), slog.Any("raw", raw), slog.Int64(key, n), slog.Float64("x", x),
			slog.Group(group, slog.String(key, value), slog.Any("strings", []string{value, key})),
			slog.Any("map", map[string]string{key: value}))
		out := buf.Bytes()
		if len(out) > obs.MaxLineBytes || len(out) == 0 || out[len(out)-1] != '\n' || bytes.Count(out, []byte("\n")) != 1 {
			t.Fatalf("not one line of at most %d bytes: %d bytes, %d newlines", obs.MaxLineBytes, len(out), bytes.Count(out, []byte("\n")))
		}
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		if m[obs.KeyService] != "fuzz" || m[obs.KeyLevel] != "info" || !timestamp.MatchString(fmt.Sprint(m[obs.KeyTimestamp])) {
			t.Fatalf("header lost: %q", out)
		}
	})
}
