package ratelimit

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/mqttsec/mqttsec"
)

// GateConfig configures a [Gate]. Every zero field has its documented
// default.
type GateConfig struct {
	// CPU bounds the processor time verifications take, in CPUs: 0.25 lets
	// them take a quarter of one CPU's time. A verification is charged its
	// wall-clock time, so a loaded machine gets fewer of them; a new one
	// starts only while the budget, which holds one second's worth, is not
	// spent. Zero means GOMAXPROCS/8, at least 0.25: a storm of first
	// logins leaves the broker seven eighths of its CPUs, and a single
	// login after a quiet second is not delayed at all. Negative means no
	// bound beyond MaxConcurrent.
	CPU float64
	// MaxConcurrent bounds the verifications that run at once. Zero means
	// CPU rounded up (1 up to 8 CPUs), or a quarter of GOMAXPROCS, at
	// least 1, when CPU is negative.
	MaxConcurrent int
	// MaxQueue bounds the CONNECTs waiting for a verification slot; one
	// more is refused at once with 0x89 (server busy). Zero means 16 per
	// slot.
	MaxQueue int
	// PerKey bounds the CONNECTs of one key (address) that are verified or
	// waiting at once; one more is refused at once with 0x89, so that one
	// address never holds more than PerKey slots or queue places. Zero
	// means 2.
	PerKey int
	// MaxWait bounds the time a CONNECT waits for a slot; it is then
	// refused with 0x89. Keep it well below the adapter's connect timeout,
	// so that the refusal reaches the client before its connection is
	// closed. Zero means 3 seconds.
	MaxWait time.Duration
	// Key returns the key whose CONNECTs are bounded by PerKey and served
	// in turn. Nil means the client's address, per /64 for IPv6.
	Key func(cl *mqttsec.Client) string
}

// Gate is an [mqttsec.Authenticator] that bounds the costly verifications
// of the Authenticator it wraps (bcrypt, argon2), so that a storm of logins
// can neither take the broker's CPU nor keep a real user out:
//
//   - verifications take at most the CPU share of GateConfig.CPU (an
//     eighth of the CPUs by default), and at most MaxConcurrent run at
//     once;
//   - a free slot goes to the waiting key (address) served least recently,
//     an address never served first, so an address that sends 50 CONNECTs
//     per second gets a slot in turn like every other address, and a first
//     login from another address waits for the verifications running and
//     the budget they spent, not for the storm's queue;
//   - an address over its PerKey bound, a full queue and a wait longer than
//     MaxWait are answered at once with 0x89 (server busy), without a slot
//     and without a goroutine of the Gate's own: the only goroutine a
//     waiting CONNECT holds is the broker's for its connection, and at most
//     MaxQueue of them wait.
//
// A success the wrapped Authenticator can confirm at once
// ([mqttsec.CachedAuthenticator], a cache of recent logins) skips the
// queue, so connected clients that reconnect are not delayed by a storm.
// The rate of CONNECTs and of failures per address, and bans, are the
// [Limiter]'s: give both to the Guard. Fairness needs the Guard's ctx to end
// no earlier than MaxWait.
//
// A Gate is safe for concurrent use. It is a [mqttsec.Revalidator] that
// passes revalidation to the wrapped Authenticator (ungated: it verifies no
// password), and abstains when that is not one. The zero Gate, and a Gate
// of a nil Authenticator, deny every CONNECT.
type Gate struct {
	inner  mqttsec.Authenticator
	cached mqttsec.CachedAuthenticator
	reval  mqttsec.Revalidator
	cpu    float64 // <= 0: no budget
	max    int
	queue  int
	perKey int
	wait   time.Duration
	key    func(*mqttsec.Client) string

	mu      sync.Mutex
	running int
	waiting int
	keys    map[string]*gateKey // keys with a verification running or waiting
	turn    []*gateKey          // keys with waiters, in the order they queued
	grants  uint64              // slots granted so far
	full    time.Time           // when the CPU budget is full again
	timer   *time.Timer         // wakes waiters when the budget allows; nil when none is set
}

// budgetWindow is the CPU budget's size: one second's worth.
const budgetWindow = time.Second

type gateKey struct {
	name    string
	active  int // running + waiting
	waiters []*gateWaiter
	inTurn  bool
	granted uint64 // g.grants when the key last got a slot; 0 never
}

type gateWaiter struct {
	ready   chan struct{}
	granted bool
}

// NewGate returns a Gate in front of inner.
func NewGate(inner mqttsec.Authenticator, cfg GateConfig) *Gate {
	g := &Gate{inner: inner, max: cfg.MaxConcurrent, queue: cfg.MaxQueue, perKey: cfg.PerKey,
		wait: cfg.MaxWait, key: cfg.Key, keys: map[string]*gateKey{}}
	g.cached, _ = inner.(mqttsec.CachedAuthenticator)
	g.reval, _ = inner.(mqttsec.Revalidator)
	if cfg.CPU == 0 {
		g.cpu = max(0.25, float64(runtime.GOMAXPROCS(0))/8)
	} else {
		g.cpu = cfg.CPU
	}
	if g.max <= 0 {
		if g.cpu > 0 {
			g.max = int(math.Ceil(g.cpu))
		} else {
			g.max = max(1, runtime.GOMAXPROCS(0)/4)
		}
	}
	if g.queue <= 0 {
		g.queue = 16 * g.max
	}
	if g.perKey <= 0 {
		g.perKey = 2
	}
	if g.wait <= 0 {
		g.wait = 3 * time.Second
	}
	if g.key == nil {
		g.key = func(cl *mqttsec.Client) string { return addrKey(cl, 64) }
	}
	return g
}

// Authenticate verifies the CONNECT with the wrapped Authenticator once it
// has a slot, or refuses it with a denial wrapping [mqttsec.ErrServerBusy]
// (0x89), which the Guard does not count as a failed login.
func (g *Gate) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	if g.inner == nil || g.keys == nil {
		return nil, fmt.Errorf("%w: ratelimit: a Gate without an Authenticator", mqttsec.ErrBadCredentials)
	}
	if g.cached != nil {
		if id, ok := g.cached.AuthenticateCached(ctx, cl, cred); ok {
			return id, nil
		}
	}
	k, err := g.acquire(ctx, g.key(cl))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	defer func() { g.release(k, time.Since(start)) }()
	return g.inner.Authenticate(ctx, cl, cred)
}

// AuthenticateCached implements [mqttsec.CachedAuthenticator] by asking the
// wrapped Authenticator, so that Gates and other wrappers compose.
func (g *Gate) AuthenticateCached(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, bool) {
	if g.cached == nil {
		return nil, false
	}
	return g.cached.AuthenticateCached(ctx, cl, cred)
}

// Revalidate implements [mqttsec.Revalidator].
func (g *Gate) Revalidate(ctx context.Context, cl *mqttsec.Client) error {
	if g.reval == nil {
		return mqttsec.ErrAbstain
	}
	return g.reval.Revalidate(ctx, cl)
}

// acquire returns once the key holds a slot, or refuses.
func (g *Gate) acquire(ctx context.Context, key string) (*gateKey, error) {
	g.mu.Lock()
	k := g.keys[key]
	if k == nil {
		k = &gateKey{name: key}
		g.keys[key] = k
	}
	if n := k.active; n >= g.perKey {
		g.mu.Unlock()
		return nil, fmt.Errorf("%w: %d logins of %s under way", mqttsec.ErrServerBusy, n, key)
	}
	if len(g.turn) == 0 && g.startable(time.Now()) {
		g.running++
		k.active++
		g.grants++
		k.granted = g.grants
		g.mu.Unlock()
		return k, nil
	}
	if g.waiting >= g.queue {
		g.forget(k)
		g.mu.Unlock()
		return nil, fmt.Errorf("%w: %d logins waiting for verification", mqttsec.ErrServerBusy, g.queue)
	}
	w := &gateWaiter{ready: make(chan struct{})}
	k.waiters = append(k.waiters, w)
	k.active++
	g.waiting++
	if !k.inTurn {
		k.inTurn = true
		g.turn = append(g.turn, k)
	}
	g.dispatch(time.Now()) // arms the budget timer if need be
	g.mu.Unlock()

	timer := time.NewTimer(g.wait)
	defer timer.Stop()
	var why error
	select {
	case <-w.ready:
		return k, nil
	case <-timer.C:
		why = fmt.Errorf("%w: no verification slot within %s", mqttsec.ErrServerBusy, g.wait)
	case <-ctx.Done():
		why = fmt.Errorf("%w: waiting for a verification slot: %w", mqttsec.ErrServerBusy, ctx.Err())
	}
	g.mu.Lock()
	if w.granted {
		// Granted as the wait ended: use the slot.
		g.mu.Unlock()
		return k, nil
	}
	for i, x := range k.waiters {
		if x == w {
			k.waiters = append(k.waiters[:i], k.waiters[i+1:]...)
			break
		}
	}
	k.active--
	g.waiting--
	if len(k.waiters) == 0 && k.inTurn {
		g.dropTurn(k)
	}
	g.forget(k)
	g.mu.Unlock()
	return nil, why
}

// startable reports whether a verification may start at now: a slot is
// free and the CPU budget is not spent. The caller holds g.mu.
func (g *Gate) startable(now time.Time) bool {
	return g.running < g.max && (g.cpu <= 0 || g.full.Before(now.Add(budgetWindow)))
}

// release frees k's slot, charges the CPU budget with the verification's
// time d, and hands out the slots the budget allows.
func (g *Gate) release(k *gateKey, d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if g.cpu > 0 {
		g.full = later(g.full, now).Add(time.Duration(float64(d) / g.cpu))
	}
	g.running--
	k.active--
	g.dispatch(now)
	g.forget(k)
}

// dispatch grants waiters the slots that may start, each to the waiting key
// served least recently (one never served first; among equals, the one
// that queued first), so that an address with a verification just done
// waits for every other waiting address. When the budget holds waiters
// back, it sets a timer to dispatch again when it allows. The caller holds
// g.mu.
func (g *Gate) dispatch(now time.Time) {
	for len(g.turn) > 0 && g.startable(now) {
		i := 0
		for j, x := range g.turn {
			if x.granted < g.turn[i].granted {
				i = j
			}
		}
		next := g.turn[i]
		w := next.waiters[0]
		next.waiters[0] = nil
		next.waiters = next.waiters[1:]
		g.waiting--
		g.running++
		g.grants++
		next.granted = g.grants
		w.granted = true
		close(w.ready)
		if len(next.waiters) == 0 {
			g.turn = append(g.turn[:i], g.turn[i+1:]...)
			next.inTurn = false
		}
	}
	if len(g.turn) > 0 && g.running < g.max && g.timer == nil {
		g.timer = time.AfterFunc(g.full.Sub(now)-budgetWindow+time.Millisecond, g.wake)
	}
}

// wake runs when the CPU budget allows waiters to start.
func (g *Gate) wake() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.timer = nil
	g.dispatch(time.Now())
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// dropTurn removes k from the turn order. The caller holds g.mu.
func (g *Gate) dropTurn(k *gateKey) {
	for i, x := range g.turn {
		if x == k {
			g.turn = append(g.turn[:i], g.turn[i+1:]...)
			break
		}
	}
	k.inTurn = false
}

// forget drops a key with nothing running or waiting. The caller holds
// g.mu.
func (g *Gate) forget(k *gateKey) {
	if k.active == 0 && g.keys[k.name] == k {
		delete(g.keys, k.name)
	}
}

// Stats returns the verifications running and the CONNECTs waiting.
func (g *Gate) Stats() (running, waiting int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.waiting
}

var (
	_ mqttsec.Authenticator       = (*Gate)(nil)
	_ mqttsec.CachedAuthenticator = (*Gate)(nil)
	_ mqttsec.Revalidator         = (*Gate)(nil)
)
