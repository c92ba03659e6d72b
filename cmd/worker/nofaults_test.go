//go:build !faultinject

package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/dbtest"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/logtest"
	"github.com/backtestd/backtestd/internal/obs"
)

// A production build cannot be made to fail on purpose: the fault symbols
// exist only in a build with -tags faultinject, and FAULT_INJECTION=1 is
// refused before anything starts.
func TestProductionWorkerRefusesFaultInjection(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	env := map[string]string{"DATABASE_URL": db.URL, "FAULT_INJECTION": "1"}
	out := &logtest.Sink{}
	err := run(t.Context(), []string{"worker"}, func(k string) string { return env[k] }, out)
	require.ErrorIs(t, err, jobs.ErrFaultsNotBuilt)
	require.Nil(t, out.Find(t, obs.EventWorkerStarted), "nothing started")
}
