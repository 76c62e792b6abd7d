package redisstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/redisstore"
)

// banMember is a member whose Guard checks the cluster's ban list.
type banMember struct {
	*member
	bans  *ratelimit.Bans
	store *redisstore.BanStore
}

func newBanMember(t *testing.T, rdb redis.UniversalClient, p string, reg redisstore.RegistryConfig) *banMember {
	t.Helper()
	ev := &events{}
	n := newNode(t, rdb, p, ev)
	store := n.BanStore(redisstore.BanConfig{})
	list := ratelimit.NewBans(ratelimit.BansConfig{Store: store})
	lim, err := ratelimit.New(ratelimit.Config{Bans: list, NewStore: n.NewStore(redisstore.RateConfig{}), Events: ev})
	require.NoError(t, err)
	r := n.Registry(reg)
	g := mqttsec.New(mqttsec.Config{Authenticator: passwords, Authorizer: allowAll, Registry: r,
		Limiter: store.Limiter(lim), Events: ev})
	d := &disconnects{}
	g.SetDisconnector(d)
	list.Attach(g)
	n.Attach(g)
	require.NoError(t, store.Follow(list))
	return &banMember{member: &member{Guard: g, node: n, reg: r, disc: d, ev: ev}, bans: list, store: store}
}

func (m *banMember) connectFrom(id, user, addr string) (*mqttsec.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.Connect(ctx, mqttsec.Client{ID: id, Username: user, RemoteAddr: addr, Protocol: 5},
		mqttsec.Credentials{Password: []byte("pw")}, nil)
}

// eventuallyRefused waits until a CONNECT is refused with code.
func (m *banMember) eventuallyRefused(t *testing.T, id, user, addr string, code mqttsec.ReasonCode) {
	t.Helper()
	var last error
	require.Eventually(t, func() bool {
		s, err := m.connectFrom(id, user, addr)
		if err == nil {
			m.Disconnect(s, 0)
		}
		last = err
		return err != nil && mqttsec.CodeOf(err) == code
	}, 10*time.Second, 10*time.Millisecond, "want %s, last: %v", code, last)
}

func (m *banMember) eventuallyAdmitted(t *testing.T, id, user, addr string) {
	t.Helper()
	var last error
	require.Eventually(t, func() bool {
		s, err := m.connectFrom(id, user, addr)
		if err == nil {
			m.Disconnect(s, 0)
		}
		last = err
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "last: %v", last)
}

// A ban on one node refuses the client on the other and ends its sessions
// there; bans added at once on two nodes are both kept; a removal and an
// expiry reach every node.
func TestBansAcrossNodes(t *testing.T) {
	noLeak(t)
	rdb := needRedis(t)
	p := prefix(t, rdb)
	m1 := newBanMember(t, rdb, p, redisstore.RegistryConfig{})
	m2 := newBanMember(t, rdb, p, redisstore.RegistryConfig{})
	ctx := context.Background()

	mallory, err := m2.connectFrom("m-1", "mallory", "192.0.2.66:1000")
	require.NoError(t, err)
	alice, err := m2.connectFrom("a-1", "alice", "192.0.2.1:1000")
	require.NoError(t, err)

	require.NoError(t, m1.bans.Add(ctx, ratelimit.Ban{Kind: ratelimit.BanSubject, Value: "mallory", Reason: "abuse"}))
	m2.waitKicked(t, mallory, mqttsec.CodeBanned)
	m2.notKicked(t, alice)
	m2.eventuallyRefused(t, "m-2", "mallory", "192.0.2.66:1001", mqttsec.CodeBanned)
	_, err = m1.connectFrom("m-3", "mallory", "192.0.2.66:1002")
	require.Equal(t, mqttsec.CodeBanned, mqttsec.CodeOf(err))

	// Two nodes ban at once: both bans hold everywhere.
	var wg sync.WaitGroup
	for i, b := range []ratelimit.Ban{
		{Kind: ratelimit.BanClientID, Value: "evil-1"},
		{Kind: ratelimit.BanAddr, Value: "203.0.113.0/24"},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, []*banMember{m1, m2}[i].bans.Add(ctx, b))
		}()
	}
	wg.Wait()
	for _, m := range []*banMember{m1, m2} {
		m.eventuallyRefused(t, "evil-1", "bob", "192.0.2.2:1", mqttsec.CodeBanned)
		m.eventuallyRefused(t, "b-1", "bob", "203.0.113.9:1", mqttsec.CodeBanned)
	}
	require.Len(t, rdb.HGetAll(ctx, p+"bans").Val(), 3)

	// A removal on one node reaches the other.
	found, err := m2.bans.Remove(ctx, ratelimit.BanSubject, "mallory")
	require.NoError(t, err)
	require.True(t, found)
	m1.eventuallyAdmitted(t, "m-4", "mallory", "192.0.2.66:1003")

	// An expiring ban ends everywhere, and takes its key along.
	_, err = m1.bans.Remove(ctx, ratelimit.BanClientID, "evil-1")
	require.NoError(t, err)
	_, err = m1.bans.Remove(ctx, ratelimit.BanAddr, "203.0.113.0/24")
	require.NoError(t, err)
	require.NoError(t, m1.bans.Add(ctx, ratelimit.Ban{Kind: ratelimit.BanSubject, Value: "temp", Until: time.Now().Add(time.Second)}))
	m2.eventuallyRefused(t, "t-1", "temp", "192.0.2.3:1", mqttsec.CodeBanned)
	d := rdb.PTTL(ctx, p+"bans").Val()
	require.Greater(t, d, time.Duration(0))
	require.LessOrEqual(t, d, time.Second)
	m2.eventuallyAdmitted(t, "t-2", "temp", "192.0.2.3:2")
}

// Redis down: a node whose copy of the list may be stale refuses CONNECTs
// (0x88), even with a fail-open registry; a ban added meanwhile is in force
// on its node at once and reaches the other when Redis is back.
func TestFaultBansRedisRestart(t *testing.T) {
	noLeak(t)
	srv := startRedis(t)
	rdb := srv.client(t)
	p := prefix(t, rdb)
	reg := redisstore.RegistryConfig{InsecureFailOpen: true}
	m1 := newBanMember(t, rdb, p, reg)
	m2 := newBanMember(t, rdb, p, reg)
	m2.eventuallyAdmitted(t, "a-1", "alice", "192.0.2.1:1")

	srv.Stop()
	var last error
	require.Eventually(t, func() bool {
		_, last = m2.connectFrom("a-2", "alice", "192.0.2.1:2")
		return last != nil
	}, 10*time.Second, 20*time.Millisecond)
	require.ErrorIs(t, last, redisstore.ErrStaleBans)
	require.Equal(t, mqttsec.CodeServerUnavailable, mqttsec.CodeOf(last))
	require.False(t, m2.store.Fresh())

	err := m1.bans.Add(context.Background(), ratelimit.Ban{Kind: ratelimit.BanSubject, Value: "mallory"})
	require.ErrorIs(t, err, redisstore.ErrUnavailable, "not written")
	require.Error(t, m1.bans.Check(&mqttsec.Client{ID: "x", Username: "mallory", RemoteAddr: "192.0.2.9:1"}), "in force here")

	srv.Start()
	m2.eventuallyRefused(t, "m-1", "mallory", "192.0.2.66:1", mqttsec.CodeBanned)
	m2.eventuallyAdmitted(t, "a-3", "alice", "192.0.2.1:3")
	require.True(t, m2.store.Fresh())
}

// A ban list in Redis that a node cannot take (an entry ratelimit refuses)
// leaves the node's copy as it was, refuses CONNECTs there (0x88, the copy
// may be stale), and does not make the node delete the other bans when it
// saves its own.
func TestBansInvalidEntry(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	m1 := newBanMember(t, rdb, p, redisstore.RegistryConfig{})
	ctx := context.Background()
	require.NoError(t, rdb.HSet(ctx, p+"bans", "ip|not-an-address", "0|", "subject|carol", "0|").Err())
	require.NoError(t, rdb.Publish(ctx, p+"bans", "1|elsewhere").Err())
	require.Eventually(t, func() bool { return !m1.store.Fresh() }, 10*time.Second, 5*time.Millisecond)
	_, err := m1.connectFrom("a-1", "alice", "192.0.2.1:1")
	require.ErrorIs(t, err, redisstore.ErrStaleBans)

	require.NoError(t, m1.bans.Add(ctx, ratelimit.Ban{Kind: ratelimit.BanSubject, Value: "dave"}))
	bans := rdb.HGetAll(ctx, p+"bans").Val()
	require.Contains(t, bans, "subject|carol", "another node's ban stays")
	require.Contains(t, bans, "subject|dave")

	// The administrator removes the bad entry: the node takes the list.
	require.NoError(t, rdb.HDel(ctx, p+"bans", "ip|not-an-address").Err())
	require.NoError(t, rdb.Publish(ctx, p+"bans", "1|elsewhere").Err())
	m1.eventuallyRefused(t, "c-1", "carol", "192.0.2.3:1", mqttsec.CodeBanned)
	m1.eventuallyAdmitted(t, "a-2", "alice", "192.0.2.1:2")
}
