package ratelimit

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Store keeps the buckets of one limit for many keys: client addresses,
// client IDs, user names. The in-memory [MemoryStore] is the default; a
// distributed store (Redis, say) implements the same interface so that a
// cluster of brokers shares its limits.
//
// A Store must be safe for concurrent use. It holds no rate: the rate comes
// with each call, so that a reload changes it without losing state.
type Store interface {
	// AllowN applies n events of key at time now under rate r: when the
	// key's bucket holds enough tokens, they are taken and the result is
	// allowed. n = 0 takes nothing and only reports the bucket; it must
	// not create state for a key the store does not know.
	//
	// An error means the store could not decide (a backend that cannot be
	// reached); the [Limiter] then denies with 0x88 (server unavailable).
	// A store that prefers to fail open returns an allowing Result and a
	// nil error instead, and documents it.
	AllowN(ctx context.Context, key string, r Rate, n int, now time.Time) (Result, error)
}

// Result is a [Store]'s decision.
type Result struct {
	// Allowed reports whether the events may happen; their tokens were
	// taken.
	Allowed bool
	// Remaining is the number of tokens left in the bucket after the
	// decision.
	Remaining int
	// RetryAfter is, when the events were not allowed, how long until
	// they would be; negative when they never will be (the rate allows
	// nothing).
	RetryAfter time.Duration
}

// DefaultMaxKeys is the number of keys a [MemoryStore] remembers when
// [MemoryConfig.MaxKeys] is zero: at most 16 MiB of state.
const DefaultMaxKeys = 1 << 20

// MemoryConfig configures a [MemoryStore].
type MemoryConfig struct {
	// MaxKeys bounds the keys with state. Zero means DefaultMaxKeys.
	MaxKeys int
}

// MemoryStore is the in-memory [Store]: a GCRA time per key in 16-byte
// slots of a table that grows by doubling and never holds more than MaxKeys
// slots (rounded up to a multiple of 8 per shard), so its memory is bounded
// whatever an attacker sends: at most 16 × MaxKeys bytes plus a few
// kilobytes (and, for the moment one of its 64 shards grows, that shard
// twice). Below the bound a table is about half full to full: 16 to 34
// bytes per active key (32.5 measured at 1,000,000 keys, against 209 for a
// map of golang.org/x/time/rate limiters).
//
// A key whose bucket is full again carries no information and its slot is
// reused by the next key that needs one: idle keys are evicted without a
// sweeper goroutine. When every slot a new key may use holds a key that is
// not idle (the table is full of active keys), the new key takes the slot of
// the one nearest to a full bucket, which forgets that key's debt; the
// number of such evictions is reported by [MemoryStore.Evictions].
//
// Keys are stored as 64-bit hashes with a per-store random seed; two keys
// whose hashes collide share a bucket (among a million keys, the chance
// that any two collide is about 3 in 10^8).
//
// A MemoryStore is safe for concurrent use. AllowN allocates nothing.
type MemoryStore struct {
	seed      maphash.Seed
	epoch     time.Time
	shards    []shard
	mask      uint64
	maxSlots  int // per shard
	evictions atomic.Uint64
}

const (
	bucketSlots  = 8  // slots per bucket: 128 bytes
	initBuckets  = 8  // buckets of a new shard
	maxShards    = 64 // shards of a large store
	shardPadding = 64
)

type slot struct {
	key uint64 // hash of the key; 0 marks an empty slot
	tat int64  // when the bucket is full again, ns since the store's epoch
}

type shard struct {
	mu    sync.Mutex
	slots []slot
	nb    uint64 // buckets
	used  int    // slots with a key (some may be idle)
	// credit counts the evictions left before a full shard looks for
	// idle slots again, so that the scan costs O(1) per insert.
	credit int
	_      [shardPadding]byte
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	maxKeys := cfg.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	n := 1
	for n < maxShards && n*initBuckets*bucketSlots*4 <= maxKeys {
		n *= 2
	}
	per := (maxKeys + n - 1) / n
	per = (per + bucketSlots - 1) / bucketSlots * bucketSlots
	s := &MemoryStore{seed: maphash.MakeSeed(), epoch: time.Now(), shards: make([]shard, n),
		mask: uint64(n - 1), maxSlots: per}
	for i := range s.shards {
		sh := &s.shards[i]
		nb := min(initBuckets, per/bucketSlots)
		sh.slots = make([]slot, nb*bucketSlots)
		sh.nb = uint64(nb)
	}
	return s
}

// AllowN implements [Store]. It returns an error only for a MemoryStore
// not created with [NewMemoryStore].
func (s *MemoryStore) AllowN(_ context.Context, key string, r Rate, n int, now time.Time) (Result, error) {
	if len(s.shards) == 0 {
		return Result{}, errZeroStore
	}
	return s.allowN(key, r.gcra(), int64(n), s.nanos(now)), nil
}

var errZeroStore = errors.New("ratelimit: a MemoryStore not created with NewMemoryStore")

// nanos converts now to nanoseconds since the store's epoch; it uses the
// monotonic clock when now has a reading of it.
func (s *MemoryStore) nanos(now time.Time) int64 { return int64(now.Sub(s.epoch)) }

func (s *MemoryStore) allowN(key string, g gcra, n int64, now int64) Result {
	switch g.state {
	case gcraUnlimited:
		return Result{Allowed: true, Remaining: math.MaxInt}
	case gcraNone:
		return Result{RetryAfter: -1}
	}
	h := maphash.String(s.seed, key)
	if h == 0 {
		h = 1
	}
	sh := &s.shards[h&s.mask]
	sh.mu.Lock()
	b1, b2 := sh.buckets(h)
	i := sh.find(h, b1, b2)
	tat := now
	if i >= 0 {
		tat = sh.slots[i].tat
	}
	newTat, ok, rem, wait := g.take(tat, now, n)
	if ok && newTat > now {
		if i >= 0 {
			sh.slots[i].tat = newTat
		} else if s.insert(sh, h, newTat, now) {
			s.evictions.Add(1)
		}
	}
	sh.mu.Unlock()
	return Result{Allowed: ok, Remaining: int(min(rem, math.MaxInt32)), RetryAfter: time.Duration(wait)}
}

// buckets returns the two buckets key h may live in.
func (sh *shard) buckets(h uint64) (uint64, uint64) {
	return (uint64(uint32(h>>32)) * sh.nb) >> 32, (((h * 0x9E3779B97F4A7C15) >> 32) * sh.nb) >> 32
}

func (sh *shard) find(h, b1, b2 uint64) int {
	for _, b := range [2]uint64{b1, b2} {
		base := int(b) * bucketSlots
		for j := base; j < base+bucketSlots; j++ {
			if sh.slots[j].key == h {
				return j
			}
		}
	}
	return -1
}

// insert stores a new key; it reports whether an active key was evicted.
func (s *MemoryStore) insert(sh *shard, h uint64, tat, now int64) bool {
	b1, b2 := sh.buckets(h)
	if j := sh.free(b1, b2, now); j >= 0 {
		sh.put(j, h, tat)
		return false
	}
	grow := len(sh.slots) < s.maxSlots
	if !grow {
		if sh.credit--; sh.credit < 0 {
			sh.credit = len(sh.slots) / bucketSlots
			grow = sh.idle(now) > len(sh.slots)/2
		}
	}
	if grow {
		s.rebuild(sh, now)
		b1, b2 = sh.buckets(h)
		if j := sh.free(b1, b2, now); j >= 0 {
			sh.put(j, h, tat)
			return false
		}
	}
	sh.put(sh.nearestFull(b1, b2), h, tat)
	return true
}

func (sh *shard) put(j int, h uint64, tat int64) {
	if sh.slots[j].key == 0 {
		sh.used++
	}
	sh.slots[j] = slot{key: h, tat: tat}
}

// free returns a free slot (empty, or holding an idle key) in the less
// loaded of the two buckets, or -1.
func (sh *shard) free(b1, b2 uint64, now int64) int {
	best, bestFree := -1, 0
	for _, b := range [2]uint64{b1, b2} {
		base := int(b) * bucketSlots
		first, n := -1, 0
		for j := base; j < base+bucketSlots; j++ {
			if sh.slots[j].key == 0 || sh.slots[j].tat <= now {
				if first < 0 {
					first = j
				}
				n++
			}
		}
		if n > bestFree {
			best, bestFree = first, n
		}
	}
	return best
}

// nearestFull returns the slot of the two buckets whose key's bucket is
// nearest to full: forgetting it loses the least.
func (sh *shard) nearestFull(b1, b2 uint64) int {
	best := -1
	for _, b := range [2]uint64{b1, b2} {
		base := int(b) * bucketSlots
		for j := base; j < base+bucketSlots; j++ {
			if best < 0 || sh.slots[j].tat < sh.slots[best].tat {
				best = j
			}
		}
	}
	return best
}

// idle counts the slots a rebuild would free.
func (sh *shard) idle(now int64) int {
	n := 0
	for _, sl := range sh.slots {
		if sl.key == 0 || sl.tat <= now {
			n++
		}
	}
	return n
}

// rebuild moves the active keys of sh into a new table, twice as large
// when more than half the slots hold active keys (up to the store's bound),
// the same size otherwise, and drops idle keys.
func (s *MemoryStore) rebuild(sh *shard, now int64) {
	live := len(sh.slots) - sh.idle(now)
	size := len(sh.slots)
	if live*2 > size {
		size = min(2*size, s.maxSlots)
	}
	old := sh.slots
	sh.slots = make([]slot, size)
	sh.nb = uint64(size / bucketSlots)
	sh.used = 0
	for _, sl := range old {
		if sl.key == 0 || sl.tat <= now {
			continue
		}
		b1, b2 := sh.buckets(sl.key)
		j := sh.free(b1, b2, now)
		if j < 0 {
			j = sh.nearestFull(b1, b2)
			s.evictions.Add(1)
		}
		sh.put(j, sl.key, sl.tat)
	}
}

// Len returns the number of keys with state, idle keys not yet reused
// included.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.used
		sh.mu.Unlock()
	}
	return n
}

// Evictions returns the number of active keys forgotten because the store
// was full.
func (s *MemoryStore) Evictions() uint64 { return s.evictions.Load() }

var _ Store = (*MemoryStore)(nil)
