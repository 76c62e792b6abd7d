package redisstore_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/eclipse/paho.golang/paho"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/redisstore"
)

// sharedAdapter stands for the database the brokers of a cluster keep
// their Casbin policy in: every enforcer loads from it and writes to it.
type sharedAdapter struct {
	mu    sync.Mutex
	rules [][]string // ptype first
}

func (a *sharedAdapter) LoadPolicy(m model.Model) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.rules {
		if err := persist.LoadPolicyArray(r, m); err != nil {
			return err
		}
	}
	return nil
}

func (a *sharedAdapter) SavePolicy(m model.Model) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rules = nil
	for _, sec := range []string{"p", "g"} {
		for ptype, ast := range m[sec] {
			for _, r := range ast.Policy {
				a.rules = append(a.rules, append([]string{ptype}, r...))
			}
		}
	}
	return nil
}

func (a *sharedAdapter) AddPolicy(_, ptype string, rule []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rules = append(a.rules, append([]string{ptype}, rule...))
	return nil
}

func (a *sharedAdapter) RemovePolicy(_, ptype string, rule []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	want := append([]string{ptype}, rule...)
	a.rules = slices.DeleteFunc(a.rules, func(r []string) bool { return slices.Equal(r, want) })
	return nil
}

func (a *sharedAdapter) RemoveFilteredPolicy(string, string, int, ...string) error {
	return nil // not used by the tests
}

// broker is one broker of a test cluster: a Guard with the cluster's
// registry and a Casbin authorizer kept in sync by the cluster's watcher.
type broker struct {
	*testbroker.Broker
	node *redisstore.Node
	e    *casbin.Enforcer
	acl  *acl.Casbin
	ev   *events
	bans *ratelimit.Bans
}

func startClusterBroker(t *testing.T, rdb redis.UniversalClient, p string, policy *sharedAdapter, cfg redisstore.RegistryConfig) *broker {
	return startClusterBrokerLimited(t, rdb, p, policy, cfg, nil)
}

// startClusterBrokerLimited starts a cluster broker; with lcfg, its Guard
// has a ratelimit.Limiter on the cluster's stores and ban list.
func startClusterBrokerLimited(t *testing.T, rdb redis.UniversalClient, p string, policy *sharedAdapter,
	cfg redisstore.RegistryConfig, lcfg *ratelimit.Config) *broker {
	t.Helper()
	ev := &events{}
	n := newNode(t, rdb, p, ev)
	e, err := casbin.NewEnforcer(acl.NewModel(), policy)
	require.NoError(t, err)
	c, err := acl.NewCasbin(e, acl.WithWatcher(n.Watcher()))
	require.NoError(t, err)
	gcfg := mqttsec.Config{Authenticator: passwords, Authorizer: c, Registry: n.Registry(cfg), Events: ev}
	var list *ratelimit.Bans
	var store *redisstore.BanStore
	if lcfg != nil {
		store = n.BanStore(redisstore.BanConfig{})
		list = ratelimit.NewBans(ratelimit.BansConfig{Store: store})
		lc := *lcfg
		lc.Bans, lc.NewStore, lc.Events = list, n.NewStore(redisstore.RateConfig{}), ev
		lim, err := ratelimit.New(lc)
		require.NoError(t, err)
		gcfg.Limiter = store.Limiter(lim)
	}
	g := mqttsec.New(gcfg)
	n.Attach(g)
	if list != nil {
		list.Attach(g)
		require.NoError(t, store.Follow(list))
	}
	return &broker{Broker: testbroker.Start(t, g, testbroker.Options{}), node: n, e: e, acl: c, ev: ev, bans: list}
}

func clientOpts(id, user string, resume bool) testbroker.ClientOptions {
	return testbroker.ClientOptions{ClientID: id, Username: user, Password: []byte("pw"), SessionExpiry: 300, Resume: resume}
}

func dialOK(t *testing.T, b *broker, o testbroker.ClientOptions) (*testbroker.Conn, *paho.Connack) {
	t.Helper()
	c, ca, err := testbroker.Dial(t, b.Addr, o)
	require.NoError(t, err, "client %q as %q", o.ClientID, o.Username)
	return c, ca
}

func dialRefused(t *testing.T, b *broker, o testbroker.ClientOptions, code byte) {
	t.Helper()
	c, ca, err := testbroker.Dial(t, b.Addr, o)
	require.Error(t, err, "client %q as %q", o.ClientID, o.Username)
	require.Nil(t, c)
	require.NotNil(t, ca, "a CONNACK says why")
	require.Equal(t, code, ca.ReasonCode)
}

func serverDisconnect(t *testing.T, c *testbroker.Conn, code byte) {
	t.Helper()
	select {
	case d := <-c.ServerDisconnect():
		require.Equal(t, code, d.ReasonCode)
	case <-time.After(testbroker.Timeout):
		t.Fatalf("no DISCONNECT 0x%02X", code)
	}
}

func stillLive(t *testing.T, c *testbroker.Conn) {
	t.Helper()
	select {
	case <-c.Closed():
		t.Fatal("the connection was closed")
	default:
	}
}

func openPolicy() *sharedAdapter {
	return &sharedAdapter{rules: [][]string{{"p", "*", "#", "readwrite", "allow"}}}
}

// Two mochi brokers sharing Redis refuse a takeover by another identity
// across brokers, and let the owner take its session over from the other
// broker, which closes the old connection with 0x8E or discards the kept
// session (and its delayed will).
func TestClusterTakeoverWithBrokers(t *testing.T) {
	noLeak(t)
	rdb := needRedis(t)
	p := prefix(t, rdb)
	policy := openPolicy()
	b1 := startClusterBroker(t, rdb, p, policy, redisstore.RegistryConfig{})
	b2 := startClusterBroker(t, rdb, p, policy, redisstore.RegistryConfig{})

	pub, _ := dialOK(t, b1, clientOpts("publisher", "bob", false))
	alice, _ := dialOK(t, b1, clientOpts("dev-1", "alice", false))
	require.Equal(t, byte(1), alice.Sub(t, "t/#", 1))

	dialRefused(t, b2, clientOpts("dev-1", "mallory", false), 0x85)
	dialRefused(t, b2, clientOpts("dev-1", "mallory", true), 0x85)
	code, v3, err := testbroker.DialV3(t, b2.Addr, "dev-1", "mallory", "pw")
	require.NoError(t, err)
	require.Nil(t, v3)
	require.Equal(t, byte(0x02), code)
	stillLive(t, alice)
	_, err = pub.Pub(t, "t/1", []byte("1"), 1)
	require.NoError(t, err)
	alice.ExpectMessage(t, "t/1", testbroker.Timeout)

	// alice connects through the other broker: the first one closes her
	// old connection with 0x8E.
	alice2, _ := dialOK(t, b2, clientOpts("dev-1", "alice", true))
	serverDisconnect(t, alice, 0x8E)
	stillLive(t, alice2)

	// Her session kept on b2 (with a delayed will) stays hers...
	will := &paho.WillMessage{Topic: "will/dev-1", Payload: []byte("gone"), QoS: 1}
	o := clientOpts("dev-1", "alice", true)
	o.Will, o.WillDelay = will, 2
	alice2.Drop()
	<-alice2.Closed()
	alice3, _ := dialOK(t, b2, o)
	watcher, _ := dialOK(t, b2, clientOpts("watcher", "bob", false))
	require.Equal(t, byte(1), watcher.Sub(t, "will/#", 1))
	alice3.Drop()
	<-alice3.Closed()
	require.Eventually(t, func() bool {
		cl, ok := b2.Server.Clients.Get("dev-1")
		return ok && cl.Closed()
	}, testbroker.Timeout, 10*time.Millisecond, "b2 keeps the session")
	dialRefused(t, b1, clientOpts("dev-1", "mallory", false), 0x85)

	// ...and when she comes back through b1, b2 discards it, delayed
	// will included: she is back.
	_, _ = dialOK(t, b1, clientOpts("dev-1", "alice", true))
	require.Eventually(t, func() bool {
		_, ok := b2.Server.Clients.Get("dev-1")
		return !ok
	}, testbroker.Timeout, 10*time.Millisecond, "b2 discarded the kept session")
	watcher.NoMessage(t, 3*time.Second)
}

// A kick on one node ends the sessions it selects on every node.
func TestClusterKickWithBrokers(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	policy := openPolicy()
	b1 := startClusterBroker(t, rdb, p, policy, redisstore.RegistryConfig{})
	b2 := startClusterBroker(t, rdb, p, policy, redisstore.RegistryConfig{})

	alice, _ := dialOK(t, b2, clientOpts("dev-1", "alice", false))
	aliceToo, _ := dialOK(t, b1, clientOpts("dev-2", "alice", false))
	bob, _ := dialOK(t, b2, clientOpts("dev-3", "bob", false))

	n, err := b1.node.Kick(context.Background(), redisstore.Subject("alice"), mqttsec.CodeAdministrativeAction)
	require.NoError(t, err)
	require.Equal(t, 1, n, "one session on this node")
	serverDisconnect(t, alice, 0x98)
	serverDisconnect(t, aliceToo, 0x98)
	stillLive(t, bob)

	_, err = b2.node.Kick(context.Background(), redisstore.ClientID("dev-3"), mqttsec.CodeAdministrativeAction)
	require.NoError(t, err)
	serverDisconnect(t, bob, 0x98)
}

// A policy change made through one broker's enforcer is enforced by the
// other broker within a second.
func TestClusterPolicyChangeWithBrokers(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	policy := &sharedAdapter{rules: [][]string{{"p", "alice", "a/#", "readwrite", "allow"}}}
	b1 := startClusterBroker(t, rdb, p, policy, redisstore.RegistryConfig{})
	b2 := startClusterBroker(t, rdb, p, policy, redisstore.RegistryConfig{})

	bob, _ := dialOK(t, b2, clientOpts("bob-1", "bob", false))
	require.Equal(t, byte(0x87), bob.Sub(t, "x/#", 1))
	gen := b2.acl.Generation()

	start := time.Now()
	_, err := b1.e.AddPolicy("bob", "x/#", "readwrite", "allow")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b2.acl.Generation() != gen }, time.Second, time.Millisecond,
		"node 2 reloads within 1 s")
	t.Logf("policy change reached the other node in %s", time.Since(start).Round(time.Microsecond))
	require.Equal(t, byte(1), bob.Sub(t, "x/#", 1))

	// And a removal takes the right away.
	gen = b2.acl.Generation()
	_, err = b1.e.RemovePolicy("bob", "x/#", "readwrite", "allow")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b2.acl.Generation() != gen }, time.Second, time.Millisecond)
	require.Equal(t, byte(0x87), bob.Sub(t, "x/y", 1))
}

// Two mochi brokers share their bans and their CONNECT limits: a ban on
// one ends the client's connection on the other (a v5 client is sent
// 0x98) and refuses its return (0x8A) on both; an address gets its CONNECT
// burst once in the cluster.
func TestClusterBansAndLimitsWithBrokers(t *testing.T) {
	rdb := needRedis(t)
	p := prefix(t, rdb)
	policy := openPolicy()
	lcfg := &ratelimit.Config{ConnectPerAddr: ratelimit.Every(time.Hour, 4)}
	b1 := startClusterBrokerLimited(t, rdb, p, policy, redisstore.RegistryConfig{}, lcfg)
	b2 := startClusterBrokerLimited(t, rdb, p, policy, redisstore.RegistryConfig{}, lcfg)

	mallory, _ := dialOK(t, b2, clientOpts("m-1", "mallory", false))
	alice, _ := dialOK(t, b2, clientOpts("a-1", "alice", false))
	require.NoError(t, b1.bans.Add(context.Background(), ratelimit.Ban{Kind: ratelimit.BanSubject, Value: "mallory"}))
	serverDisconnect(t, mallory, 0x98)
	stillLive(t, alice)
	dialRefused(t, b2, clientOpts("m-2", "mallory", false), 0x8A)
	dialRefused(t, b1, clientOpts("m-3", "mallory", false), 0x8A)

	// 4 CONNECTs from 127.0.0.1 in the cluster (the banned ones were
	// refused before taking any): 2 made above, 2 left.
	_, _ = dialOK(t, b1, clientOpts("a-2", "alice", false))
	_, _ = dialOK(t, b2, clientOpts("a-3", "alice", false))
	dialRefused(t, b1, clientOpts("a-4", "alice", false), 0x9F)
	dialRefused(t, b2, clientOpts("a-5", "alice", false), 0x9F)
}
