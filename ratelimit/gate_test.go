package ratelimit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
)

// blocking is an authenticator whose verifications wait until released,
// and that records the order in which they started.
type blocking struct {
	mu      sync.Mutex
	started []string
	release chan struct{}
	running atomic.Int32
	peak    atomic.Int32
}

func newBlocking() *blocking { return &blocking{release: make(chan struct{})} }

func (b *blocking) Authenticate(ctx context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	b.mu.Lock()
	b.started = append(b.started, cl.ID)
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &mqttsec.Identity{Subject: cl.ID, Method: mqttsec.MethodPassword}, nil
}

func (b *blocking) order() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.started...)
}

type attempt struct {
	id  string
	err error
}

// try starts an authentication of client id from addr.
func try(g *Gate, id, addr string, done chan<- attempt) {
	go func() {
		_, err := g.Authenticate(bg, cl(id, "u", addr+":1"), mqttsec.Credentials{})
		done <- attempt{id, err}
	}()
}

func waitStats(t *testing.T, g *Gate, running, waiting int) {
	t.Helper()
	require.Eventually(t, func() bool {
		r, w := g.Stats()
		return r == running && w == waiting
	}, 10*time.Second, time.Millisecond)
}

func TestGateServesAddressesInTurn(t *testing.T) {
	inner := newBlocking()
	g := NewGate(inner, GateConfig{CPU: -1, MaxConcurrent: 1, PerKey: 2, MaxQueue: 10, MaxWait: time.Minute})
	done := make(chan attempt, 20)
	try(g, "a1", "192.0.2.66", done)
	waitStats(t, g, 1, 0)
	try(g, "a2", "192.0.2.66", done)
	waitStats(t, g, 1, 1)
	// The guesser's further attempts are refused at once.
	for i := range 5 {
		try(g, fmt.Sprint("a-extra", i), "192.0.2.66", done)
		r := <-done
		require.ErrorIs(t, r.err, mqttsec.ErrServerBusy)
	}
	try(g, "b1", "198.51.100.1", done)
	waitStats(t, g, 1, 2)
	try(g, "c1", "198.51.100.2", done)
	waitStats(t, g, 1, 3)
	inner.release <- struct{}{} // a1 ends: b1, never served, goes first
	require.NoError(t, (<-done).err)
	waitStats(t, g, 1, 2)
	try(g, "a3", "192.0.2.66", done)
	waitStats(t, g, 1, 3)
	for range 4 {
		inner.release <- struct{}{}
		require.NoError(t, (<-done).err)
	}
	require.Equal(t, []string{"a1", "b1", "c1", "a2", "a3"}, inner.order())
	waitStats(t, g, 0, 0)
	g.mu.Lock()
	require.Empty(t, g.keys, "no state is left")
	g.mu.Unlock()
	require.Equal(t, int32(1), inner.peak.Load())
}

func TestGateRefusesFast(t *testing.T) {
	inner := newBlocking()
	g := NewGate(inner, GateConfig{CPU: -1, MaxConcurrent: 1, PerKey: 1, MaxQueue: 2, MaxWait: 200 * time.Millisecond})
	done := make(chan attempt, 20)
	try(g, "a", "192.0.2.1", done)
	waitStats(t, g, 1, 0)
	try(g, "b", "192.0.2.2", done)
	try(g, "c", "192.0.2.3", done)
	waitStats(t, g, 1, 2)
	start := time.Now()
	_, err := g.Authenticate(bg, cl("d", "u", "192.0.2.4:1"), mqttsec.Credentials{})
	require.ErrorIs(t, err, mqttsec.ErrServerBusy, "the queue is full")
	require.Less(t, time.Since(start), 100*time.Millisecond)
	// The waiting ones give up after MaxWait.
	for range 2 {
		r := <-done
		require.ErrorIs(t, r.err, mqttsec.ErrServerBusy)
		require.Equal(t, mqttsec.CodeServerBusy, mqttsec.CodeOf(r.err))
	}
	waitStats(t, g, 1, 0)
	// A cancelled CONNECT gives up too.
	ctx, cancel := context.WithCancel(bg)
	go func() {
		time.Sleep(10 * time.Millisecond)
		cancel()
	}()
	_, err = g.Authenticate(ctx, cl("e", "u", "192.0.2.5:1"), mqttsec.Credentials{})
	require.ErrorIs(t, err, mqttsec.ErrServerBusy)
	require.ErrorIs(t, err, context.Canceled)
	inner.release <- struct{}{}
	require.NoError(t, (<-done).err)
	waitStats(t, g, 0, 0)
}

// cachedAuth answers "cached" at once, and verifies nothing else.
type cachedAuth struct{ *blocking }

func (cachedAuth) AuthenticateCached(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, bool) {
	if cl.ID == "cached" {
		return &mqttsec.Identity{Subject: "cached", Method: mqttsec.MethodPassword}, true
	}
	return nil, false
}

func (cachedAuth) Revalidate(context.Context, *mqttsec.Client) error { return mqttsec.ErrRevoked }

func TestGateCachedSkipsTheQueue(t *testing.T) {
	inner := cachedAuth{newBlocking()}
	g := NewGate(inner, GateConfig{MaxConcurrent: 1, MaxWait: time.Minute})
	done := make(chan attempt, 2)
	try(g, "slow", "192.0.2.1", done)
	waitStats(t, g, 1, 0)
	id, err := g.Authenticate(bg, cl("cached", "u", "192.0.2.1:1"), mqttsec.Credentials{})
	require.NoError(t, err)
	require.Equal(t, "cached", id.Subject)
	_, ok := g.AuthenticateCached(bg, cl("cached", "u", "192.0.2.1:1"), mqttsec.Credentials{})
	require.True(t, ok)
	require.ErrorIs(t, g.Revalidate(bg, cl("x", "u", "192.0.2.1:1")), mqttsec.ErrRevoked, "revalidation passes through")
	inner.release <- struct{}{}
	require.NoError(t, (<-done).err)

	plain := NewGate(users, GateConfig{})
	require.ErrorIs(t, plain.Revalidate(bg, cl("x", "u", "192.0.2.1:1")), mqttsec.ErrAbstain)
	_, ok = plain.AuthenticateCached(bg, cl("x", "u", "192.0.2.1:1"), mqttsec.Credentials{})
	require.False(t, ok)
}

// TestGateConcurrent hammers a Gate from many addresses: the bound on
// concurrent verifications holds, every attempt ends, and no state is
// left.
func TestGateConcurrent(t *testing.T) {
	var running, peak atomic.Int32
	inner := mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		running.Add(-1)
		return nil, mqttsec.ErrBadCredentials
	})
	g := NewGate(inner, GateConfig{CPU: -1, MaxConcurrent: 3, MaxQueue: 20, PerKey: 2, MaxWait: 50 * time.Millisecond})
	var wg sync.WaitGroup
	var busy, verified atomic.Int32
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_, err := g.Authenticate(bg, cl("c", "u", fmt.Sprintf("10.0.%d.%d:1", w%7, i%5)), mqttsec.Credentials{})
				if mqttsec.CodeOf(err) == mqttsec.CodeServerBusy {
					busy.Add(1)
				} else {
					verified.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.LessOrEqual(t, peak.Load(), int32(3))
	require.Equal(t, int32(32*200), busy.Load()+verified.Load())
	require.Positive(t, verified.Load())
	r, w := g.Stats()
	require.Zero(t, r)
	require.Zero(t, w)
	g.mu.Lock()
	require.Empty(t, g.keys)
	require.Empty(t, g.turn)
	g.mu.Unlock()
}

// TestGateCPUBudget checks that verifications take no more than their CPU
// share: after a burst of one second's worth, each verification of d waits
// d/CPU after the one before.
func TestGateCPUBudget(t *testing.T) {
	var mu sync.Mutex
	var charged time.Duration
	inner := mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
		start := time.Now()
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		charged += time.Since(start)
		mu.Unlock()
		return nil, mqttsec.ErrBadCredentials
	})
	g := NewGate(inner, GateConfig{CPU: 0.05, MaxWait: time.Minute, MaxQueue: 100})
	require.Equal(t, 1, g.max)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := g.Authenticate(bg, cl("c", "u", fmt.Sprintf("192.0.2.%d:1", i)), mqttsec.Credentials{})
			require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	// The budget lets the last verification start once all but it were
	// charged, less the one-second window.
	last := charged / 12
	require.GreaterOrEqual(t, elapsed, time.Duration(float64(charged-last)/0.05)-time.Second,
		"%d verifications of %v in %v", 12, charged/12, elapsed)
	waitStats(t, g, 0, 0)

	// Defaults: an eighth of the CPUs, at least a quarter of one.
	d := NewGate(users, GateConfig{})
	require.Equal(t, max(0.25, float64(runtime.GOMAXPROCS(0))/8), d.cpu)
	require.Equal(t, int(math.Ceil(d.cpu)), d.max)
	require.Equal(t, max(1, runtime.GOMAXPROCS(0)/4), NewGate(users, GateConfig{CPU: -1}).max)
}
