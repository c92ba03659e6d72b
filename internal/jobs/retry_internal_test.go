package jobs

import (
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"
)

// River's default policy jitters its delays: the instant the run is told
// is the one River gets, not a second draw; an attempt nobody planned (a
// rescue) gets the policy's own.
func TestRetryScheduleGivesRiverThePlannedInstant(t *testing.T) {
	t.Parallel()
	s := newRetrySchedule(nil) // River's default policy
	job := &rivertype.JobRow{ID: 7, Attempt: 3, Errors: make([]rivertype.AttemptError, 2)}

	planned := s.plan(job, 0)
	require.Equal(t, planned, s.NextRetry(job), "River gets the planned instant")
	// Attempt 3 with two errors: 3^4 = 81 s, up to 10% either way.
	delay := time.Until(planned)
	require.Greater(t, delay, 72*time.Second)
	require.Less(t, delay, 90*time.Second)

	require.NotEqual(t, planned, s.NextRetry(job), "once asked, the plan is gone: the policy draws again")

	other := &rivertype.JobRow{ID: 8, Attempt: 1}
	s.plan(job, 0)
	require.NotEqual(t, planned, s.NextRetry(other), "plans are per job and attempt")
	require.Len(t, s.planned, 1)

	// A delay of the attempt's own (a fault's) replaces the policy's, and
	// River gets that instant too.
	s.planned = map[retryKey]time.Time{}
	deferred := s.plan(job, time.Hour)
	require.Greater(t, time.Until(deferred), 59*time.Minute)
	require.Equal(t, deferred, s.NextRetry(job))
}
