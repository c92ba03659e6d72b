package enqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/backtestd/backtestd/internal/config"
	"github.com/backtestd/backtestd/internal/obs"
)

// NewInsertClient returns a River client that only inserts jobs: it has no
// workers and is never started.
func NewInsertClient(pool *pgxpool.Pool, h slog.Handler) (*river.Client[pgx.Tx], error) {
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		// An inserting client sends at most one NOTIFY per queue per
		// FetchCooldown (River's default: 100 ms), so a backtest enqueued
		// sooner after another waited for the worker's poll. Workers fetch
		// no more often than their own cooldown: notifying as often is
		// enough, and wakes them for every backtest.
		FetchCooldown: config.DefaultFetchCooldown,
		Logger:        slog.New(callerLeft{obs.NewLibraryLogger(h, obs.EventRiverLog, slog.LevelWarn).Handler()}),
	})
	if err != nil {
		return nil, fmt.Errorf("river insert client: %w", err)
	}
	return client, nil
}

// callerLeft writes at info the lines River logs as errors under a context
// its caller cancelled. An insert runs under an HTTP request's context, and
// when the client goes away River logs "Failed to send job insert
// notification" at error: the transaction is rolled back, nothing is lost,
// and nothing is wrong with the server. A deadline that passed is not a
// cancellation, and stays an error.
type callerLeft struct{ inner slog.Handler }

func (h callerLeft) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h callerLeft) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && errors.Is(ctx.Err(), context.Canceled) {
		r.Level = slog.LevelInfo
	}
	return h.inner.Handle(ctx, r)
}

func (h callerLeft) WithAttrs(attrs []slog.Attr) slog.Handler {
	return callerLeft{h.inner.WithAttrs(attrs)}
}

func (h callerLeft) WithGroup(name string) slog.Handler {
	return callerLeft{h.inner.WithGroup(name)}
}
