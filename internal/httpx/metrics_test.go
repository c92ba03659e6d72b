package httpx

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

func TestMetricsCountRequestsByRouteTemplate(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := obs.NewLogger(&buf, obs.Options{Service: "server"})
	metrics := NewMetrics()
	r := mux.NewRouter()
	r.NotFoundHandler = statusHandler(http.StatusNotFound, "No such resource.")
	r.HandleFunc("/items/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }).
		Methods(http.MethodGet)
	r.Handle(MetricsPath, metrics.Handler())
	r.Use(routeTemplate)
	h := observe(logger, metrics, r)

	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/items/7"},
		{http.MethodGet, "/items/8"},
		{http.MethodGet, "/no/such/user-1234"},
		{"BREW", "/items/9"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequestWithContext(t.Context(), req.method, req.path, nil))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, MetricsPath, nil))
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err)

	got := map[string]float64{}
	for _, m := range families["backtestd_http_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		got[labels["route"]+" "+labels["method"]+" "+labels["code"]] = m.GetCounter().GetValue()
	}
	require.Equal(t, map[string]float64{
		"/items/{id} GET 204": 2,
		"none GET 404":        1,
		"none other 405":      1, // an unknown method is not a label of its own
	}, got)
	histogram := families["backtestd_http_request_duration_seconds"].GetMetric()
	require.NotEmpty(t, histogram)
	var counted uint64
	for _, m := range histogram {
		counted += m.GetHistogram().GetSampleCount()
	}
	require.Equal(t, uint64(4), counted)
	for _, raw := range []string{"/items/7", "user-1234", "BREW"} {
		require.NotContains(t, body, raw, "no raw path or method in the labels")
	}
	require.Contains(t, families, "go_goroutines")
}
