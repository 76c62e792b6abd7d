package redisstore

import (
	"context"
	_ "embed"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttsec/mqttsec/ratelimit"
)

var (
	//go:embed lua/gcra.lua
	gcraLua    string
	gcraScript = redis.NewScript(gcraLua)
)

// Defaults of [RateConfig].
const (
	DefaultDenyCache = 1 << 16
	DefaultMaxDebt   = 24 * time.Hour
)

// RateConfig configures a [RateStore].
type RateConfig struct {
	// FailClosed makes AllowN return an error while Redis is unreachable,
	// so that the [ratelimit.Limiter] refuses with 0x88 (server
	// unavailable). The default falls back to an in-memory store on each
	// node: the limits still hold, per node, until Redis answers again.
	FailClosed bool
	// DenyCache bounds the keys whose last refusal the store remembers on
	// this node (see [RateStore]); keys longer than 256 bytes are not
	// remembered, so the cache holds at most DenyCache × 256 bytes of keys.
	// Zero means [DefaultDenyCache]; negative turns the cache off.
	DenyCache int
	// MaxDebt bounds how far ahead of now a bucket's "full again" time may
	// run when an event larger than the burst empties it (a huge PUBLISH
	// on a slow byte rate), and so the keys' TTL: the larger of MaxDebt and
	// the time the bucket takes to fill (Burst × Interval). Zero means
	// [DefaultMaxDebt].
	MaxDebt time.Duration
}

// RateStore is a [ratelimit.Store] in Redis: the buckets of one limit,
// shared by every broker of the cluster, so that a client cannot multiply
// its rate (or its password guesses) by the number of brokers. Each
// decision is one Lua script running the generic cell rate algorithm of
// [ratelimit.Rate] (the same decisions as [ratelimit.MemoryStore], at
// microsecond resolution) on Redis's clock: the now argument of AllowN is
// not used, so that brokers whose clocks differ share one timeline. A key
// holds one integer and expires when its bucket is full again.
//
// # Local pre-check
//
// A refusal is exact until its RetryAfter: tokens only come back with time,
// whatever the other brokers do. The store remembers the refusal on this
// node (up to [RateConfig.DenyCache] keys) and refuses the same or a larger
// request locally until then, without a round trip: a client that floods
// costs Redis one script per RetryAfter, not one per packet. Allowed
// requests always ask Redis.
//
// Per-connection limits (messages, bytes, subscriptions, keyed by client
// ID) need no Redis at all: the cluster [Registry] keeps each client ID on
// one broker, so a local [ratelimit.MemoryStore] is exact for them;
// [Node.NewStore] wires it that way.
//
// # Faults
//
// While Redis is unreachable, AllowN falls back to an in-memory store
// (limits per node), or with [RateConfig.FailClosed] returns an error
// wrapping [ErrUnavailable]; either way the node reports the outage.
//
// A RateStore is safe for concurrent use.
type RateStore struct {
	n          *Node
	prefix     string
	failClosed bool
	maxDebt    int64 // µs
	local      *ratelimit.MemoryStore
	deny       *denyCache
}

// RateStore returns the [RateStore] of the limit called name: its keys are
// "<prefix>rate:<name>:<key>". All brokers must use the same name for the
// same limit.
func (n *Node) RateStore(name string, cfg RateConfig) *RateStore {
	s := &RateStore{n: n, prefix: n.prefix + "rate:" + name + ":", failClosed: cfg.FailClosed,
		maxDebt: cfg.MaxDebt.Microseconds()}
	if s.maxDebt <= 0 {
		s.maxDebt = DefaultMaxDebt.Microseconds()
	}
	if !s.failClosed {
		s.local = ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	}
	switch {
	case cfg.DenyCache == 0:
		s.deny = newDenyCache(DefaultDenyCache)
	case cfg.DenyCache > 0:
		s.deny = newDenyCache(cfg.DenyCache)
	}
	return s
}

// clusterLimits are the limits of ratelimit.Limiter that [Node.NewStore]
// keeps in Redis: they key on addresses, user names and client IDs across
// connections.
var clusterLimits = map[string]bool{
	"connect_addr": true, "connect": true, "addr_failures": true, "addr_slow": true,
	"user_failures": true, "user_slow": true, "flapping": true,
}

// NewStore returns a function for [ratelimit.Config].NewStore: the limits
// on connection attempts, failed logins and flapping (per address, per user
// name, per client ID, overall) go to a [RateStore] each, shared by the
// cluster; the per-connection limits of messages, bytes and subscriptions
// stay in a [ratelimit.MemoryStore] on each broker (exact, since a client
// ID is connected to one broker at a time), so no PUBLISH waits for Redis.
func (n *Node) NewStore(cfg RateConfig) func(name string) ratelimit.Store {
	return func(name string) ratelimit.Store {
		if clusterLimits[name] {
			return n.RateStore(name, cfg)
		}
		return ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	}
}

// AllowN implements [ratelimit.Store]; now is only used by the in-memory
// fallback and the local refusal cache.
func (s *RateStore) AllowN(ctx context.Context, key string, r ratelimit.Rate, n int, now time.Time) (ratelimit.Result, error) {
	switch {
	case r.IsUnlimited():
		return ratelimit.Result{Allowed: true, Remaining: math.MaxInt}, nil
	case !r.Valid():
		return ratelimit.Result{RetryAfter: -1}, nil
	}
	n = max(n, 0)
	if s.deny != nil {
		if wait, ok := s.deny.denied(key, n, now); ok {
			return ratelimit.Result{RetryAfter: wait}, nil
		}
	}
	t := max((r.Interval.Nanoseconds()+999)/1000, 1) // µs, rounded up: never a looser rate
	octx, cancel := s.n.opContext(ctx)
	v, err := gcraScript.Run(octx, s.n.rdb, []string{s.prefix + key}, t, r.Burst, n, s.maxDebt).Slice()
	cancel()
	if err == nil && len(v) != 3 {
		err = fmt.Errorf("redisstore: unexpected rate reply of %d values", len(v))
	}
	if err != nil {
		err = s.n.fail("rate limit", err)
		if s.failClosed {
			return ratelimit.Result{}, err
		}
		return s.local.AllowN(ctx, key, r, n, now)
	}
	s.n.ok()
	allowed, _ := v[0].(int64)
	rem, _ := v[1].(int64)
	late, _ := v[2].(int64)
	res := ratelimit.Result{Allowed: allowed == 1, Remaining: int(min(rem, math.MaxInt32))}
	if !res.Allowed {
		res.RetryAfter = time.Duration(late) * time.Microsecond
		if s.deny != nil {
			s.deny.remember(key, n, now.Add(res.RetryAfter))
		}
	}
	return res, nil
}

// denyCache remembers, per key, until when a request of at least n tokens
// is refused. It is bounded: a full shard drops its ended entries, and when
// none ended, all of them (a forgotten refusal only costs a round trip).
type denyCache struct {
	seed   maphash.Seed
	shards [16]denyShard
	max    int // per shard
}

type denyShard struct {
	mu sync.Mutex
	m  map[string]denial
	_  [40]byte
}

type denial struct {
	until int64 // unix ns
	n     int
}

func newDenyCache(size int) *denyCache {
	c := &denyCache{seed: maphash.MakeSeed(), max: max(size/16, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]denial)
	}
	return c
}

func (c *denyCache) shard(key string) *denyShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// denied reports whether a request of n tokens of key is still refused at
// now, and for how long.
func (c *denyCache) denied(key string, n int, now time.Time) (time.Duration, bool) {
	sh := c.shard(key)
	t := now.UnixNano()
	sh.mu.Lock()
	d, ok := sh.m[key]
	if ok && t >= d.until {
		delete(sh.m, key)
		ok = false
	}
	sh.mu.Unlock()
	if !ok || n < d.n {
		return 0, false
	}
	return time.Duration(d.until - t), true
}

// maxCachedKey is the longest key the refusal cache keeps, so that it holds
// at most DenyCache × 256 bytes of keys whatever clients send (a user name
// can be 65,535 bytes long); a longer key's refusals ask Redis.
const maxCachedKey = 256

func (c *denyCache) remember(key string, n int, until time.Time) {
	if len(key) > maxCachedKey {
		return
	}
	sh := c.shard(key)
	u := until.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.max {
		now := time.Now().UnixNano()
		for k, d := range sh.m {
			if d.until <= now {
				delete(sh.m, k)
			}
		}
		if len(sh.m) >= c.max {
			clear(sh.m)
		}
	}
	sh.m[key] = denial{until: u, n: n} // Redis's newest answer
}

var _ ratelimit.Store = (*RateStore)(nil)
