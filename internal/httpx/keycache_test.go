package httpx

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/store"
)

func TestKeyCache(t *testing.T) {
	t.Parallel()
	c := NewKeyCache(time.Minute, 2)
	now := time.Now()
	u := store.User{ID: uuid.New(), Name: "a"}
	_, gen, ok := c.get([]byte("h1"), now)
	require.False(t, ok)
	c.put([]byte("h1"), u, now, gen)
	got, _, ok := c.get([]byte("h1"), now.Add(59*time.Second))
	require.True(t, ok)
	require.Equal(t, u, got)
	_, _, ok = c.get([]byte("h1"), now.Add(61*time.Second))
	require.False(t, ok, "entries expire")
	_, gen, _ = c.get([]byte("h2"), now)
	c.put([]byte("h2"), u, now, gen)
	c.put([]byte("h3"), u, now, gen) // over the bound: the map starts afresh
	require.LessOrEqual(t, c.len(), 2)
}

// Each way a key leaves the cache, and the lookups that must not bring a
// revoked key back.
func TestKeyCacheInvalidation(t *testing.T) {
	t.Parallel()
	u := store.User{ID: uuid.New(), Name: "a"}
	now := time.Now()
	tests := []struct {
		name        string
		act         func(c *KeyCache) int
		wantDropped int
		wantH1      bool // still cached afterwards
		wantCaching bool // a lookup made afterwards is cached
	}{
		{"drop the key", func(c *KeyCache) int { return c.Drop([]byte("h1")) }, 1, false, true},
		{"drop another key", func(c *KeyCache) int { return c.Drop([]byte("nope")) }, 0, true, true},
		{"clear", (*KeyCache).Clear, 2, false, true},
		{"suspend", (*KeyCache).Suspend, 2, false, false},
		{"resume after suspend", func(c *KeyCache) int { c.Suspend(); return c.Resume() }, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := NewKeyCache(time.Minute, 100)
			for _, h := range []string{"h1", "h2"} {
				_, gen, _ := c.get([]byte(h), now)
				c.put([]byte(h), u, now, gen)
			}
			_, before, _ := c.get([]byte("h3"), now) // a lookup in flight

			require.Equal(t, tt.wantDropped, tt.act(c))
			_, _, ok := c.get([]byte("h1"), now)
			require.Equal(t, tt.wantH1, ok)

			c.put([]byte("h3"), u, now, before)
			_, _, ok = c.get([]byte("h3"), now)
			require.False(t, ok, "a lookup that began before an invalidation is not cached")

			_, gen, _ := c.get([]byte("h4"), now)
			c.put([]byte("h4"), u, now, gen)
			_, _, ok = c.get([]byte("h4"), now)
			require.Equal(t, tt.wantCaching, ok)
		})
	}
}
