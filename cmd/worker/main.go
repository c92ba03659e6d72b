// Command worker runs backtest jobs from the River queue "backtests";
// worker version prints the build's version and commit.
//
// Settings come from the environment (see docs/operations.md). Log lines are
// JSON on stdout. On SIGTERM it stops taking jobs, waits SHUTDOWN_TIMEOUT for
// the running ones, then cancels them: River puts those back in the queue.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/backtestd/backtestd/internal/buildinfo"
	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/jobargs"
	"github.com/backtestd/backtestd/internal/jobs"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
	"github.com/backtestd/backtestd/migrations"
)

func main() {
	// A reader of stdout that goes away must not kill the worker: with
	// SIGPIPE ignored, writes fail with EPIPE and the logger drops them.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 2 && args[1] == "version" {
		_, err := fmt.Fprintln(stdout, "worker", buildinfo.Read())
		return err
	}
	if len(args) > 1 {
		return fmt.Errorf("worker takes no arguments but version (got %q); settings come from the environment", args[1:])
	}
	cfg, err := config.LoadWorker(getenv)
	if err != nil {
		return err
	}
	h := obs.NewHandler(stdout, obs.Options{Service: "worker", Level: cfg.LogLevel})
	logger := slog.New(h)

	pool, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Check(ctx, pool, obs.NewLibraryLogger(h, obs.EventGooseLog, slog.LevelWarn)); err != nil {
		return err
	}

	metrics := jobs.NewMetrics(pool)
	client, err := jobs.NewWorkerClient(pool, h, logger, jobs.ClientConfig{
		Concurrency:       cfg.Concurrency,
		FetchCooldown:     cfg.FetchCooldown,
		FetchPollInterval: cfg.FetchPollInterval,
		JobTimeout:        cfg.JobTimeout,
		RescueAfter:       cfg.RescueAfter,
		RiverLogLevel:     cfg.RiverLogLevel,
		FaultInjection:    cfg.FaultInjection,
		ReconcileEvery:    cfg.ReconcileInterval,
		Metrics:           metrics,
	})
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" {
		stopMetrics, err := serveMetrics(ctx, h, logger, cfg.MetricsAddr, metrics)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	// The client's own context outlives the signal: stopping is done below,
	// softly first, so running jobs get the chance to finish.
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start river client: %w", err)
	}
	queues := []string{jobargs.Queue}
	version := slog.String(obs.KeyVersion, buildinfo.Read().Version)
	if cfg.FaultInjection {
		logger.WarnContext(ctx, obs.EventWorkerStarted, slog.Any(obs.KeyQueues, queues),
			slog.Int(obs.KeyConcurrency, cfg.Concurrency), version, slog.Bool(obs.KeyFaultInject, true))
	} else {
		logger.InfoContext(ctx, obs.EventWorkerStarted, slog.Any(obs.KeyQueues, queues), slog.Int(obs.KeyConcurrency, cfg.Concurrency), version)
	}
	<-ctx.Done()

	logger.InfoContext(ctx, obs.EventWorkerStopping, slog.Any(obs.KeyQueues, queues), slog.Int(obs.KeyConcurrency, cfg.Concurrency))
	err = stop(ctx, client, cfg.ShutdownTimeout)
	logger.InfoContext(ctx, obs.EventWorkerStopped, slog.Any(obs.KeyQueues, queues), slog.Int(obs.KeyConcurrency, cfg.Concurrency))
	return err
}

// serveMetrics serves the worker's metrics at /metrics on addr until the
// returned func is called; the metrics are counted whether or not they are
// served.
func serveMetrics(ctx context.Context, h slog.Handler, logger *slog.Logger, addr string, metrics *jobs.Metrics) (stop func(), err error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", addr, config.EnvMetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	// A scraper is trusted but may be slow or broken: bound what it holds.
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(
			obs.NewLibraryLogger(h, obs.EventHTTPServerLog, slog.LevelWarn).Handler(), slog.LevelWarn),
	}
	logger.InfoContext(ctx, obs.EventMetricsListening, slog.String(obs.KeyAddr, ln.Addr().String()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // ends with ErrServerClosed when stopped
	}()
	return func() {
		_ = srv.Close() // a scrape cut short is retried at the next interval
		<-done
	}, nil
}

// stop waits up to timeout for the running jobs, then cancels those left;
// River puts them back in the queue. ctx is already done: only its values
// are used.
func stop(ctx context.Context, client *river.Client[pgx.Tx], timeout time.Duration) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := client.Stop(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer hcancel()
		err = client.StopAndCancel(hctx)
	}
	if err != nil {
		return fmt.Errorf("stop river client: %w", err)
	}
	return nil
}
