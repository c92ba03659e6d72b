package httpx

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFailureLimiter(t *testing.T) {
	t.Parallel()
	type testBundle struct {
		limiter *failureLimiter
		now     time.Time
	}
	// setup's limiter reads the bundle's clock, which the test moves.
	setup := func(t *testing.T, addresses int) *testBundle {
		t.Helper()
		bundle := &testBundle{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
		bundle.limiter = newFailureLimiter(AuthLimit{
			Burst: 3, Every: 10 * time.Second, Addresses: addresses, Now: func() time.Time { return bundle.now },
		})
		return bundle
	}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	fail := func(t *testing.T, bundle *testBundle, addr netip.Addr, n int) {
		t.Helper()
		for range n {
			_, _, ok := bundle.limiter.take(addr)
			require.True(t, ok)
		}
	}

	t.Run("burst, then one per interval", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, 100)
		fail(t, bundle, a, 3)
		_, retry, ok := bundle.limiter.take(a)
		require.False(t, ok)
		require.Equal(t, 10*time.Second, retry)
		bundle.now = bundle.now.Add(4 * time.Second)
		_, retry, ok = bundle.limiter.take(a)
		require.False(t, ok, "a refused attempt spends nothing and waits the rest")
		require.Equal(t, 6*time.Second, retry)
		bundle.now = bundle.now.Add(6 * time.Second)
		fail(t, bundle, a, 1)
		_, _, ok = bundle.limiter.take(a)
		require.False(t, ok)
	})

	t.Run("addresses are apart", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, 100)
		fail(t, bundle, a, 3)
		fail(t, bundle, b, 3)
		_, _, ok := bundle.limiter.take(a)
		require.False(t, ok)
	})

	t.Run("refund: successes cost nothing", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, 100)
		for range 10 {
			refund, _, ok := bundle.limiter.take(a)
			require.True(t, ok)
			refund()
		}
		fail(t, bundle, a, 3)
	})

	t.Run("an IPv6 /64 is one address", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, 100)
		fail(t, bundle, netip.MustParseAddr("2001:db8:1:2::1"), 3)
		_, _, ok := bundle.limiter.take(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
		require.False(t, ok)
		fail(t, bundle, netip.MustParseAddr("2001:db8:1:3::1"), 3)
	})

	t.Run("bounded: newcomers share one budget when full", func(t *testing.T) {
		t.Parallel()
		bundle := setup(t, 2)
		fail(t, bundle, a, 1)
		fail(t, bundle, b, 1)
		// Two more addresses find no room: they share the overflow budget.
		fail(t, bundle, netip.MustParseAddr("198.51.100.1"), 2)
		fail(t, bundle, netip.MustParseAddr("198.51.100.2"), 1)
		_, _, ok := bundle.limiter.take(netip.MustParseAddr("198.51.100.3"))
		require.False(t, ok, "the shared budget is spent")
		require.Equal(t, 2, bundle.limiter.tracked())
		fail(t, bundle, a, 2) // the tracked ones keep their own

		// Once a and b have regained their whole budget, their slots are
		// free again.
		bundle.now = bundle.now.Add(30 * time.Second)
		fail(t, bundle, netip.MustParseAddr("198.51.100.3"), 3)
		require.Equal(t, 1, bundle.limiter.tracked())
	})

	t.Run("off", func(t *testing.T) {
		t.Parallel()
		off := newFailureLimiter(AuthLimit{})
		require.Nil(t, off)
		for range 100 {
			_, _, ok := off.take(a)
			require.True(t, ok)
		}
	})
}
