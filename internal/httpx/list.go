package httpx

import (
	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// The size of a page of a list: limit is 1 to MaxPageLimit, DefaultPageLimit
// when not given.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// Which list a cursor belongs to: a cursor of one list is refused by the
// other, rather than read as a position it never was.
const (
	cursorRuns       byte = 'r'
	cursorStrategies byte = 's'
)

// cursorLength is a cursor's decoded size: the list's byte, the last item's
// created_at in microseconds (PostgreSQL's precision), its ID.
const cursorLength = 1 + 8 + 16

// encodeCursor writes the position after the last item of a page as an
// opaque token: base64url of the list's byte, created_at and ID. Clients
// must not build cursors; one they change is read as a position or refused,
// and since every query is bounded to the user's own rows, it can never
// reach another user's.
func encodeCursor(list byte, pos store.Position) string {
	b := make([]byte, 0, cursorLength)
	b = append(b, list)
	b = binary.BigEndian.AppendUint64(b, uint64(pos.CreatedAt.UnixMicro())) //nolint:gosec // read back as int64
	b = append(b, pos.ID[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor reads a cursor of list, or returns false for anything else.
func decodeCursor(list byte, s string) (store.Position, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != cursorLength || b[0] != list {
		return store.Position{}, false
	}
	micros := int64(binary.BigEndian.Uint64(b[1:9])) //nolint:gosec // written from an int64
	at := time.UnixMicro(micros).UTC()
	// Within PostgreSQL's timestamptz range, so that a forged cursor is a
	// 400 here and never an error from the database.
	if at.Year() < 1 || at.Year() > 9999 {
		return store.Position{}, false
	}
	id, err := uuid.FromBytes(b[9:])
	if err != nil {
		return store.Position{}, false
	}
	return store.Position{CreatedAt: at, ID: id}, true
}

// page reads limit and cursor.
func (qr *queryReader) page(list byte) store.Page {
	p := store.Page{Limit: qr.intIn("limit", 1, MaxPageLimit, DefaultPageLimit)}
	if v, ok := qr.one("cursor"); ok {
		pos, valid := decodeCursor(list, v)
		if !valid {
			qr.fail("cursor", "must be a next_cursor this list returned, unchanged")
		} else {
			p.After = &pos
		}
	}
	return p
}

// correlationIDReason is the rule of the correlation_id filter: the
// header's, since a value the header would refuse was never stored.
const correlationIDReason = "must be given once, 1 to 128 characters of A-Z a-z 0-9 . _ : + = / @ - " +
	"(in a query, + means a space: write it as %2B)"

// runStatuses are the statuses a run may have, the values of the status
// filter.
var runStatuses = []string{
	store.StatusQueued, store.StatusRunning, store.StatusRetrying,
	store.StatusSucceeded, store.StatusFailed, store.StatusCancelled,
}

// runFilter reads the filters of GET /backtests.
func (qr *queryReader) runFilter() store.RunFilter {
	var f store.RunFilter
	f.Status = qr.oneOf("status", runStatuses, "")
	f.StrategyID = qr.id("strategy_id", "strategy")
	if v, ok := qr.one("symbol"); ok {
		if symbol, valid := parseSymbol(v); valid {
			f.Symbol = symbol
		} else {
			qr.fail("symbol", symbolReason)
		}
	}
	if values, ok := qr.query["correlation_id"]; ok {
		if len(values) == 1 && obs.ValidCorrelationID(values[0]) {
			f.CorrelationID = values[0]
		} else {
			qr.fail("correlation_id", correlationIDReason)
		}
	}
	f.SweepID = qr.id("sweep_id", "sweep")
	f.CreatedAfter = qr.time("created_after")
	f.CreatedBefore = qr.time("created_before")
	return f
}

// nextPage sets the Link header to the next page, the request's own query
// with the new cursor, and returns the cursor; nil when there is no next
// page. The link is relative to the request's URL (RFC 8288 allows it):
// the server cannot know the scheme and host its clients reach it by.
func nextPage(w http.ResponseWriter, r *http.Request, query url.Values, list byte, more bool, last store.Position) *string {
	if !more {
		return nil
	}
	cursor := encodeCursor(list, last)
	next := url.Values{}
	for k, v := range query {
		next[k] = v
	}
	next.Set("cursor", cursor)
	w.Header().Set("Link", "<"+r.URL.Path+"?"+next.Encode()+`>; rel="next"`)
	return &cursor
}

// runList is a page of GET /backtests.
type runList struct {
	Runs       []runJSON `json:"runs"`
	NextCursor *string   `json:"next_cursor"`
}

// handleListBacktests answers a page of the user's runs, newest first,
// filtered by the query.
func handleListBacktests(logger *slog.Logger, q *store.Queries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query, ok := queryParams(w, r, "limit", "cursor", "status", "strategy_id", "symbol", "correlation_id",
			"sweep_id", "created_after", "created_before")
		if !ok {
			return
		}
		qr := queryReader{query: query}
		page := qr.page(cursorRuns)
		filter := qr.runFilter()
		if qr.answered(w, r) {
			return
		}
		runs, more, err := q.ListRuns(r.Context(), userFrom(r.Context()).ID, filter, page)
		if err != nil {
			serverError(logger, w, r, err)
			return
		}
		rendered, err := renderRuns(r.Context(), q, runs)
		if err != nil {
			serverError(logger, w, r, err)
			return
		}
		out := runList{Runs: rendered}
		if len(runs) > 0 {
			last := runs[len(runs)-1]
			out.NextCursor = nextPage(w, r, query, cursorRuns, more, store.Position{CreatedAt: last.CreatedAt, ID: last.ID})
		}
		writeJSON(w, "application/json", http.StatusOK, out)
	})
}
