package jobs

import (
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// retrySchedule decides once when River retries a failed attempt. The
// lifecycle middleware asks first, to tell the run when its next attempt
// comes (next_attempt_at); River's client asks next, as its retry policy,
// and gets the same instant. Computing it twice would not do: River's
// default policy jitters its delays.
type retrySchedule struct {
	policy river.ClientRetryPolicy

	mu      sync.Mutex
	planned map[retryKey]time.Time
}

// retryKey is one attempt of one job.
type retryKey struct {
	job     int64
	attempt int
}

var _ river.ClientRetryPolicy = (*retrySchedule)(nil)

// newRetrySchedule returns a schedule following policy, River's default
// when nil.
func newRetrySchedule(policy river.ClientRetryPolicy) *retrySchedule {
	if policy == nil {
		policy = &river.DefaultClientRetryPolicy{}
	}
	return &retrySchedule{policy: policy, planned: map[retryKey]time.Time{}}
}

// plan returns when job, whose attempt failed, will be retried, and keeps
// it for River's call of NextRetry. job is the row River will pass; after,
// if positive, replaces the policy's delay.
func (s *retrySchedule) plan(job *rivertype.JobRow, after time.Duration) time.Time {
	var at time.Time
	if after > 0 {
		at = time.Now().Add(after)
	} else {
		at = s.policy.NextRetry(job)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// A remote cancel that comes after the lifecycle looked leaves an
	// entry River never asks for; past the bound, River computes its own
	// (an instant the run does not have) rather than memory growing.
	if len(s.planned) < maxTrackedJobs {
		s.planned[retryKey{job.ID, job.Attempt}] = at
	}
	return at
}

// NextRetry is River's question: the instant planned for job's attempt,
// or the policy's answer for one not planned (a job rescued from a dead
// worker, say).
func (s *retrySchedule) NextRetry(job *rivertype.JobRow) time.Time {
	s.mu.Lock()
	at, ok := s.planned[retryKey{job.ID, job.Attempt}]
	delete(s.planned, retryKey{job.ID, job.Attempt})
	s.mu.Unlock()
	if ok {
		return at
	}
	return s.policy.NextRetry(job)
}
