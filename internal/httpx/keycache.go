package httpx

import (
	"sync"
	"time"

	"github.com/backtestd/backtestd/internal/store"
)

// keyCache remembers the owners of recently used API keys for a short
// while, so that most requests skip the database round trip of looking the
// key up: on the enqueue path that query is one of five round trips.
// Unknown keys are not remembered, so a new key works at once.
type keyCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[string]cachedUser
}

type cachedUser struct {
	user    store.User
	expires time.Time
}

func newKeyCache(ttl time.Duration, maxEntries int) *keyCache {
	return &keyCache{ttl: ttl, max: maxEntries, entries: make(map[string]cachedUser)}
}

func (c *keyCache) get(hash []byte, now time.Time) (store.User, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[string(hash)]
	if !ok || now.After(e.expires) {
		return store.User{}, false
	}
	return e.user, true
}

func (c *keyCache) put(hash []byte, u store.User, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		clear(c.entries) // rare; simpler than an LRU and just as bounded
	}
	c.entries[string(hash)] = cachedUser{user: u, expires: now.Add(c.ttl)}
}
