package httpx

import (
	"sync"
	"time"

	"github.com/backtestd/backtestd/internal/store"
)

// KeyCache remembers the owners of recently used API keys for a short
// while, so that most requests skip the database round trip of looking the
// key up: on the enqueue path that query is one of five round trips.
// Unknown keys are not remembered, so a new key works at once.
//
// A revoked key must stop working at once, so the cache is kept in step
// with api_keys by a KeyListener: it drops a key when PostgreSQL announces
// its deletion, and caches nothing while it cannot hear those
// announcements. The TTL bounds what a silently lost announcement costs.
type KeyCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[string]cachedUser
	// gen counts invalidations. A lookup that started before one may have
	// read a key that is gone by now, so its answer is not cached.
	gen uint64
	// off stops caching while nothing would tell the cache of a revocation.
	off bool
}

type cachedUser struct {
	user    store.User
	expires time.Time
}

// NewKeyCache returns a cache keeping an owner for ttl, and at most
// maxEntries owners.
func NewKeyCache(ttl time.Duration, maxEntries int) *KeyCache {
	return &KeyCache{ttl: ttl, max: maxEntries, entries: make(map[string]cachedUser)}
}

// get returns the cached owner of the key with this hash; on a miss, the
// generation to hand to put with the owner read from the database.
func (c *KeyCache) get(hash []byte, now time.Time) (store.User, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[string(hash)]
	if !ok || now.After(e.expires) {
		return store.User{}, c.gen, false
	}
	return e.user, c.gen, true
}

// put remembers an owner read at generation gen, unless an invalidation
// came in since, or caching is off.
func (c *KeyCache) put(hash []byte, u store.User, now time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off || gen != c.gen {
		return
	}
	if len(c.entries) >= c.max {
		clear(c.entries) // rare; simpler than an LRU and just as bounded
	}
	c.entries[string(hash)] = cachedUser{user: u, expires: now.Add(c.ttl)}
}

// Drop forgets the key with this hash and reports how many entries went
// (0 or 1).
func (c *KeyCache) Drop(hash []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if _, ok := c.entries[string(hash)]; !ok {
		return 0
	}
	delete(c.entries, string(hash))
	return 1
}

// Clear forgets every key and reports how many entries went.
func (c *KeyCache) Clear() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clearLocked()
}

// Suspend forgets every key and caches nothing until Resume: while the
// revocations cannot be heard, every request asks the database.
func (c *KeyCache) Suspend() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = true
	return c.clearLocked()
}

// Resume forgets every key, as any may have been revoked unheard, and
// caches again.
func (c *KeyCache) Resume() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off = false
	return c.clearLocked()
}

func (c *KeyCache) clearLocked() int {
	c.gen++
	n := len(c.entries)
	clear(c.entries)
	return n
}

// len is the number of entries, for tests.
func (c *KeyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
