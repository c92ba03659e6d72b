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
	c := newKeyCache(time.Minute, 2)
	now := time.Now()
	u := store.User{ID: uuid.New(), Name: "a"}
	_, ok := c.get([]byte("h1"), now)
	require.False(t, ok)
	c.put([]byte("h1"), u, now)
	got, ok := c.get([]byte("h1"), now.Add(59*time.Second))
	require.True(t, ok)
	require.Equal(t, u, got)
	_, ok = c.get([]byte("h1"), now.Add(61*time.Second))
	require.False(t, ok, "entries expire")
	c.put([]byte("h2"), u, now)
	c.put([]byte("h3"), u, now) // over the bound: the map starts afresh
	require.LessOrEqual(t, len(c.entries), 2)
}
