package httpx

import (
	"net/url"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// A queryReader reads each kind of parameter, and refuses a bad value with
// its reason, byte for byte what the API documents, keeping the default.
func TestQueryReader(t *testing.T) {
	t.Parallel()
	const id = "01a2175f-386b-7761-8b43-c03581273143"
	tests := []struct {
		name        string
		query       string
		read        func(qr *queryReader) any
		want        any
		wantInvalid []InvalidParam
	}{
		{
			name: "oneOf absent", query: "",
			read: func(qr *queryReader) any { return qr.oneOf("rank_by", rankMetrics, defaultRankBy) },
			want: defaultRankBy,
		},
		{
			name: "oneOf given", query: "rank_by=cagr",
			read: func(qr *queryReader) any { return qr.oneOf("rank_by", rankMetrics, defaultRankBy) },
			want: "cagr",
		},
		{
			name: "oneOf refused", query: "status=done",
			read: func(qr *queryReader) any { return qr.oneOf("status", runStatuses, "") },
			want: "",
			wantInvalid: []InvalidParam{{
				Name: "status", Reason: "must be one of queued, running, retrying, succeeded, failed, cancelled",
			}},
		},
		{
			name: "oneOf twice", query: "status=queued&status=failed",
			read: func(qr *queryReader) any { return qr.oneOf("status", runStatuses, "") },
			want: "", wantInvalid: []InvalidParam{{Name: "status", Reason: "must be given once"}},
		},
		{
			name: "intIn absent", query: "",
			read: func(qr *queryReader) any { return qr.intIn("limit", 1, MaxPageLimit, DefaultPageLimit) },
			want: DefaultPageLimit,
		},
		{
			name: "intIn at its bound", query: "top=100",
			read: func(qr *queryReader) any { return qr.intIn("top", 1, maxTop, defaultTop) },
			want: 100,
		},
		{
			name: "intIn past its bound", query: "limit=201",
			read: func(qr *queryReader) any { return qr.intIn("limit", 1, MaxPageLimit, DefaultPageLimit) },
			want: DefaultPageLimit, wantInvalid: []InvalidParam{{Name: "limit", Reason: "must be a whole number from 1 to 200"}},
		},
		{
			name: "intIn not a number", query: "top=ten",
			read: func(qr *queryReader) any { return qr.intIn("top", 1, maxTop, defaultTop) },
			want: defaultTop, wantInvalid: []InvalidParam{{Name: "top", Reason: "must be a whole number from 1 to 100"}},
		},
		{
			name: "id given", query: "sweep_id=" + id,
			read: func(qr *queryReader) any { return qr.id("sweep_id", "sweep") },
			want: uuid.MustParse(id),
		},
		{
			name: "id in capitals", query: "strategy_id=01A2175F-386B-7761-8B43-C03581273143",
			read: func(qr *queryReader) any { return qr.id("strategy_id", "strategy") },
			want: uuid.UUID{},
			wantInvalid: []InvalidParam{{
				Name: "strategy_id", Reason: "must be a strategy's id: a UUID as the API writes it, 36 characters, lowercase",
			}},
		},
		{
			name: "id refused", query: "sweep_id=nope",
			read: func(qr *queryReader) any { return qr.id("sweep_id", "sweep") },
			want: uuid.UUID{},
			wantInvalid: []InvalidParam{{
				Name: "sweep_id", Reason: "must be a sweep's id: a UUID as the API writes it, 36 characters, lowercase",
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			query, err := url.ParseQuery(tt.query)
			require.NoError(t, err)
			qr := queryReader{query: query}
			require.Equal(t, tt.want, tt.read(&qr))
			require.Equal(t, tt.wantInvalid, qr.invalid)
		})
	}
}
