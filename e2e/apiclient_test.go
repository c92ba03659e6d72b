package e2e

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	apitypes "github.com/oapi-codegen/runtime/types"
	"github.com/stretchr/testify/require"

	apiclient "github.com/backtestd/backtestd/api/client"
	"github.com/backtestd/backtestd/internal/apitest"
)

// contract is the API's document, loaded once: every exchange of the tests'
// clients is checked against it.
var contract = sync.OnceValues(func() (*apitest.Contract, error) { return apitest.New(context.Background()) })

// checkedClient is an HTTP client whose every exchange must follow the
// API's document; one that does not fails t.
func checkedClient(t *testing.T) *http.Client {
	t.Helper()
	return &http.Client{Transport: checkedTransport(t, nil)}
}

// checkedTransport is rt (http.DefaultTransport if nil), every exchange of
// which must follow the API's document.
func checkedTransport(t *testing.T, rt http.RoundTripper) http.RoundTripper {
	t.Helper()
	c, err := contract()
	require.NoError(t, err)
	return c.Transport(t, rt)
}

// generated is the client generated from the document, with c's key and
// every exchange checked.
func (c client) generated(t *testing.T) *apiclient.ClientWithResponses {
	t.Helper()
	gc, err := apiclient.NewClientWithResponses(c.base,
		apiclient.WithHTTPClient(checkedClient(t)),
		apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+c.key)
			return nil
		}))
	require.NoError(t, err)
	return gc
}

// listRuns pages through GET /backtests with params, 200 runs a page, and
// returns every run listed. No page may hold more than asked, and the
// pages must end.
func listRuns(t *testing.T, api *apiclient.ClientWithResponses, params apiclient.ListBacktestsParams) []apiclient.Run {
	t.Helper()
	limit := 200
	params.Limit, params.Cursor = &limit, nil
	var out []apiclient.Run
	for page := 0; ; page++ {
		require.Less(t, page, 1000, "the pages never end")
		resp, err := api.ListBacktestsWithResponse(t.Context(), &params)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode(), string(resp.Body))
		require.LessOrEqual(t, len(resp.JSON200.Runs), limit)
		out = append(out, resp.JSON200.Runs...)
		if resp.JSON200.NextCursor == nil {
			return out
		}
		params.Cursor = resp.JSON200.NextCursor
	}
}

// apiDate is the API's date for s, written YYYY-MM-DD.
func apiDate(t *testing.T, s string) apitypes.Date {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	require.NoError(t, err)
	return apitypes.Date{Time: d}
}

// withCorrelationID sets the request's X-Correlation-ID, if id is not empty.
func withCorrelationID(id string) apiclient.RequestEditorFn {
	return func(_ context.Context, req *http.Request) error {
		if id != "" {
			req.Header.Set("X-Correlation-ID", id)
		}
		return nil
	}
}
