package redisstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/redisstore"
)

// Redis stopped: claims are refused with 0x88 and an error event; live
// sessions stay; releases wait. Redis restarted empty: the nodes recover
// without a restart and write back what they hold, live leases and kept
// bindings, so nothing is lost.
func TestFaultRegistryRedisRestart(t *testing.T) {
	noLeak(t)
	srv := startRedis(t)
	rdb := srv.client(t)
	p := prefix(t, rdb)
	cfg := redisstore.RegistryConfig{LeaseTTL: time.Second}
	a := newMember(t, rdb, p, cfg)
	b := newMember(t, rdb, p, cfg)

	a1, err := a.connect("dev1", "alice")
	require.NoError(t, err)
	b1, err := b.connect("dev2", "bob")
	require.NoError(t, err)

	srv.Stop()
	start := time.Now()
	_, err = a.connect("dev3", "carol")
	require.Error(t, err)
	require.ErrorIs(t, err, redisstore.ErrUnavailable)
	require.Equal(t, mqttsec.CodeServerUnavailable, mqttsec.CodeOf(err), "0x88, not the client's fault")
	require.Less(t, time.Since(start), 3*time.Second, "refused within the timeout")
	require.Positive(t, a.ev.count(mqttsec.EventError, "redis"), a.ev.dump())
	require.Contains(t, a.ev.dump(), "redis unreachable")
	require.NotContains(t, a.ev.dump(), "pw", "no secret in an event")

	b.Disconnect(b1, time.Minute) // the release must wait for Redis
	time.Sleep(1500 * time.Millisecond)
	a.notKicked(t, a1)
	require.True(t, a.node.Down())

	srv.Start() // empty: no persistence
	require.Eventually(t, func() bool {
		_, err := a.connect("dev3", "carol")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "claims succeed again without a restart")
	require.Eventually(t, func() bool { return a.ev.count(mqttsec.EventWarning, "redis") > 0 && !a.node.Down() },
		10*time.Second, 10*time.Millisecond, "the recovery is reported")

	// What the nodes held is back: alice's live lease, bob's kept session.
	require.Eventually(t, func() bool {
		n, _ := rdb.Exists(context.Background(), p+"cid:dev1", p+"cid:dev2").Result()
		return n == 2
	}, 10*time.Second, 20*time.Millisecond)
	_, err = b.connect("dev1", "mallory")
	requireRefused(t, err, clientid.ErrTaken)
	_, err = a.connect("dev2", "mallory")
	requireRefused(t, err, clientid.ErrOwned)
	a.notKicked(t, a1)
	b2, err := a.connect("dev2", "bob")
	require.NoError(t, err)
	require.True(t, b2.Resume())
	b.waitKicked(t, b1, mqttsec.CodeSessionTakenOver) // the kept session on b is discarded
	requireTTLs(t, rdb, p)
}

// A Redis that hangs (stopped with SIGSTOP) is a slow Redis: claims are
// refused after the node's timeout, and work again when it answers.
func TestFaultRegistrySlowRedis(t *testing.T) {
	noLeak(t)
	srv := startRedis(t)
	rdb := srv.client(t)
	p := prefix(t, rdb)
	a := newMember(t, rdb, p, redisstore.RegistryConfig{})
	s, err := a.connect("warm-up", "alice") // Redis has the scripts
	require.NoError(t, err)
	a.Disconnect(s, 0)

	srv.Pause()
	start := time.Now()
	_, err = a.connect("dev1", "alice")
	require.ErrorIs(t, err, redisstore.ErrUnavailable)
	require.Less(t, time.Since(start), 3*time.Second)
	srv.Resume()
	// Redis ran the claim after the node gave up on it: the node releases
	// it, so no ghost lease holds the ID for its TTL (30 s).
	require.Eventually(t, func() bool {
		_, err := a.connect("dev1", "bob")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := a.connect("dev2", "alice")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
}

// With InsecureFailOpen, claims are accepted while Redis is down, on each
// node's word; when Redis is back, one holder wins and the other's session
// is ended (0x8E).
func TestFaultRegistryInsecureFailOpen(t *testing.T) {
	noLeak(t)
	srv := startRedis(t)
	rdb := srv.client(t)
	p := prefix(t, rdb)
	cfg := redisstore.RegistryConfig{LeaseTTL: time.Second, InsecureFailOpen: true}
	a := newMember(t, rdb, p, cfg)
	b := newMember(t, rdb, p, cfg)

	srv.Stop()
	sa, err := a.connect("dev1", "carol")
	require.NoError(t, err)
	require.False(t, sa.Resume(), "a claim on the node's word never resumes")
	sb, err := b.connect("dev1", "dave")
	require.NoError(t, err, "the insecure part: both are admitted")
	srv.Start()

	kicked := func(m *member, s *mqttsec.Session) bool { _, ok := m.disc.code(s); return ok }
	require.Eventually(t, func() bool { return kicked(a, sa) || kicked(b, sb) }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(time.Second) // two more refreshes: the winner stays
	require.NotEqual(t, kicked(a, sa), kicked(b, sb), "exactly one loses")
}

// A policy change made while Redis is down reaches the other node once
// Redis is back, and a node whose subscription broke reloads.
func TestFaultWatcherRedisRestart(t *testing.T) {
	noLeak(t)
	srv := startRedis(t)
	rdb := srv.client(t)
	p := prefix(t, rdb)
	policy := &sharedAdapter{}
	var cs [2]*acl.Casbin
	var es [2]*casbin.Enforcer
	for i := range 2 {
		n := newNode(t, rdb, p, nil)
		e, err := casbin.NewEnforcer(acl.NewModel(), policy)
		require.NoError(t, err)
		c, err := acl.NewCasbin(e, acl.WithWatcher(n.Watcher()))
		require.NoError(t, err)
		cs[i], es[i] = c, e
	}
	bob := &mqttsec.Client{ID: "bob-1", Username: "bob", Identity: &mqttsec.Identity{Subject: "bob", Method: mqttsec.MethodPassword}}
	allowed := func(c *acl.Casbin) bool {
		return c.Authorize(context.Background(), bob, mqttsec.Publish, "x/1") == nil
	}
	require.False(t, allowed(cs[1]))

	srv.Stop()
	_, err := es[0].AddPolicy("bob", "x/#", "write", "allow")
	require.Error(t, err, "the notification could not be published")
	require.True(t, strings.Contains(err.Error(), "redis"), err.Error())
	require.True(t, allowed(cs[0]), "in force on the node that made it")
	require.False(t, allowed(cs[1]))
	// A change behind the watchers' back while Redis is down: only a
	// reload of node 2 after its subscription is back sees it.
	policy.AddPolicy("p", "p", []string{"bob", "y/#", "write", "allow"})

	srv.Start()
	require.Eventually(t, func() bool { return allowed(cs[1]) }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		return cs[1].Authorize(context.Background(), bob, mqttsec.Publish, "y/1") == nil
	}, 10*time.Second, 10*time.Millisecond)
}
