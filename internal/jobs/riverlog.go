package jobs

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/backtestd/backtestd/internal/obs"
)

// River's executor writes lines of its own about a job, with its job_id but
// outside all middleware, so without the job's context: no correlation_id,
// no run_id. Those it writes when an attempt fails repeat what the lifecycle
// middleware has already logged with the context (job_failed, or
// job_interrupted), and an uncorrelated copy would show in the errors recipe
// while trace and follow miss it. So riverLogHandler drops those and gives
// River's other lines about a job the job's fields. River still saves the
// failure with its stack on the job row (errors[].trace): dropping the
// line loses nothing.
//
// River's messages are "jobexecutor.JobExecutor: <text>"; these texts are the ones
// (river v0.51) of the failures the lifecycle logs. River writes the panic
// recovery line first, then exactly one of the others (reportError's), the
// last it writes about the attempt.
const riverPanicRecovery = "panic recovery; possible bug with Worker"

var riverAttemptFailed = map[string]bool{
	"Job errored":              true,
	"Job errored; retrying":    true,
	"Job panicked":             true,
	"Job cancelled explicitly": true,
	"Job stopped due to client shutdown; retrying": true,
	"Job snoozed": true,
}

// maxTrackedJobs bounds jobTracker: far above any worker's concurrency, so
// only a leak could reach it, and then River's lines go out uncorrelated
// rather than memory growing.
const maxTrackedJobs = 10_000

// jobTracker knows the fields of the jobs being worked, and which of them
// failed with the failure logged, from the lifecycle middleware until
// River's last line about the attempt.
type jobTracker struct {
	mu   sync.Mutex
	jobs map[int64]*trackedJob
	// logged counts the jobs whose failure was logged and whose River
	// lines are still to come: while there are any, River's lines below
	// its level must reach Handle to be recognised.
	logged atomic.Int64
}

type trackedJob struct {
	attrs  []slog.Attr
	logged bool
}

func newJobTracker() *jobTracker {
	return &jobTracker{jobs: map[int64]*trackedJob{}}
}

// working notes that job id is being worked, with attrs its fields.
func (t *jobTracker) working(id int64, attrs []slog.Attr) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.jobs[id]; ok && prev.logged {
		t.logged.Add(-1) // a rescued attempt whose River lines never came
	}
	if len(t.jobs) < maxTrackedJobs {
		t.jobs[id] = &trackedJob{attrs: attrs}
	}
}

// finished notes that the attempt of job id ended; failed says the
// lifecycle logged how, so River's lines about it are dropped. A success
// is forgotten at once: River writes nothing more about it at info or above.
func (t *jobTracker) finished(id int64, failed bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	switch {
	case !ok:
	case !failed:
		delete(t.jobs, id)
	case !j.logged:
		j.logged = true
		t.logged.Add(1)
	}
}

// line decides what becomes of River's line text about job id: dropped, or
// written with attrs (nil for a job not tracked).
func (t *jobTracker) line(id int64, text string) (attrs []slog.Attr, drop bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	if !ok {
		return nil, false
	}
	if !j.logged {
		return j.attrs, false
	}
	if riverAttemptFailed[text] {
		delete(t.jobs, id)
		t.logged.Add(-1)
		return nil, true
	}
	return j.attrs, text == riverPanicRecovery
}

// riverLogHandler is the handler River's client logs through (see above).
type riverLogHandler struct {
	next slog.Handler
	jobs *jobTracker
}

func (h *riverLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || h.jobs.logged.Load() > 0
}

func (h *riverLogHandler) Handle(ctx context.Context, r slog.Record) error {
	id, ok := riverJobID(r)
	if ok {
		_, text, _ := strings.Cut(r.Message, ": ")
		attrs, drop := h.jobs.line(id, text)
		if drop {
			return nil
		}
		if attrs != nil {
			ctx = obs.WithAttrs(ctx, attrs...)
			r = withoutKeys(r, obs.KeyJobID, obs.KeyJobKind) // the context has them: no key twice
		}
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *riverLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &riverLogHandler{next: h.next.WithAttrs(attrs), jobs: h.jobs}
}

func (h *riverLogHandler) WithGroup(name string) slog.Handler {
	return &riverLogHandler{next: h.next.WithGroup(name), jobs: h.jobs}
}

// riverJobID returns the job_id River put on r.
func riverJobID(r slog.Record) (id int64, ok bool) {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == obs.KeyJobID && a.Value.Kind() == slog.KindInt64 {
			id, ok = a.Value.Int64(), true
			return false
		}
		return true
	})
	return id, ok
}

func withoutKeys(r slog.Record, keys ...string) slog.Record {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		for _, k := range keys {
			if a.Key == k {
				return true
			}
		}
		out.AddAttrs(a)
		return true
	})
	return out
}
