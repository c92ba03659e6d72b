package httpx_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

// nextLink reads the target of a Link: <...>; rel="next" header.
var nextLink = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// walk follows a list's Link headers from path to the last page, checking
// that each page's next_cursor and Link agree, and returns the IDs of every
// item and the number of pages.
func (b *testBundle) walk(t *testing.T, path, field string) (ids []string, pages int) {
	t.Helper()
	for path != "" {
		r := b.call(t, http.MethodGet, path, b.aliceKey, "", "")
		require.Equal(t, http.StatusOK, r.status, r.raw)
		pages++
		items, ok := r.body[field].([]any)
		require.True(t, ok, "%s is an array, even empty: %s", field, r.raw)
		for _, it := range items {
			m, _ := it.(map[string]any)
			id, _ := m["id"].(string)
			ids = append(ids, id)
		}
		link := r.header.Get("Link")
		cursor, hasNext := r.body["next_cursor"].(string)
		require.Contains(t, r.body, "next_cursor")
		if !hasNext {
			require.Nil(t, r.body["next_cursor"])
			require.Empty(t, link, "no Link without a next page")
			return ids, pages
		}
		m := nextLink.FindStringSubmatch(link)
		require.NotNil(t, m, "Link: %q", link)
		next, err := url.Parse(m[1])
		require.NoError(t, err)
		require.Equal(t, cursor, next.Query().Get("cursor"))
		path = m[1]
	}
	return ids, pages
}

func TestListBacktestsPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sid := b.strategy(t, b.aliceKey)
	var created []string
	for _, symbol := range []string{"ACME", "BETA", "ACME", "GAMMA", "ACME", "BETA", "ACME"} {
		r := b.post(t, "/backtests", b.aliceKey,
			`{"strategy_id":"`+sid+`","symbol":"`+symbol+`","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`)
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
		id, _ := r.body["run_id"].(string)
		created = append([]string{id}, created...) // newest first
	}

	ids, pages := b.walk(t, "/backtests?limit=3", "runs")
	require.Equal(t, created, ids)
	require.Equal(t, 3, pages)

	all, pages := b.walk(t, "/backtests", "runs")
	require.Equal(t, created, all, "50 a page by default")
	require.Equal(t, 1, pages)

	// The filters go on in the Link.
	acme, pages := b.walk(t, "/backtests?symbol=acme&limit=1", "runs")
	require.Len(t, acme, 4)
	require.Equal(t, 4, pages)
	first := b.call(t, http.MethodGet, "/backtests?symbol=acme&limit=1", b.aliceKey, "", "")
	require.Contains(t, first.header.Get("Link"), "symbol=acme")
	require.Contains(t, first.header.Get("Link"), "limit=1")

	bobs, _ := b.walk(t, "/backtests?strategy_id="+sid, "runs")
	require.Len(t, bobs, 7)
	r := b.call(t, http.MethodGet, "/backtests?strategy_id="+sid, b.bobKey, "", "")
	require.Equal(t, http.StatusOK, r.status)
	require.Empty(t, r.body["runs"], "another user's strategy filters to nothing")
}

func TestListParametersAreChecked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sid := b.strategy(t, b.aliceKey)
	for range 2 {
		r := b.post(t, "/backtests", b.aliceKey,
			`{"strategy_id":"`+sid+`","symbol":"ACME","start":"2020-01-01","end":"2020-06-01","initial_cash":500}`)
		require.Equal(t, http.StatusAccepted, r.status, r.raw)
	}
	page := b.call(t, http.MethodGet, "/backtests?limit=1", b.aliceKey, "", "")
	runCursor, _ := page.body["next_cursor"].(string)
	require.NotEmpty(t, runCursor)
	b.strategy(t, b.aliceKey)
	page = b.call(t, http.MethodGet, "/strategies?limit=1", b.aliceKey, "", "")
	strategyCursor, _ := page.body["next_cursor"].(string)
	require.NotEmpty(t, strategyCursor)
	raw, err := base64.RawURLEncoding.DecodeString(runCursor)
	require.NoError(t, err)
	farFuture := base64.RawURLEncoding.EncodeToString(append([]byte{'r', 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, raw[9:]...))

	tests := []struct {
		name, target string
		wantParams   []string
	}{
		{"limit 0", "/backtests?limit=0", []string{"limit"}},
		{"limit 201", "/backtests?limit=201", []string{"limit"}},
		{"limit not a number", "/backtests?limit=ten", []string{"limit"}},
		{"limit empty", "/backtests?limit=", []string{"limit"}},
		{"limit twice", "/backtests?limit=1&limit=2", []string{"limit"}},
		{"cursor garbage", "/backtests?cursor=not-a-cursor", []string{"cursor"}},
		{"cursor not base64url", "/backtests?cursor=" + url.QueryEscape(runCursor+"!"), []string{"cursor"}},
		{"cursor truncated", "/backtests?cursor=" + runCursor[:len(runCursor)-2], []string{"cursor"}},
		{"cursor padded", "/backtests?cursor=" + runCursor + "%3D", []string{"cursor"}},
		{"cursor of another list", "/backtests?cursor=" + strategyCursor, []string{"cursor"}},
		{"cursor of runs on strategies", "/strategies?cursor=" + runCursor, []string{"cursor"}},
		{"cursor beyond any date", "/backtests?cursor=" + farFuture, []string{"cursor"}},
		{"status unknown", "/backtests?status=done", []string{"status"}},
		{"status in capitals", "/backtests?status=FAILED", []string{"status"}},
		{"status twice", "/backtests?status=failed&status=queued", []string{"status"}},
		{"strategy_id not an ID", "/backtests?strategy_id=7", []string{"strategy_id"}},
		{"symbol with a space", "/backtests?symbol=AC%20ME", []string{"symbol"}},
		{"correlation_id empty", "/backtests?correlation_id=", []string{"correlation_id"}},
		{"created_after a date only", "/backtests?created_after=2026-01-01", []string{"created_after"}},
		{"created_after with + read as a space", "/backtests?created_after=2026-01-01T00:00:00+02:00", []string{"created_after"}},
		{"created_before words", "/backtests?created_before=yesterday", []string{"created_before"}},
		{"filter on strategies", "/strategies?status=failed", []string{"status"}},
		{"limit on strategies", "/strategies?limit=0", []string{"limit"}},
		{
			"every bad value at once", "/backtests?limit=0&cursor=x&status=x&strategy_id=x&symbol=%20&created_after=x&created_before=x",
			[]string{"limit", "cursor", "status", "strategy_id", "symbol", "created_after", "created_before"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.call(t, http.MethodGet, tt.target, b.aliceKey, "", "")
			requireProblem(t, r, http.StatusBadRequest)
			params, _ := r.body["invalid_params"].([]any)
			var names []string
			for _, p := range params {
				m, _ := p.(map[string]any)
				name, _ := m["name"].(string)
				names = append(names, name)
				require.NotEmpty(t, m["reason"])
			}
			require.ElementsMatch(t, tt.wantParams, names, r.raw)
		})
	}

	good := []string{
		"/backtests?status=queued&limit=200",
		"/backtests?created_after=2026-01-01T00:00:00%2B02:00&created_before=2999-01-01T00:00:00.123456Z",
		"/backtests?cursor=" + runCursor + "&limit=1",
		"/backtests?symbol=ACME&strategy_id=" + sid + "&correlation_id=x",
		"/strategies?cursor=" + strategyCursor,
	}
	for _, target := range good {
		r := b.call(t, http.MethodGet, target, b.aliceKey, "", "")
		require.Equal(t, http.StatusOK, r.status, "%s: %s", target, r.raw)
	}
	for _, l := range b.logs.Lines(t) {
		require.NotEqual(t, "error", l[obs.KeyLevel], "bad parameters are not a server fault: %v", l)
	}
}

func TestListStrategies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var created []string
	for range 5 {
		created = append([]string{b.strategy(t, b.aliceKey)}, created...)
	}
	b.strategy(t, b.bobKey)
	ids, pages := b.walk(t, "/strategies?limit=2", "strategies")
	require.Equal(t, created, ids)
	require.Equal(t, 3, pages)

	r := b.call(t, http.MethodDelete, "/strategies/"+created[1], b.aliceKey, "", "")
	require.Equal(t, http.StatusNoContent, r.status, r.raw)
	ids, _ = b.walk(t, "/strategies", "strategies")
	require.Equal(t, append([]string{created[0]}, created[2:]...), ids, "a deleted strategy is not listed")
	bobs := b.call(t, http.MethodGet, "/strategies", b.bobKey, "", "")
	require.Len(t, bobs.body["strategies"], 1, "each user sees their own")
	require.True(t, strings.HasPrefix(bobs.raw, `{"strategies":[`))
}
