package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/redisstore"
)

func requireRefused(t *testing.T, err error, sentinel error) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, sentinel)
	require.Equal(t, mqttsec.CodeClientIDNotValid, mqttsec.CodeOf(err), "refused with 0x85")
}

// Two Guards sharing Redis behave as one broker with clientid.Registry's
// TakeoverOwner: another identity is refused, live or kept, anywhere in the
// cluster; the owner takes over from another node, whose session is ended
// (0x8E), live or kept.
func TestRegistryOwnerAcrossNodes(t *testing.T) {
	noLeak(t)
	rdb := needRedis(t)
	p := prefix(t, rdb)
	a := newMember(t, rdb, p, redisstore.RegistryConfig{})
	b := newMember(t, rdb, p, redisstore.RegistryConfig{})

	a1, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	require.False(t, a1.Resume())

	_, err = b.connect("dev1", "bob")
	requireRefused(t, err, clientid.ErrTaken)
	_, err = a.connect("dev1", "bob")
	requireRefused(t, err, clientid.ErrTaken)

	// alice reconnects through node b: node a's connection is taken over.
	b1, err := b.connect("dev1", "alice")
	require.NoError(t, err)
	require.True(t, b1.Resume(), "same identity: may resume")
	a.waitKicked(t, a1, mqttsec.CodeSessionTakenOver)
	require.Error(t, a1.Err(), "the old session may do nothing more")
	a.Disconnect(a1, 0) // what the adapter does after the kick
	b.notKicked(t, b1)

	_, err = a.connect("dev1", "bob")
	requireRefused(t, err, clientid.ErrTaken)

	// alice's session is kept on node b: still not bob's.
	b.Disconnect(b1, time.Minute)
	require.True(t, b1.Kept())
	_, err = a.connect("dev1", "bob")
	requireRefused(t, err, clientid.ErrOwned)

	// alice comes back through node a: node b discards the kept session.
	a2, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	require.True(t, a2.Resume())
	b.waitKicked(t, b1, mqttsec.CodeSessionTakenOver)
	a.notKicked(t, a2)

	// Another ID is independent.
	b2, err := b.connect("dev2", "bob")
	require.NoError(t, err)
	require.False(t, b2.Resume())

	requireTTLs(t, rdb, p)
	a.Disconnect(a2, 0)
	b.Disconnect(b2, 0)
	require.Eventually(t, func() bool { return len(keys(t, rdb, p)) == 0 }, 5*time.Second, 10*time.Millisecond,
		"released bindings are deleted: %v", keys(t, rdb, p))
	require.Eventually(t, func() bool { return a.reg.Leases() == 0 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, b.reg.Leases(), "the kept lease is remembered until it ends")
}

func TestRegistryDenyAcrossNodes(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	cfg := redisstore.RegistryConfig{Takeover: clientid.TakeoverDeny}
	a := newMember(t, rdb, p, cfg)
	b := newMember(t, rdb, p, cfg)

	a1, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	_, err = b.connect("dev1", "alice")
	requireRefused(t, err, clientid.ErrTaken)
	a.notKicked(t, a1)

	a.Disconnect(a1, time.Minute)
	_, err = b.connect("dev1", "bob")
	requireRefused(t, err, clientid.ErrOwned)
	b1, err := b.connect("dev1", "alice")
	require.NoError(t, err)
	require.True(t, b1.Resume())
	a.waitKicked(t, a1, mqttsec.CodeSessionTakenOver)
}

func TestRegistryInsecureAllowAcrossNodes(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	cfg := redisstore.RegistryConfig{Takeover: clientid.InsecureTakeoverAllow}
	a := newMember(t, rdb, p, cfg)
	b := newMember(t, rdb, p, cfg)

	a1, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	b1, err := b.connect("dev1", "bob")
	require.NoError(t, err)
	require.False(t, b1.Resume(), "another identity never resumes the session")
	a.waitKicked(t, a1, mqttsec.CodeSessionTakenOver)
	// The old lease's release does not free bob's binding.
	a.Disconnect(a1, time.Minute)
	owner, err := rdb.HGet(context.Background(), p+"cid:dev1", "o").Result()
	require.NoError(t, err)
	require.Equal(t, "8:passwordbob", owner)
	b.notKicked(t, b1)
}

// A node that dies holds nothing once its leases expire; while it lives,
// its refresh keeps them.
func TestRegistryNodeDeath(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	ttl := 600 * time.Millisecond
	a := newMember(t, rdb, p, redisstore.RegistryConfig{LeaseTTL: ttl})
	b := newMember(t, rdb, p, redisstore.RegistryConfig{LeaseTTL: ttl})

	_, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	time.Sleep(3 * ttl) // several refreshes
	_, err = b.connect("dev1", "bob")
	requireRefused(t, err, clientid.ErrTaken)
	d, err := rdb.PTTL(context.Background(), p+"cid:dev1").Result()
	require.NoError(t, err)
	require.LessOrEqual(t, d, ttl)

	require.NoError(t, a.node.Close()) // node a dies without releasing
	start := time.Now()
	require.Eventually(t, func() bool {
		_, err := b.connect("dev1", "bob")
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	t.Logf("client ID free %s after its node died (lease TTL %s)", time.Since(start).Round(time.Millisecond), ttl)
	require.Less(t, time.Since(start), ttl+2*time.Second)
}

// A lease whose binding another identity took while the takeover's kick
// was missed (here: the key removed behind the node's back) ends its
// session at the next refresh.
func TestRegistryLostLeaseEndsSession(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	ttl := 600 * time.Millisecond
	a := newMember(t, rdb, p, redisstore.RegistryConfig{LeaseTTL: ttl})
	b := newMember(t, rdb, p, redisstore.RegistryConfig{LeaseTTL: ttl})

	a1, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	require.NoError(t, rdb.Del(context.Background(), p+"cid:dev1").Err())
	b1, err := b.connect("dev1", "bob")
	require.NoError(t, err)
	a.waitKicked(t, a1, mqttsec.CodeSessionTakenOver)
	b.notKicked(t, b1)
	require.Positive(t, a.ev.count(mqttsec.EventWarning, "redis"), "the lost lease is reported")
}

// Bindings Redis lost (a restart without persistence) are written again
// by the nodes that hold them, live or kept.
func TestRegistryRewritesLostBindings(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	ttl := 600 * time.Millisecond
	a := newMember(t, rdb, p, redisstore.RegistryConfig{LeaseTTL: ttl})
	b := newMember(t, rdb, p, redisstore.RegistryConfig{LeaseTTL: ttl})

	a1, err := a.connect("live", "alice")
	require.NoError(t, err)
	require.NoError(t, rdb.Del(context.Background(), p+"cid:live").Err())
	require.Eventually(t, func() bool {
		return rdb.Exists(context.Background(), p+"cid:live").Val() == 1
	}, 5*time.Second, 10*time.Millisecond)
	_, err = b.connect("live", "bob")
	requireRefused(t, err, clientid.ErrTaken)
	a.notKicked(t, a1)
	requireTTLs(t, rdb, p)
}

// Concurrent claims of one ID by two identities on two nodes: never do
// both hold it at once.
func TestRegistryConcurrentClaims(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	a := newMember(t, rdb, p, redisstore.RegistryConfig{})
	b := newMember(t, rdb, p, redisstore.RegistryConfig{})
	var held [2]atomic.Int32
	var wins [2]atomic.Int32
	var wg sync.WaitGroup
	var bad atomic.Value
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := []*member{a, b}[w%2]
			for i := range 25 {
				who := (w + i) % 2
				s, err := m.connect("contested", []string{"alice", "bob"}[who])
				if err != nil {
					if !errors.Is(err, clientid.ErrTaken) {
						bad.Store(err)
					}
					continue
				}
				held[who].Add(1)
				wins[who].Add(1)
				if held[1-who].Load() != 0 {
					bad.Store(fmt.Errorf("both identities hold the ID"))
				}
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				held[who].Add(-1)
				m.Disconnect(s, 0)
			}
		}()
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	t.Logf("claims won: alice %d, bob %d", wins[0].Load(), wins[1].Load())
	require.Positive(t, wins[0].Load()+wins[1].Load())
	require.Empty(t, keys(t, rdb, p))
}

// A session kept longer than MaxKeep loses its binding at MaxKeep, and its
// node discards it then: no kept session outlives its binding.
func TestRegistryMaxKeep(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	a := newMember(t, rdb, p, redisstore.RegistryConfig{LeaseTTL: 600 * time.Millisecond, MaxKeep: time.Second})
	s, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	a.Disconnect(s, time.Hour)
	require.True(t, s.Kept())
	d, err := rdb.PTTL(context.Background(), p+"cid:dev1").Result()
	require.NoError(t, err)
	require.Greater(t, d, time.Duration(0))
	require.LessOrEqual(t, d, time.Second, "the binding expires at MaxKeep, not after an hour")
	a.waitKicked(t, s, mqttsec.CodeSessionTakenOver)
	// Redis set the binding's TTL a round trip after the node computed
	// its deadline: the key may outlive the kick by that much.
	require.Eventually(t, func() bool { return rdb.Exists(context.Background(), p+"cid:dev1").Val() == 0 },
		2*time.Second, 5*time.Millisecond, "the binding expired")
}
