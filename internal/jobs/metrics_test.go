package jobs_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/backtest"
	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/fixture"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/store"
)

// scrapeMetrics reads m's exposition as a scraper would.
func scrapeMetrics(t *testing.T, m *jobs.Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	require.NoError(t, err)
	return families
}

// metricValue sums the samples of family whose labels include want: counter
// and gauge values, histogram sample counts.
func metricValue(families map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	var sum float64
	for _, m := range families[family].GetMetric() {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			match = match && found
		}
		if !match {
			continue
		}
		sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
	}
	return sum
}

func TestMetricsCountAttemptsByOutcome(t *testing.T) {
	t.Parallel()
	panicking := func(context.Context, backtest.Input) (backtest.Result, error) { panic("engine exploded") }
	failing := func(context.Context, backtest.Input) (backtest.Result, error) {
		return backtest.Result{}, errors.New("flaky")
	}
	tests := []struct {
		name        string
		engine      jobs.Engine
		maxAttempts int
		wantOutcome string
	}{
		{name: "completed", wantOutcome: jobs.OutcomeCompleted},
		{name: "error with attempts left", engine: failing, wantOutcome: jobs.OutcomeRetry},
		{name: "error on the last attempt", engine: failing, maxAttempts: 1, wantOutcome: jobs.OutcomeFailed},
		{name: "panic with attempts left", engine: panicking, wantOutcome: jobs.OutcomeRetry},
		{name: "panic on the last attempt", engine: panicking, maxAttempts: 1, wantOutcome: jobs.OutcomeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := t.Context()
			metrics := jobs.NewMetrics(b.db.Pool)
			tx, err := b.db.Pool.Begin(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
			q := store.New(tx)
			strategy := fixture.Strategy(t, q, b.user.ID, backtest.KindBuyAndHold, `{}`)
			nb := fixture.Backtest(b.user.ID, strategy.ID, "cid-metrics", "ACME", 60)
			run, err := q.InsertRun(ctx, store.NewRun{
				ID: uuid.Must(uuid.NewV7()), UserID: b.user.ID, StrategyID: strategy.ID,
				CorrelationID: nb.CorrelationID, Symbol: nb.Symbol, Start: nb.Start, End: nb.End, InitialCash: nb.InitialCash,
			})
			require.NoError(t, err)
			w := rivertest.NewWorker(t, riverpgxv5.New(nil), &river.Config{
				Middleware: []rivertype.Middleware{jobs.NewLifecycle(b.logger, tx), metrics.Middleware()},
			}, jobs.NewWorker(tx, b.logger, jobs.WorkerConfig{Engine: tt.engine}))
			_, err = w.Work(ctx, t, tx, jobargs.Backtest{
				RunID: run.ID, CorrelationID: nb.CorrelationID, UserID: b.user.ID, StrategyID: strategy.ID,
			}, &river.InsertOpts{MaxAttempts: tt.maxAttempts})
			if tt.engine == nil {
				require.NoError(t, err)
			}

			families := scrapeMetrics(t, metrics)
			kind := map[string]string{"kind": jobargs.KindBacktest}
			require.InDelta(t, 1, metricValue(families, "backtestd_job_attempts_total", kind), 0, "one attempt, counted once")
			want := map[string]string{"kind": jobargs.KindBacktest, "outcome": tt.wantOutcome}
			require.InDelta(t, 1, metricValue(families, "backtestd_job_attempts_total", want), 0)
			require.InDelta(t, 1, metricValue(families, "backtestd_job_attempt_duration_seconds", want), 0)
			require.InDelta(t, 1, metricValue(families, "backtestd_job_queue_wait_seconds", kind), 0)
		})
	}
}

func TestMetricsReportTheQueueDepth(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	metrics := jobs.NewMetrics(b.db.Pool)
	available := map[string]string{"queue": jobargs.Queue, "state": "available"}

	families := scrapeMetrics(t, metrics)
	require.InDelta(t, 1, metricValue(families, "backtestd_queue_depth_up", nil), 0)
	require.InDelta(t, 0, metricValue(families, "backtestd_queue_jobs", available), 0)
	require.Len(t, families["backtestd_queue_jobs"].GetMetric(), 2*len(store.UnfinishedJobStates), "an empty queue is 0s, not nothing")

	client, err := enqueue.NewInsertClient(b.db.Pool, b.handler)
	require.NoError(t, err)
	for range 3 {
		_, err := client.Insert(ctx, jobargs.Backtest{RunID: uuid.New()}, nil)
		require.NoError(t, err)
	}
	_, err = client.Insert(ctx, jobargs.Backtest{RunID: uuid.New()}, &river.InsertOpts{Pending: true})
	require.NoError(t, err)
	families = scrapeMetrics(t, metrics)
	require.InDelta(t, 3, metricValue(families, "backtestd_queue_jobs", available), 0)
	require.InDelta(t, 1, metricValue(families, "backtestd_queue_jobs", map[string]string{"queue": jobargs.Queue, "state": "pending"}), 0)

	// A database out of reach: the scrape still answers, and says so.
	broken, err := store.Open(ctx, b.db.URL)
	require.NoError(t, err)
	broken.Close()
	families = scrapeMetrics(t, jobs.NewMetrics(broken))
	require.InDelta(t, 0, metricValue(families, "backtestd_queue_depth_up", nil), 0)
	require.NotContains(t, families, "backtestd_queue_jobs")
	require.Contains(t, families, "go_goroutines")
}
