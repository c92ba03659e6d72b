package httpx

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A status stands for its only kind, or the first listed of those that
// share it; the kinds a status does not stand for are answered by name.
func TestKindOfStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		want   ProblemKind
	}{
		{http.StatusBadRequest, ProblemValidation},
		{http.StatusNotFound, ProblemNotFound},
		{http.StatusUnprocessableEntity, ProblemUnprocessable},
		{http.StatusTooManyRequests, ProblemRateLimited},
		{http.StatusServiceUnavailable, ProblemUnavailable},
	}
	for _, tt := range tests {
		got, ok := kindOfStatus(tt.status)
		require.True(t, ok, "%d", tt.status)
		require.Equal(t, tt.want, got, "%d", tt.status)
	}
	_, ok := kindOfStatus(http.StatusTeapot)
	require.False(t, ok, "a status the API never answers has no kind")
	for _, k := range ProblemKinds() {
		info, ok := problemKindInfo(k.Kind)
		require.True(t, ok, k.Kind)
		require.Equal(t, k, info)
		_, ok = kindOfStatus(k.Status)
		require.True(t, ok, "every kind's status stands for a kind: %s", k.Kind)
	}
}

// ProblemKinds is the caller's to change: the table behind it is not.
func TestProblemKindsIsACopy(t *testing.T) {
	t.Parallel()
	kinds := ProblemKinds()
	kinds[0].Title, kinds[0].Status = "changed", http.StatusTeapot
	again := ProblemKinds()
	require.Equal(t, "Invalid request", again[0].Title)
	require.Equal(t, http.StatusBadRequest, again[0].Status)
	info, ok := problemKindInfo(ProblemValidation)
	require.True(t, ok)
	require.Equal(t, "Invalid request", info.Title)
}
