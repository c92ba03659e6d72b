package jobs

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/store"
)

// How an attempt ended, the outcome label of the job metrics.
const (
	OutcomeCompleted   = "completed"
	OutcomeRetry       = "retry"       // failed; River tries again
	OutcomeFailed      = "failed"      // failed for good: the run is failed
	OutcomeInterrupted = "interrupted" // a shutdown cancelled it; back in the queue
	OutcomeCancelled   = "cancelled"   // a cancel (API, River UI) ended it; the run is cancelled
)

// QueueDepthTimeout bounds the query behind the queue depth gauge, so that
// a slow database makes a scrape report the query failed rather than hang.
const QueueDepthTimeout = 2 * time.Second

// Metrics are the worker's Prometheus metrics, on a registry of their own:
// attempts by outcome, their durations and queue waits, and River's queue
// depth read from its job table at each scrape. Labels are job kinds,
// queues, states and outcomes; never an ID.
type Metrics struct {
	registry *prometheus.Registry
	attempts *prometheus.CounterVec
	duration *prometheus.HistogramVec
	wait     *prometheus.HistogramVec
}

// NewMetrics returns the worker's metrics, reading the queue depth through
// db, with the Go runtime's and the process's on the same registry.
func NewMetrics(db store.DBTX) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "backtestd_job_attempts_total",
			Help: "Job attempts this worker finished, by job kind and outcome (completed, retry, failed, interrupted, cancelled).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "backtestd_job_attempt_duration_seconds",
			Help:    "How long job attempts took, by job kind and outcome.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 1800},
		}, []string{"kind", "outcome"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "backtestd_job_queue_wait_seconds",
			Help:    "How long jobs waited in the queue for an attempt (scheduled to started), by job kind.",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 300, 900, 3600},
		}, []string{"kind"}),
	}
	m.registry.MustRegister(m.attempts, m.duration, m.wait, newQueueDepth(db),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// Middleware returns the River worker middleware that counts and times the
// attempts. Put it after the lifecycle middleware (NewWorkerClient does).
func (m *Metrics) Middleware() rivertype.WorkerMiddleware { return &metricsMiddleware{m: m} }

// metricsMiddleware times and counts the attempts. It runs inside the
// lifecycle middleware, so it sees the attempt's outcome as River will.
type metricsMiddleware struct {
	river.MiddlewareDefaults

	m *Metrics
}

var _ rivertype.WorkerMiddleware = (*metricsMiddleware)(nil)

// Work counts one attempt, a panicking one included: the deferred count runs
// while the panic goes on to the lifecycle middleware and River.
func (mw *metricsMiddleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) (err error) {
	if job.AttemptedAt != nil {
		mw.m.wait.WithLabelValues(job.Kind).Observe(max(job.AttemptedAt.Sub(job.ScheduledAt).Seconds(), 0))
	}
	began := time.Now()
	panicked := true
	defer func() {
		outcome := attemptOutcome(ctx, job, err, panicked)
		mw.m.attempts.WithLabelValues(job.Kind, outcome).Inc()
		mw.m.duration.WithLabelValues(job.Kind, outcome).Observe(time.Since(began).Seconds())
	}()
	err = doInner(ctx)
	panicked = false
	return err
}

// attemptOutcome classifies an attempt as the lifecycle middleware logs it.
func attemptOutcome(ctx context.Context, job *rivertype.JobRow, err error, panicked bool) string {
	var cancel *rivertype.JobCancelError
	switch {
	case panicked:
	case err == nil:
		return OutcomeCompleted
	case cancelled(ctx, err):
		return OutcomeCancelled
	case interrupted(ctx, err):
		return OutcomeInterrupted
	case errors.As(err, &cancel):
		return OutcomeFailed
	}
	if job.Attempt < job.MaxAttempts {
		return OutcomeRetry
	}
	return OutcomeFailed
}

// queueDepth reports River's unfinished jobs by queue and state at each
// scrape, and whether it could count them.
type queueDepth struct {
	q       *store.Queries
	jobs    *prometheus.Desc
	success *prometheus.Desc
}

func newQueueDepth(db store.DBTX) *queueDepth {
	return &queueDepth{
		q: store.New(db),
		jobs: prometheus.NewDesc("backtestd_queue_jobs",
			"River jobs not yet finished, by queue and state (available, pending, retryable, running, scheduled), at the scrape.",
			[]string{"queue", "state"}, nil),
		success: prometheus.NewDesc("backtestd_queue_depth_up",
			"1 if the scrape counted the queue's jobs, 0 if the query failed or took longer than 2s (backtestd_queue_jobs is then absent).",
			nil, nil),
	}
}

func (c *queueDepth) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.success
}

func (c *queueDepth) Collect(ch chan<- prometheus.Metric) {
	// Collect has no context of its own; the scrape's deadline is the
	// scraper's business, the query's is this.
	ctx, cancel := context.WithTimeout(context.Background(), QueueDepthTimeout)
	defer cancel()
	counts, err := c.q.UnfinishedJobCounts(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 1)
	// Every state of the worker's queues is reported, 0 included, so that
	// an empty queue is a 0 rather than a missing series.
	type key struct{ queue, state string }
	depth := map[key]int64{}
	for _, queue := range []string{jobargs.Queue, MaintenanceQueue} {
		for _, state := range store.UnfinishedJobStates {
			depth[key{queue, state}] = 0
		}
	}
	for _, jc := range counts {
		depth[key{jc.Queue, jc.State}] = jc.Count
	}
	for k, n := range depth {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(n), k.queue, k.state)
	}
}
