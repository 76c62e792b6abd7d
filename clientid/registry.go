package clientid

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttsec/mqttsec"
)

// Takeover is what a [Registry] does when a connection claims a client ID
// that a live connection or a kept session holds.
type Takeover uint8

// The takeover modes.
const (
	// TakeoverOwner, the default, lets only the identity that holds the ID
	// take it: its new connection takes over the live one (which the
	// broker closes with 0x8E "session taken over") or resumes its kept
	// session. Another identity is refused with 0x85, and the holder keeps
	// its connection and session.
	TakeoverOwner Takeover = iota
	// TakeoverDeny refuses a second connection while one is live, even of
	// the same identity: a device cannot be pushed off by a clone of its
	// credentials, but a device whose connection died without a
	// DISCONNECT must wait until the broker notices (1.5 times the keep
	// alive) before it can connect again. A kept session may be resumed by
	// its own identity only.
	TakeoverDeny
	// InsecureTakeoverAllow is the behaviour MQTT specifies: any
	// authenticated identity may take over a client ID. It is unsafe: any
	// user can disconnect any device whose ID it knows, again and again,
	// and have its kept session and delayed will discarded. The registry
	// still never hands over a session: another identity gets
	// [mqttsec.Lease.Resume] false, and the adapter discards the old
	// session (subscriptions, queued messages, delayed will) instead of
	// resuming it.
	InsecureTakeoverAllow
)

// String returns "owner", "deny" or "allow".
func (t Takeover) String() string {
	switch t {
	case TakeoverOwner:
		return "owner"
	case TakeoverDeny:
		return "deny"
	case InsecureTakeoverAllow:
		return "allow"
	}
	return fmt.Sprintf("Takeover(%d)", uint8(t))
}

// ParseTakeover returns the mode [Takeover.String] names: "owner",
// "deny" or "allow".
func ParseTakeover(s string) (Takeover, error) {
	for _, t := range []Takeover{TakeoverOwner, TakeoverDeny, InsecureTakeoverAllow} {
		if s == t.String() {
			return t, nil
		}
	}
	return 0, fmt.Errorf("clientid: unknown takeover mode %q (owner, deny or allow)", s)
}

// Registry is a [mqttsec.Registry]: it binds each client ID to the
// identity holding it, by a live connection or by a session the broker
// keeps, and decides takeovers by its [Takeover] mode. Identities are the
// same when their Subject and Method are (as [mqttsec.Identity] defines);
// all anonymous connections are one identity, so they can take over each
// other's IDs: use a [Binding] or no anonymous access.
//
// [Registry.Claim] returns a lease whose Release the Guard calls once when
// the connection ends, with how long the broker keeps the session: the ID
// stays bound to the identity that long, so that no other identity can
// take over, resume, discard or cancel the delayed will of the kept
// session. A claim refused is answered with 0x85 ([ErrTaken], [ErrOwned])
// or, when [WithMaxIDs] is reached, 0x97 ([ErrFull]).
//
// # Memory
//
// A bound ID costs a 24-byte map slot (the ID's string header and a
// pointer) and a 16-byte entry: 51 to 72 bytes with the map's free slots,
// depending on where the map is in its growth, and a live connection 48
// bytes more for its lease (measured up to 2,000,000 IDs, BENCHMARKS.md).
// The registry keeps the ID string it is given, as the Guard's session
// does. Expired kept bindings are removed when their ID is claimed again,
// and swept from a shard each time it has doubled in size since its last
// sweep, so they cost amortized constant time; [Registry.Sweep] removes
// them all at once. Live connections and kept sessions are bounded by the
// broker (its connection limit and maximum session expiry); [WithMaxIDs]
// bounds the registry itself.
//
// A Registry is safe for concurrent use; the table is split into shards
// with a lock each. The zero Registry is ready to use with the defaults.
type Registry struct {
	once     sync.Once
	shards   []shard
	mask     uint64
	seed     maphash.Seed
	takeover Takeover
	now      func() time.Time
	base     time.Time
	maxIDs   int64
	count    atomic.Int64 // bound IDs, maintained when maxIDs > 0
}

// shard is one lock and map of a Registry, padded to its own cache lines.
type shard struct {
	mu      sync.Mutex
	r       *Registry
	m       map[string]*entry
	sweepAt int
	_       [64 - 32]byte // mu, r, m and sweepAt take 32
}

// entry is the binding of one client ID: 16 bytes, behind a 24-byte map
// slot. Leases point to it, so a release finds it without a map lookup.
// The fields are guarded by the shard's lock.
type entry struct {
	// owner is the identity holding the ID; nil once the entry left the
	// map (expired, or replaced under InsecureTakeoverAllow), so that the
	// leases still pointing to it release nothing. Identities are
	// immutable and shared with the Guard's sessions, so holding the
	// pointer costs the registry 8 bytes.
	owner *mqttsec.Identity
	// until is when the binding of a kept session ends, in seconds since
	// Registry.base rounded up; 0 means none. It matters once claims is 0.
	until uint32
	// claims is the number of live connections holding the ID.
	claims uint16
}

// maxClaims bounds the live connections holding one ID at once (a
// connection and those taking it over, before the broker has closed it).
const maxClaims = 1<<16 - 1

// minSweep is the size a shard reaches before its first sweep.
const minSweep = 64

// maxKeep bounds the keep duration of a release, so that the deadline
// fits in entry.until.
const maxKeep = 100 * 365 * 24 * time.Hour

// RegistryOption configures a [Registry] made by [NewRegistry].
type RegistryOption func(*registryConfig)

type registryConfig struct {
	takeover Takeover
	now      func() time.Time
	shards   int
	maxIDs   int
}

// WithTakeover sets the takeover mode; the default is [TakeoverOwner].
func WithTakeover(t Takeover) RegistryOption {
	return func(c *registryConfig) { c.takeover = t }
}

// WithClock sets the clock that measures how long a kept session's ID
// stays bound. Nil means time.Now.
func WithClock(now func() time.Time) RegistryOption {
	return func(c *registryConfig) { c.now = now }
}

// WithShards sets the number of shards, rounded up to a power of two
// between 1 and 4096; the default is 64.
func WithShards(n int) RegistryOption {
	return func(c *registryConfig) { c.shards = n }
}

// WithMaxIDs bounds the number of client IDs bound at once, live or kept;
// a claim of a new ID beyond it is refused with [ErrFull] (0x97) after
// expired bindings are swept. Zero, the default, sets no bound.
func WithMaxIDs(n int) RegistryOption {
	return func(c *registryConfig) { c.maxIDs = n }
}

// NewRegistry returns a Registry with the defaults changed by opts.
func NewRegistry(opts ...RegistryOption) *Registry {
	var c registryConfig
	for _, o := range opts {
		o(&c)
	}
	r := &Registry{}
	r.once.Do(func() { r.setup(c) })
	return r
}

func (r *Registry) init() {
	r.once.Do(func() { r.setup(registryConfig{}) })
}

func (r *Registry) setup(c registryConfig) {
	n := 64
	if c.shards > 0 {
		n = 1
		for n < c.shards && n < 4096 {
			n <<= 1
		}
	}
	r.shards = make([]shard, n)
	for i := range r.shards {
		r.shards[i].r = r
		r.shards[i].m = make(map[string]*entry)
		r.shards[i].sweepAt = minSweep
	}
	r.mask = uint64(n - 1)
	r.seed = maphash.MakeSeed()
	r.takeover = c.takeover
	r.now = c.now
	if r.now == nil {
		r.now = time.Now
	}
	r.base = r.now()
	r.maxIDs = int64(max(c.maxIDs, 0))
}

// nanos returns the registry's clock as nanoseconds since its start. With
// time.Now the difference is monotonic: a step of the wall clock neither
// frees nor prolongs a binding.
func (r *Registry) nanos() int64 { return int64(r.now().Sub(r.base)) }

// deadline returns the entry.until of a binding kept for keep after now
// (nanoseconds since base): rounded up to the second, never shorter.
func deadline(now int64, keep time.Duration) uint32 {
	ns := now + int64(min(keep, maxKeep))
	secs := (ns + int64(time.Second) - 1) / int64(time.Second)
	return uint32(min(max(secs, 1), 1<<32-1))
}

// expired reports whether a kept binding with deadline until is over at
// now (nanoseconds since base).
func expired(now int64, until uint32) bool {
	return now >= int64(until)*int64(time.Second)
}

func (r *Registry) shard(id string) *shard {
	return &r.shards[maphash.String(r.seed, id)&r.mask]
}

func same(a, b *mqttsec.Identity) bool {
	return a == b || a.Subject == b.Subject && a.Method == b.Method
}

// Claim implements [mqttsec.Registry]. It binds cl.ID to cl.Identity, or
// refuses with an error wrapping [ErrTaken] (a live connection of another
// identity, or any live connection under [TakeoverDeny]), [ErrOwned] (a
// kept session of another identity) or [ErrFull]. Lease.Resume is true when
// the same identity held the ID, live or kept. ctx is not used: a Registry
// does no I/O.
func (r *Registry) Claim(_ context.Context, cl *mqttsec.Client) (mqttsec.Lease, error) {
	r.init()
	if cl == nil || cl.Identity == nil {
		return mqttsec.Lease{}, fmt.Errorf("%w: clientid: claim without an identity", mqttsec.ErrNotAuthorized)
	}
	id := cl.Identity
	sh := r.shard(cl.ID)
	swept := false
retry:
	sh.mu.Lock()
	e, ok := sh.m[cl.ID]
	var now int64
	if ok && e.claims == 0 {
		if now = r.nanos(); expired(now, e.until) {
			sh.remove(cl.ID, e)
			ok = false
		}
	}
	resume := false
	if ok {
		switch {
		case r.takeover == TakeoverDeny && e.claims > 0:
			sh.mu.Unlock()
			return mqttsec.Lease{}, fmt.Errorf("%w: %s is connected", ErrTaken, quote(cl.ID))
		case same(e.owner, id):
			if e.claims == maxClaims {
				sh.mu.Unlock()
				return mqttsec.Lease{}, fmt.Errorf("%w: %s has %d connections", ErrTaken, quote(cl.ID), e.claims)
			}
			resume = true
			if e.claims == 0 {
				e.until = 0 // the kept session is live again
			}
			e.claims++
			e.owner = id // the newest identity: the older one may be released
		case r.takeover == InsecureTakeoverAllow:
			// A new entry: the leases of the old one release nothing.
			e.owner = nil
			e = &entry{owner: id, claims: 1}
			sh.m[cl.ID] = e
		case e.claims > 0:
			sh.mu.Unlock()
			return mqttsec.Lease{}, fmt.Errorf("%w: %s is held by another identity", ErrTaken, quote(cl.ID))
		default:
			sh.mu.Unlock()
			return mqttsec.Lease{}, fmt.Errorf("%w: %s", ErrOwned, quote(cl.ID))
		}
	} else {
		if err := sh.admit(now); err != nil {
			sh.mu.Unlock()
			if !swept {
				// Full: expired bindings of other shards may make room.
				swept = true
				r.Sweep()
				goto retry
			}
			return mqttsec.Lease{}, err
		}
		e = &entry{owner: id, claims: 1}
		sh.m[cl.ID] = e
	}
	sh.mu.Unlock()
	l := &lease{sh: sh, id: cl.ID}
	l.e.Store(e)
	return mqttsec.Lease{Resume: resume, Release: l.release}, nil
}

// admit makes room for a new ID: it sweeps the shard when it has doubled
// since its last sweep or the registry is full, and refuses when the
// registry is still full. now is the clock if already read, else 0. The
// caller holds sh.mu.
func (sh *shard) admit(now int64) error {
	r := sh.r
	full := r.maxIDs > 0 && r.count.Load() >= r.maxIDs
	if full || len(sh.m) >= sh.sweepAt {
		if now == 0 {
			now = r.nanos()
		}
		sh.sweep(now)
	}
	if r.maxIDs > 0 {
		if r.count.Add(1) > r.maxIDs {
			r.count.Add(-1)
			return fmt.Errorf("%w: %d client IDs", ErrFull, r.maxIDs)
		}
	}
	return nil
}

// sweep removes the expired kept bindings of the shard and returns how
// many. The caller holds sh.mu.
func (sh *shard) sweep(now int64) int {
	n := 0
	for id, e := range sh.m {
		if e.claims == 0 && expired(now, e.until) {
			sh.remove(id, e)
			n++
		}
	}
	sh.sweepAt = max(2*len(sh.m), minSweep)
	return n
}

// remove deletes the binding e of id. The caller holds sh.mu.
func (sh *shard) remove(id string, e *entry) {
	e.owner = nil
	delete(sh.m, id)
	if sh.r.maxIDs > 0 {
		sh.r.count.Add(-1)
	}
}

// lease is one claim's hold on its ID: 32 bytes.
type lease struct {
	sh *shard
	// e is the entry claimed, nil once released: a second release does
	// nothing.
	e  atomic.Pointer[entry]
	id string
}

// release gives the claim back: the ID stays bound to its identity for
// keep after the last claim ends. It does something only once.
func (l *lease) release(keep time.Duration) {
	e := l.e.Swap(nil)
	if e == nil {
		return
	}
	sh := l.sh
	var now int64
	var until uint32
	if keep > 0 {
		now = sh.r.nanos()
		until = deadline(now, keep)
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.owner == nil {
		return // taken over by another identity (InsecureTakeoverAllow)
	}
	e.claims--
	// Claims that overlapped (a takeover by the same identity) keep the
	// longest of their sessions.
	e.until = max(e.until, until)
	if e.claims > 0 {
		return
	}
	if e.until != 0 && now == 0 {
		now = sh.r.nanos()
	}
	if e.until == 0 || expired(now, e.until) {
		sh.remove(l.id, e)
	}
}

// Len returns the number of client IDs bound, by live connections or kept
// sessions (expired bindings not yet swept included).
func (r *Registry) Len() int {
	r.init()
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Sweep removes every expired binding of a kept session now and returns
// how many it removed. Claims sweep on their own; call Sweep to give the
// memory back sooner (after a mass disconnect, say).
func (r *Registry) Sweep() int {
	r.init()
	now := r.nanos()
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += sh.sweep(now)
		sh.mu.Unlock()
	}
	return n
}

var _ mqttsec.Registry = (*Registry)(nil)
