package clientid_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
)

// clock is a manual clock for the registry.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func claim(t *testing.T, r mqttsec.Registry, id string, who *mqttsec.Identity) (mqttsec.Lease, error) {
	t.Helper()
	return r.Claim(context.Background(), &mqttsec.Client{ID: id, Identity: who})
}

func mustClaim(t *testing.T, r mqttsec.Registry, id string, who *mqttsec.Identity) mqttsec.Lease {
	t.Helper()
	l, err := claim(t, r, id, who)
	require.NoError(t, err)
	require.NotNil(t, l.Release)
	return l
}

func TestRegistryOwner(t *testing.T) {
	c := newClock()
	r := clientid.NewRegistry(clientid.WithClock(c.now))
	alice, alice2, bob := user("alice"), user("alice"), user("bob")

	a1 := mustClaim(t, r, "dev-1", alice)
	require.False(t, a1.Resume, "a new ID has no session to resume")

	// Another identity is refused while alice is live.
	_, err := claim(t, r, "dev-1", bob)
	require.ErrorIs(t, err, clientid.ErrTaken)
	require.ErrorIs(t, err, mqttsec.ErrClientIDTaken)
	require.Equal(t, mqttsec.CodeClientIDNotValid, mqttsec.CodeOf(err))
	// The same principal (another Identity value) takes over.
	a2 := mustClaim(t, r, "dev-1", alice2)
	require.True(t, a2.Resume)
	// The connection taken over ends first: the ID stays alice's.
	a1.Release(0)
	_, err = claim(t, r, "dev-1", bob)
	require.ErrorIs(t, err, clientid.ErrTaken)

	// alice disconnects, the broker keeps her session for an hour.
	a2.Release(time.Hour)
	require.Equal(t, 1, r.Len())
	_, err = claim(t, r, "dev-1", bob)
	require.ErrorIs(t, err, clientid.ErrOwned)
	require.ErrorIs(t, err, mqttsec.ErrSessionOwned)
	c.advance(59 * time.Minute)
	_, err = claim(t, r, "dev-1", bob)
	require.ErrorIs(t, err, clientid.ErrOwned)
	a3 := mustClaim(t, r, "dev-1", alice)
	require.True(t, a3.Resume, "alice resumes her kept session")
	// The resumed session ends clean: the ID is free at once, the old
	// keep no longer holds.
	a3.Release(0)
	require.Equal(t, 0, r.Len())
	b1 := mustClaim(t, r, "dev-1", bob)
	require.False(t, b1.Resume)
	b1.Release(time.Minute)

	// After the keep, the binding is gone.
	c.advance(time.Minute)
	a4 := mustClaim(t, r, "dev-1", alice)
	require.False(t, a4.Resume, "bob's expired binding gives alice a fresh session")
	a4.Release(0)

	// Method is part of the identity.
	x := mustClaim(t, r, "dev-2", &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodX509})
	_, err = claim(t, r, "dev-2", alice)
	require.ErrorIs(t, err, clientid.ErrTaken)
	x.Release(0)
}

func TestRegistryOverlappingKeeps(t *testing.T) {
	c := newClock()
	r := clientid.NewRegistry(clientid.WithClock(c.now))
	alice, bob := user("alice"), user("bob")
	a1 := mustClaim(t, r, "dev", alice)
	a2 := mustClaim(t, r, "dev", alice)
	// The newer connection ends first with a kept session; the one it took
	// over reports its end later, with no session. The kept session is
	// still bound.
	a2.Release(time.Hour)
	a1.Release(0)
	_, err := claim(t, r, "dev", bob)
	require.ErrorIs(t, err, clientid.ErrOwned)
	c.advance(time.Hour)
	mustClaim(t, r, "dev", bob).Release(0)
}

func TestRegistryReleaseOnce(t *testing.T) {
	r := clientid.NewRegistry()
	alice, bob := user("alice"), user("bob")
	a1 := mustClaim(t, r, "dev", alice)
	a2 := mustClaim(t, r, "dev", alice)
	a1.Release(0)
	a1.Release(0) // a second release of one lease must not free a2's hold
	_, err := claim(t, r, "dev", bob)
	require.ErrorIs(t, err, clientid.ErrTaken)
	a2.Release(0)
	mustClaim(t, r, "dev", bob)
}

func TestRegistryDeny(t *testing.T) {
	c := newClock()
	r := clientid.NewRegistry(clientid.WithTakeover(clientid.TakeoverDeny), clientid.WithClock(c.now))
	alice, bob := user("alice"), user("bob")
	a1 := mustClaim(t, r, "dev", alice)
	for _, who := range []*mqttsec.Identity{alice, user("alice"), bob} {
		_, err := claim(t, r, "dev", who)
		require.ErrorIs(t, err, clientid.ErrTaken, who.Subject)
		require.ErrorContains(t, err, "is connected")
	}
	a1.Release(time.Minute)
	_, err := claim(t, r, "dev", bob)
	require.ErrorIs(t, err, clientid.ErrOwned)
	a2 := mustClaim(t, r, "dev", alice)
	require.True(t, a2.Resume)
	a2.Release(0)
	mustClaim(t, r, "dev", bob)
}

func TestRegistryInsecureAllow(t *testing.T) {
	c := newClock()
	r := clientid.NewRegistry(clientid.WithTakeover(clientid.InsecureTakeoverAllow), clientid.WithClock(c.now))
	alice, bob, carol := user("alice"), user("bob"), user("carol")
	a1 := mustClaim(t, r, "dev", alice)
	b1 := mustClaim(t, r, "dev", bob)
	require.False(t, b1.Resume, "another identity never resumes")
	a1.Release(time.Hour) // alice's late release does not touch bob's hold
	b2 := mustClaim(t, r, "dev", bob)
	require.True(t, b2.Resume, "bob holds the ID now")
	b1.Release(0)
	b2.Release(time.Hour)
	c1 := mustClaim(t, r, "dev", carol)
	require.False(t, c1.Resume, "bob's kept session is not handed to carol")
	c1.Release(0)
	require.Equal(t, 0, r.Len())

	// A lease of an entry that was replaced, then removed, does not touch
	// the ID's next entry.
	a2 := mustClaim(t, r, "dev", alice)
	b3 := mustClaim(t, r, "dev", bob)
	b3.Release(0)
	c2 := mustClaim(t, r, "dev", carol)
	a2.Release(0)
	c3 := mustClaim(t, r, "dev", carol)
	require.True(t, c3.Resume, "carol still holds the ID")
	c2.Release(0)
	c3.Release(time.Minute)
	require.Equal(t, 1, r.Len())
}

func TestRegistryZeroValue(t *testing.T) {
	var r clientid.Registry
	alice := user("alice")
	l := mustClaim(t, &r, "dev", alice)
	_, err := claim(t, &r, "dev", user("bob"))
	require.ErrorIs(t, err, clientid.ErrTaken, "the zero Registry is owner mode")
	l.Release(0)
	require.Equal(t, 0, r.Len())
	_, err = r.Claim(context.Background(), &mqttsec.Client{ID: "x"})
	require.Error(t, err, "no identity, no claim")
	_, err = r.Claim(context.Background(), nil)
	require.Error(t, err)
}

func TestRegistrySweepAndMax(t *testing.T) {
	c := newClock()
	r := clientid.NewRegistry(clientid.WithClock(c.now), clientid.WithMaxIDs(100), clientid.WithShards(4))
	alice := user("alice")
	for i := range 100 {
		mustClaim(t, r, fmt.Sprintf("kept-%d", i), alice).Release(time.Minute)
	}
	require.Equal(t, 100, r.Len())
	_, err := claim(t, r, "one-more", alice)
	require.ErrorIs(t, err, clientid.ErrFull)
	require.ErrorIs(t, err, mqttsec.ErrQuotaExceeded)
	require.Equal(t, mqttsec.CodeQuotaExceeded, mqttsec.CodeOf(err))
	// Claims of IDs already bound are not new IDs.
	l := mustClaim(t, r, "kept-7", alice)
	require.True(t, l.Resume)
	l.Release(time.Minute)

	// Once the kept sessions expired, a full registry sweeps and admits.
	c.advance(time.Minute)
	l = mustClaim(t, r, "one-more", alice)
	r.Sweep()
	require.Equal(t, 1, r.Len())
	l.Release(0)
	// Expired bindings of other shards make room too.
	for i := range 100 {
		mustClaim(t, r, fmt.Sprintf("kept-%d", i), alice).Release(time.Minute)
	}
	c.advance(time.Minute)
	for i := range 100 {
		mustClaim(t, r, fmt.Sprintf("new-%d", i), alice)
	}
	_, err = claim(t, r, "one-more", alice)
	require.ErrorIs(t, err, clientid.ErrFull)

	// Expired bindings are swept as the registry grows, without Sweep.
	r2 := clientid.NewRegistry(clientid.WithClock(c.now), clientid.WithShards(1))
	for i := range 10000 {
		mustClaim(t, r2, fmt.Sprintf("k-%d", i), alice).Release(time.Second)
		c.advance(time.Millisecond)
	}
	require.Less(t, r2.Len(), 3000, "bindings older than a second were swept")
	c.advance(time.Second)
	require.Equal(t, r2.Len(), r2.Sweep())
	require.Equal(t, 0, r2.Len())
}

func TestTakeoverNames(t *testing.T) {
	for _, m := range []clientid.Takeover{clientid.TakeoverOwner, clientid.TakeoverDeny, clientid.InsecureTakeoverAllow} {
		got, err := clientid.ParseTakeover(m.String())
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := clientid.ParseTakeover("steal")
	require.Error(t, err)
	require.Equal(t, "Takeover(9)", clientid.Takeover(9).String())
}

// TestRegistryConcurrent hammers one registry from many goroutines: each ID
// is always held by one identity, every lease is released, and the race
// detector watches the locking.
func TestRegistryConcurrent(t *testing.T) {
	r := clientid.NewRegistry(clientid.WithShards(8))
	var wg sync.WaitGroup
	var held [16]atomic.Pointer[string]
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			who := user(fmt.Sprintf("user-%d", g%4))
			for i := range 2000 {
				k := (i*7 + g) % len(held)
				l, err := claim(t, r, fmt.Sprintf("id-%d", k), who)
				if err != nil {
					continue
				}
				if prev := held[k].Swap(&who.Subject); prev != nil && *prev != who.Subject {
					t.Errorf("id-%d held by %s and %s", k, *prev, who.Subject)
				}
				held[k].CompareAndSwap(&who.Subject, nil)
				l.Release(0)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 0, r.Len())
}
