package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

func TestUnavailable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("find user: %w", io.ErrUnexpectedEOF), true}, // the connection was cut mid-query
		{fmt.Errorf("q: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("enqueue backtest: %w", pgconn.ErrConnClosed), true}, // a pooled connection found dead
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("q: %w", &pgconn.PgError{Code: "57P01"}), true}, // admin shutdown
		{fmt.Errorf("q: %w", &pgconn.PgError{Code: "08006"}), true},
		{fmt.Errorf("q: %w", &pgconn.PgError{Code: "23505"}), false}, // a unique violation is our bug
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, store.Unavailable(tt.err), "%v", tt.err)
	}
}
