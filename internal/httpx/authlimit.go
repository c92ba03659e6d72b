package httpx

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// AuthLimit is a budget of failed authentications per client address: a
// token bucket that holds Burst failures and regains one every Every.
type AuthLimit struct {
	// Burst is how many failures an address may make in a row. Zero turns
	// the limit off.
	Burst int
	// Every is how long an address waits to regain one failure.
	Every time.Duration
	// Addresses is how many addresses are tracked at once; past it, the
	// addresses that find no room share one bucket.
	Addresses int
	// Now tells the time the budgets refill by. Defaults to time.Now;
	// tests set their own clock.
	Now func() time.Time
}

// failureLimiter keeps an AuthLimit for every client address it has seen
// fail, in a map bounded by AuthLimit.Addresses, so that many addresses
// cannot exhaust memory. IPv6 addresses count by their /64, which one host
// usually has to itself. A nil *failureLimiter limits nothing.
type failureLimiter struct {
	limit AuthLimit

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	overflow  bucket
	lastSweep time.Time
}

// bucket holds an address's remaining failures as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

func newFailureLimiter(limit AuthLimit) *failureLimiter {
	if limit.Burst <= 0 || limit.Every <= 0 {
		return nil
	}
	limit.Addresses = max(limit.Addresses, 1)
	return &failureLimiter{
		limit:    limit,
		buckets:  make(map[netip.Addr]*bucket),
		overflow: bucket{tokens: float64(limit.Burst)},
	}
}

// now is the limit's time.
func (l *failureLimiter) now() time.Time {
	if l.limit.Now == nil {
		return time.Now()
	}
	return l.limit.Now()
}

// take spends one failure of addr's budget before the attempt is checked,
// so that concurrent attempts cannot overdraw it. When the budget is spent
// it returns ok false and how long until one more attempt is allowed.
// Otherwise refund gives the failure back, for an attempt that succeeded
// (or could not be checked): only failures count.
func (l *failureLimiter) take(addr netip.Addr) (refund func(), retryAfter time.Duration, ok bool) {
	if l == nil {
		return func() {}, 0, true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketFor(limitKey(addr), now)
	l.refill(b, now)
	if b.tokens < 1 {
		return nil, time.Duration((1 - b.tokens) * float64(l.limit.Every)), false
	}
	b.tokens--
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		b.tokens = min(b.tokens+1, float64(l.limit.Burst))
	}, 0, true
}

// tracked reports how many addresses have a bucket of their own.
func (l *failureLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// limitKey is the address a budget belongs to: IPv6 addresses by their /64.
func limitKey(a netip.Addr) netip.Addr {
	if a.Is6() {
		p, err := a.WithZone("").Prefix(64)
		if err == nil {
			return p.Addr()
		}
	}
	return a
}

func (l *failureLimiter) bucketFor(key netip.Addr, now time.Time) *bucket {
	if b, ok := l.buckets[key]; ok {
		return b
	}
	if len(l.buckets) >= l.limit.Addresses && now.Sub(l.lastSweep) >= l.limit.Every {
		// A full bucket is the same as none: forget those. Sweeping at most
		// once per Every keeps a flood of new addresses from making every
		// failure walk the whole map.
		l.lastSweep = now
		for k, b := range l.buckets {
			l.refill(b, now)
			if b.tokens >= float64(l.limit.Burst) {
				delete(l.buckets, k)
			}
		}
	}
	if len(l.buckets) >= l.limit.Addresses {
		// Still full, of addresses that are failing: the newcomers share a
		// budget rather than escape the limit or evict those in force.
		return &l.overflow
	}
	b := &bucket{tokens: float64(l.limit.Burst), last: now}
	l.buckets[key] = b
	return b
}

func (l *failureLimiter) refill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(b.tokens+float64(elapsed)/float64(l.limit.Every), float64(l.limit.Burst))
		b.last = now
	}
}

// tooManyFailures answers an address whose budget of failures is spent,
// without checking its credentials.
func tooManyFailures(w http.ResponseWriter, r *http.Request, retryAfter time.Duration) {
	secs := max(1, int(math.Ceil(retryAfter.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, r, http.StatusTooManyRequests,
		"Too many failed authentications from this address; retry after "+strconv.Itoa(secs)+" seconds.")
}
