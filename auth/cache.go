package auth

import "sync"

// boundedCache is a fixed-size map from 32-byte keys to values. When full,
// the oldest insertion is evicted (FIFO, which needs no per-hit
// bookkeeping, so a hit takes only a read lock). It is safe for concurrent
// use.
type boundedCache[V any] struct {
	mu   sync.RWMutex
	m    map[[32]byte]slot[V]
	ring [][32]byte
	used []bool
	next int
}

type slot[V any] struct {
	v   V
	pos int
}

func newBoundedCache[V any](size int) *boundedCache[V] {
	if size <= 0 {
		return nil
	}
	return &boundedCache[V]{m: make(map[[32]byte]slot[V], size), ring: make([][32]byte, size), used: make([]bool, size)}
}

// get returns the value for k. A nil cache is always empty.
func (c *boundedCache[V]) get(k *[32]byte) (V, bool) {
	if c == nil {
		var zero V
		return zero, false
	}
	c.mu.RLock()
	s, ok := c.m[*k]
	c.mu.RUnlock()
	return s.v, ok
}

// put stores v under k, evicting the oldest entry when the cache is full.
func (c *boundedCache[V]) put(k *[32]byte, v V) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[*k]; ok {
		s.v = v
		c.m[*k] = s
		return
	}
	pos := c.next
	if c.used[pos] {
		if old, ok := c.m[c.ring[pos]]; ok && old.pos == pos {
			delete(c.m, c.ring[pos])
		}
	}
	c.ring[pos], c.used[pos] = *k, true
	c.m[*k] = slot[V]{v: v, pos: pos}
	c.next = (pos + 1) % len(c.ring)
}

// remove deletes k.
func (c *boundedCache[V]) remove(k *[32]byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, *k)
	c.mu.Unlock()
}

// removeIf deletes every entry for which drop returns true.
func (c *boundedCache[V]) removeIf(drop func(V) bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	for k, s := range c.m {
		if drop(s.v) {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}

// len returns the number of entries.
func (c *boundedCache[V]) len() int {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
