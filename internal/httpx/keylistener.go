package httpx

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/backtestd/backtestd/internal/obs"
)

// RevocationChannel is where api_keys' trigger announces a key that no
// longer names its user: the key's SHA-256 hash in hex, or an empty payload
// for "forget every key" (migration 00010).
const RevocationChannel = "api_key_revoked"

// KeyListener keeps a KeyCache in step with api_keys: it LISTENs on
// RevocationChannel on a connection of its own and drops each announced key
// from the cache. While it is not listening (before the first LISTEN, after
// losing its connection) the cache is suspended, and every LISTEN starts
// from an empty cache: a revocation it could not hear cannot have left a key
// behind.
type KeyListener struct {
	// Logger writes api_key_listener_started, api_key_listener_failed and
	// api_key_invalidated.
	Logger *slog.Logger
	// Connect opens the dedicated connection; the listener closes it.
	Connect func(ctx context.Context) (*pgx.Conn, error)
	// Cache is the cache kept in step.
	Cache *KeyCache
	// CheckEvery is how long the listener waits for a notification before
	// it pings its connection, so a connection lost without a word is
	// found. Zero means 5 seconds.
	CheckEvery time.Duration
	// RetryMin and RetryMax bound the wait before reconnecting, doubled
	// after each failed attempt. Zero means 1 second and 30 seconds.
	RetryMin, RetryMax time.Duration
}

// Run listens until ctx ends, reconnecting whenever the connection is lost.
// It logs nothing once ctx has ended, and leaves the cache suspended.
func (l *KeyListener) Run(ctx context.Context) {
	check := cmp.Or(l.CheckEvery, 5*time.Second)
	retryMin, retryMax := cmp.Or(l.RetryMin, time.Second), cmp.Or(l.RetryMax, 30*time.Second)
	l.Cache.Suspend()
	defer l.Cache.Suspend()
	delay := retryMin
	for {
		listened, err := l.listen(ctx, check)
		if ctx.Err() != nil {
			return
		}
		dropped := l.Cache.Suspend()
		if listened {
			delay = retryMin
		}
		l.Logger.WarnContext(ctx, obs.EventKeyListenerFailed,
			slog.String(obs.KeyError, err.Error()), slog.String(obs.KeyErrorType, obs.ErrorType(err)),
			slog.Int(obs.KeyDropped, dropped))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMax)
	}
}

// listen runs one connection: LISTEN, then each notification until the
// connection fails. It reports whether the LISTEN succeeded.
func (l *KeyListener) listen(ctx context.Context, check time.Duration) (bool, error) {
	conn, err := l.Connect(ctx)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) //nolint:errcheck // the connection is dropped either way
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{RevocationChannel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen on %s: %w", RevocationChannel, err)
	}
	dropped := l.Cache.Resume()
	l.Logger.InfoContext(ctx, obs.EventKeyListenerStarted, slog.Int(obs.KeyDropped, dropped))
	for {
		wctx, cancel := context.WithTimeout(ctx, check)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case err != nil && wctx.Err() != nil:
			// Quiet for a while: make sure the silence is not a dead
			// connection's.
			pctx, cancel := context.WithTimeout(ctx, max(check, pingTimeout))
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping the listening connection: %w", err)
			}
		case err != nil:
			return true, fmt.Errorf("wait for notifications: %w", err)
		default:
			l.invalidate(ctx, n.Payload)
		}
	}
}

// invalidate drops the announced key, or every key when the payload names
// none (a TRUNCATE) or cannot be read.
func (l *KeyListener) invalidate(ctx context.Context, payload string) {
	hash, err := hex.DecodeString(payload)
	var dropped int
	if err != nil || len(hash) == 0 {
		dropped = l.Cache.Clear()
	} else {
		dropped = l.Cache.Drop(hash)
	}
	l.Logger.InfoContext(ctx, obs.EventAPIKeyInvalidated, slog.Int(obs.KeyDropped, dropped))
}

// pingTimeout is the least time a ping of the listening connection gets: a
// busy database is not a dead one, and every reconnection empties the cache.
const pingTimeout = 5 * time.Second
