package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var bg = context.Background()

func TestMemoryStoreBasics(t *testing.T) {
	s := NewMemoryStore(MemoryConfig{MaxKeys: 1000})
	t0 := time.Unix(1_700_000_000, 0)
	r := Every(time.Second, 3)

	res, err := s.AllowN(bg, "a", r, 0, t0)
	require.NoError(t, err)
	require.Equal(t, Result{Allowed: true, Remaining: 3}, res)
	require.Zero(t, s.Len(), "a look creates no state")

	for i := range 3 {
		res, _ = s.AllowN(bg, "a", r, 1, t0)
		require.True(t, res.Allowed)
		require.Equal(t, 2-i, res.Remaining)
	}
	res, _ = s.AllowN(bg, "a", r, 1, t0)
	require.Equal(t, Result{Allowed: false, Remaining: 0, RetryAfter: time.Second}, res)
	res, _ = s.AllowN(bg, "b", r, 1, t0)
	require.True(t, res.Allowed, "keys are independent")
	res, _ = s.AllowN(bg, "a", r, 1, t0.Add(time.Second))
	require.True(t, res.Allowed, "a token comes back after the interval")
	require.Equal(t, 2, s.Len())

	res, _ = s.AllowN(bg, "a", Unlimited(), 1000, t0)
	require.True(t, res.Allowed)
	res, _ = s.AllowN(bg, "a", Rate{}, 1, t0)
	require.False(t, res.Allowed, "an invalid rate allows nothing")
	require.Negative(t, res.RetryAfter)
}

// TestMemoryStoreMatchesReference runs random operations on many keys
// against a map of GCRA times: while the store is below its bound, every
// decision must match.
func TestMemoryStoreMatchesReference(t *testing.T) {
	s := NewMemoryStore(MemoryConfig{MaxKeys: 1 << 16})
	ref := map[string]int64{}
	rng := rand.New(rand.NewPCG(5, 6))
	r := Every(time.Millisecond, 4)
	g := r.gcra()
	t0 := time.Now()
	now := int64(0)
	for i := range 200_000 {
		now += rng.Int64N(20_000)
		key := "k" + strconv.Itoa(rng.IntN(20_000))
		n := rng.Int64N(6)
		tat, ok := ref[key]
		if !ok {
			tat = now
		}
		newTat, want, rem, _ := g.take(tat, now, n)
		if want {
			ref[key] = newTat
		}
		res, err := s.AllowN(bg, key, r, int(n), t0.Add(time.Duration(now)))
		require.NoError(t, err)
		require.Equal(t, want, res.Allowed, "op %d key %s", i, key)
		require.Equal(t, int(rem), res.Remaining, "op %d key %s", i, key)
	}
	require.Zero(t, s.Evictions())
}

// TestMemoryStoreBounded floods a store with ten times more active keys
// than its bound: it never holds more than the bound, and the newest keys
// are limited.
func TestMemoryStoreBounded(t *testing.T) {
	const maxKeys = 4096
	s := NewMemoryStore(MemoryConfig{MaxKeys: maxKeys})
	r := Every(time.Hour, 1) // every key stays active
	now := time.Now()
	for i := range 10 * maxKeys {
		res, _ := s.AllowN(bg, fmt.Sprint("flood", i), r, 1, now)
		require.True(t, res.Allowed)
	}
	slots := 0
	for i := range s.shards {
		slots += len(s.shards[i].slots)
	}
	require.LessOrEqual(t, slots, maxKeys+bucketSlots*len(s.shards))
	require.LessOrEqual(t, s.Len(), slots)
	require.Positive(t, s.Evictions())
	// A key just limited is still limited: evictions take the keys nearest
	// to a full bucket, never a newer one when an older one is there.
	res, _ := s.AllowN(bg, "fresh", r, 1, now.Add(time.Minute))
	require.True(t, res.Allowed)
	res, _ = s.AllowN(bg, "fresh", r, 1, now.Add(time.Minute))
	require.False(t, res.Allowed)
}

// TestMemoryStoreReusesIdleKeys checks that keys whose buckets are full
// again free their slots: a store keeps working at its bound without
// evicting anything when keys go idle.
func TestMemoryStoreReusesIdleKeys(t *testing.T) {
	const maxKeys = 1024
	s := NewMemoryStore(MemoryConfig{MaxKeys: maxKeys})
	r := Every(time.Millisecond, 1)
	now := time.Now()
	for round := range 50 {
		for i := range maxKeys / 2 {
			res, _ := s.AllowN(bg, fmt.Sprint(round, "/", i), r, 1, now)
			require.True(t, res.Allowed)
		}
		now = now.Add(2 * time.Millisecond) // all idle again
	}
	require.Zero(t, s.Evictions())
	require.LessOrEqual(t, s.Len(), maxKeys+bucketSlots*len(s.shards))
}

func TestMemoryStoreConcurrent(t *testing.T) {
	s := NewMemoryStore(MemoryConfig{MaxKeys: 1 << 12})
	r := Every(time.Hour, 100)
	now := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := map[string]int{}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				key := strconv.Itoa((i + w) % 10)
				res, _ := s.AllowN(bg, key, r, 1, now)
				if res.Allowed {
					mu.Lock()
					allowed[key]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for k, n := range allowed {
		require.Equal(t, 100, n, "key %s: exactly the burst is allowed", k)
	}
}
