package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
)

// users authenticates any user name with the password "pw".
var users = mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	if cl.Username == "" {
		return nil, mqttsec.ErrAbstain
	}
	if string(cred.Password) != "pw" {
		return nil, mqttsec.ErrBadCredentials
	}
	return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
})

var allowAll = mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })

// kicks records the Guard's disconnections.
type kicks struct {
	mu    sync.Mutex
	codes map[string]mqttsec.ReasonCode
}

func (k *kicks) Disconnect(s *mqttsec.Session, code mqttsec.ReasonCode) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.codes == nil {
		k.codes = map[string]mqttsec.ReasonCode{}
	}
	k.codes[s.Client().ID] = code
}

func (k *kicks) code(id string) (mqttsec.ReasonCode, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.codes[id]
	return c, ok
}

var quiet = mqttsec.EventSinkFunc(func(mqttsec.Event) {})

// setup returns a Guard with a Limiter for cfg on a fake clock.
func setup(t *testing.T, cfg Config) (*mqttsec.Guard, *Limiter, *fakeClock, *kicks) {
	t.Helper()
	clock := newClock()
	cfg.Clock = clock.Now
	if cfg.Events == nil {
		cfg.Events = quiet
	}
	l, err := New(cfg)
	require.NoError(t, err)
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Limiter: l,
		Events: quiet, Clock: clock.Now})
	k := &kicks{}
	g.SetDisconnector(k)
	l.Bans().Attach(g)
	return g, l, clock, k
}

func connect(g *mqttsec.Guard, id, user, pass, addr string) (*mqttsec.Session, mqttsec.ReasonCode) {
	s, err := g.Connect(bg, mqttsec.Client{ID: id, Username: user, RemoteAddr: addr, Protocol: 5},
		mqttsec.Credentials{Password: []byte(pass)}, nil)
	return s, mqttsec.CodeOf(err)
}

func TestLimiterConnectRates(t *testing.T) {
	g, _, clock, _ := setup(t, Config{ConnectPerAddr: Every(time.Second, 3), Connect: Every(time.Second, 5)})
	for i := range 3 {
		s, code := connect(g, fmt.Sprint("a", i), "u", "pw", "192.0.2.1:1000")
		require.Equal(t, mqttsec.CodeSuccess, code)
		g.Disconnect(s, 0)
	}
	_, code := connect(g, "a3", "u", "pw", "192.0.2.1:1001")
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, code)
	_, code = connect(g, "b0", "u", "pw", "192.0.2.2:1000")
	require.Equal(t, mqttsec.CodeSuccess, code, "another address has its own rate")
	_, code = connect(g, "b1", "u", "pw", "192.0.2.2:1000")
	require.Equal(t, mqttsec.CodeSuccess, code)
	_, code = connect(g, "c0", "u", "pw", "192.0.2.3:1000")
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, code, "the global rate")
	clock.Add(time.Second)
	_, code = connect(g, "a4", "u", "pw", "192.0.2.1:1001")
	require.Equal(t, mqttsec.CodeSuccess, code)
	// IPv6 clients of one /64 share a rate.
	g, _, _, _ = setup(t, Config{ConnectPerAddr: Every(time.Second, 3), Connect: Unlimited()})
	for i := range 3 {
		_, code = connect(g, fmt.Sprint("v6-", i), "u", "pw", fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1))
		require.Equal(t, mqttsec.CodeSuccess, code)
	}
	_, code = connect(g, "v6-x", "u", "pw", "[2001:db8:1:2:ffff::1]:1")
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, code)
	_, code = connect(g, "v6-y", "u", "pw", "[2001:db8:1:3::1]:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
}

func TestLimiterThrottlesFailedLogins(t *testing.T) {
	g, l, clock, _ := setup(t, Config{
		ConnectPerAddr: Unlimited(), Connect: Unlimited(),
		AddrFailures: Throttle{Free: 3, Slow: 10 * time.Second, BanAfter: 5, Forget: time.Minute, Ban: time.Minute, MaxBan: 10 * time.Minute},
	})
	guess := func() mqttsec.ReasonCode {
		_, code := connect(g, "guesser", "alice", "wrong", "192.0.2.66:5000")
		return code
	}
	for range 3 {
		require.Equal(t, mqttsec.CodeBadUsernameOrPassword, guess())
	}
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, guess(), "slowed: one attempt per Slow")
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, guess(), "slowed: refused at once")
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, guess())
	clock.Add(10 * time.Second)
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, guess(), "the 5th failure bans")
	require.Equal(t, mqttsec.CodeBanned, guess())

	// The real user on another address still connects.
	s, code := connect(g, "phone", "alice", "pw", "198.51.100.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	g.Disconnect(s, 0)

	bans := l.Bans().List()
	require.Len(t, bans, 1)
	require.Equal(t, Ban{Kind: BanAddr, Value: "192.0.2.66", Until: clock.Now().Add(time.Minute),
		Reason: "5 failed logins", Auto: true}, bans[0])

	// After the ban, the address is still slowed; one more failure bans
	// it for twice as long.
	clock.Add(time.Minute)
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, guess())
	require.Equal(t, mqttsec.CodeBanned, guess())
	require.Equal(t, clock.Now().Add(2*time.Minute), l.Bans().List()[0].Until)

	// The administrator lifts the ban. The failures are not forgotten: the
	// address is still slowed, and banned again (for the first time: its
	// earlier bans were forgotten with the ban) at its next failure.
	ok, err := l.Bans().Remove(bg, BanAddr, "192.0.2.66")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, guess())
	clock.Add(10 * time.Second)
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, guess())
	require.Equal(t, mqttsec.CodeBanned, guess())
	require.Equal(t, clock.Now().Add(time.Minute), l.Bans().List()[0].Until)
}

func TestLimiterThrottlesUserNames(t *testing.T) {
	g, l, clock, _ := setup(t, Config{
		ConnectPerAddr: Unlimited(), Connect: Unlimited(),
		UserFailures: Throttle{Free: 4, Slow: 10 * time.Second, BanAfter: 6, Forget: time.Minute, Ban: time.Minute, MaxBan: time.Hour},
	})
	// A guess from many addresses, two attempts each: no address is
	// slowed, the user name is.
	for i := range 4 {
		_, code := connect(g, "bot", "alice", "wrong", fmt.Sprintf("203.0.113.%d:1", i))
		require.Equal(t, mqttsec.CodeBadUsernameOrPassword, code)
	}
	_, code := connect(g, "bot", "alice", "wrong", "203.0.113.10:1")
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, code, "one attempt per Slow")
	_, code = connect(g, "bot", "alice", "wrong", "203.0.113.11:1")
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, code)
	_, code = connect(g, "me", "bob", "pw", "203.0.113.11:1")
	require.Equal(t, mqttsec.CodeSuccess, code, "other users are not slowed")
	clock.Add(10 * time.Second)
	_, code = connect(g, "bot", "alice", "wrong", "203.0.113.12:1")
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, code)
	_, code = connect(g, "phone", "alice", "pw", "198.51.100.1:1")
	require.Equal(t, mqttsec.CodeBanned, code, "the user name is banned")
	require.Equal(t, BanSubject, l.Bans().List()[0].Kind)
}

func TestLimiterCaps(t *testing.T) {
	g, _, _, _ := setup(t, Config{ConnectPerAddr: Unlimited(), MaxConnsPerAddr: 2, MaxConnsPerUser: 3})
	a1, code := connect(g, "a1", "u", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	_, code = connect(g, "a2", "u", "pw", "192.0.2.1:2")
	require.Equal(t, mqttsec.CodeSuccess, code)
	_, code = connect(g, "a3", "u", "pw", "192.0.2.1:3")
	require.Equal(t, mqttsec.CodeQuotaExceeded, code, "per address")
	_, code = connect(g, "b1", "u", "pw", "192.0.2.2:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	_, code = connect(g, "b2", "u", "pw", "192.0.2.2:2")
	require.Equal(t, mqttsec.CodeQuotaExceeded, code, "per user")
	_, code = connect(g, "b3", "v", "pw", "192.0.2.2:3")
	require.Equal(t, mqttsec.CodeSuccess, code)
	g.Disconnect(a1, time.Hour) // kept: the connection ended all the same
	_, code = connect(g, "a4", "u", "pw", "192.0.2.1:4")
	require.Equal(t, mqttsec.CodeSuccess, code, "a closed connection frees its place")
	// A CONNECT refused after the caps (client ID held by another
	// identity) gives its places back.
	_, code = connect(g, "b3", "w", "pw", "192.0.2.3:1")
	require.Equal(t, mqttsec.CodeClientIDNotValid, code)
	_, code = connect(g, "c1", "w", "pw", "192.0.2.3:2")
	require.Equal(t, mqttsec.CodeSuccess, code)
	_, code = connect(g, "c2", "w", "pw", "192.0.2.3:3")
	require.Equal(t, mqttsec.CodeSuccess, code)
}

func TestLimiterFlapping(t *testing.T) {
	g, l, clock, _ := setup(t, Config{ConnectPerAddr: Unlimited(),
		Flapping: Flapping{Max: 3, Window: time.Minute, Ban: time.Minute, MaxBan: time.Hour}})
	for range 4 {
		s, code := connect(g, "flappy", "u", "pw", "192.0.2.1:1")
		require.Equal(t, mqttsec.CodeSuccess, code)
		g.Disconnect(s, 0)
		clock.Add(time.Second)
	}
	_, code := connect(g, "flappy", "u", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeBanned, code)
	_, code = connect(g, "steady", "u", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	require.Equal(t, BanClientID, l.Bans().List()[0].Kind)
	clock.Add(time.Minute)
	s, code := connect(g, "flappy", "u", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code, "the ban expired")
	g.Disconnect(s, 0)
}

func TestLimiterPerConnection(t *testing.T) {
	g, l, clock, k := setup(t, Config{
		Messages: Every(100*time.Millisecond, 5), Bytes: Every(time.Millisecond, 100),
		Subscriptions: Every(time.Second, 2), Flood: Unlimited(),
	})
	s, code := connect(g, "c", "u", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	other, _ := connect(g, "d", "u", "pw", "192.0.2.1:2")
	pub := func(s *mqttsec.Session, n int) error {
		return g.Publish(bg, s, &mqttsec.Message{Topic: "t", Payload: make([]byte, n), QoS: 1})
	}
	for range 5 {
		require.NoError(t, pub(s, 10))
	}
	err := pub(s, 10)
	require.ErrorIs(t, err, mqttsec.ErrRateTooHigh)
	require.Equal(t, mqttsec.CodeQuotaExceeded, mqttsec.CodeOf(err).ForPuback())
	require.NoError(t, pub(other, 10), "each connection has its own buckets")

	clock.Add(time.Second)
	require.NoError(t, pub(s, 100))
	require.ErrorIs(t, pub(s, 1), mqttsec.ErrQuotaExceeded, "the byte bucket is empty")
	require.ErrorIs(t, pub(s, 1000), mqttsec.ErrQuotaExceeded, "a message above the byte burst needs a full bucket")
	clock.Add(100 * time.Millisecond)
	require.NoError(t, pub(s, 1000), "a message above the byte burst passes a full bucket")
	clock.Add(500 * time.Millisecond)
	require.ErrorIs(t, pub(s, 1), mqttsec.ErrQuotaExceeded, "and leaves it empty for as long as it needs")
	clock.Add(500 * time.Millisecond)
	require.NoError(t, pub(s, 1))
	_, kicked := k.code("c")
	require.False(t, kicked, "Flood is Unlimited")

	// Subscriptions.
	sub := func(f string) error {
		_, err := g.Subscribe(bg, other, mqttsec.Subscription{Filter: f})
		return err
	}
	require.NoError(t, sub("a"))
	require.NoError(t, sub("b"))
	require.ErrorIs(t, sub("c"), mqttsec.ErrQuotaExceeded)

	// A reload reaches open connections.
	require.NoError(t, l.Reload(Config{Subscriptions: Unlimited()}))
	for i := range 50 {
		require.NoError(t, sub(fmt.Sprint("f", i)))
	}
}

func TestLimiterDisconnectsFlooders(t *testing.T) {
	g, _, clock, k := setup(t, Config{Messages: Every(time.Second, 2), Flood: Every(time.Second, 3)})
	s, code := connect(g, "c", "u", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	pub := func() error {
		return g.Publish(bg, s, &mqttsec.Message{Topic: "t", Payload: []byte("x")})
	}
	require.NoError(t, pub())
	require.NoError(t, pub())
	// Three refusals are tolerated (Flood); the fourth disconnects with
	// 0x96, whatever the QoS.
	for range 3 {
		require.ErrorIs(t, pub(), mqttsec.ErrRateTooHigh)
	}
	_, kicked := k.code("c")
	require.False(t, kicked)
	clock.Add(time.Second) // one message and one refusal more
	require.NoError(t, pub())
	require.ErrorIs(t, pub(), mqttsec.ErrRateTooHigh)
	_, kicked = k.code("c")
	require.False(t, kicked, "a client at twice its rate is not disconnected")
	require.ErrorIs(t, pub(), mqttsec.ErrRateTooHigh)
	code, kicked = k.code("c")
	require.True(t, kicked)
	require.Equal(t, mqttsec.CodeMessageRateTooHigh, code)
	require.Equal(t, mqttsec.CodeMessageRateTooHigh, mqttsec.CodeOf(s.Err()))
	require.Equal(t, mqttsec.CodeMessageRateTooHigh, mqttsec.CodeOf(pub()), "the session is stopped")
}

// TestLimiterAllowsNothingAllocating checks that allowing a PUBLISH
// allocates nothing.
func TestLimiterAllowsNothingAllocating(t *testing.T) {
	g, _, _, _ := setup(t, Config{Messages: Unlimited(), Bytes: Unlimited()})
	s, code := connect(g, "c", "u", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	m := &mqttsec.Message{Topic: "t", Payload: []byte("x"), QoS: 1}
	require.Zero(t, testing.AllocsPerRun(1000, func() {
		if err := g.Publish(bg, s, m); err != nil {
			t.Fatal(err)
		}
	}))
}

// TestLimiterWithoutConnection covers a Guard that asks the Limiter about a
// connection it did not open.
func TestLimiterWithoutConnection(t *testing.T) {
	l, err := New(Config{Messages: Every(time.Hour, 2), Events: quiet})
	require.NoError(t, err)
	c := cl("x", "u", "192.0.2.1:1")
	require.NoError(t, l.Allow(c, mqttsec.LimitPublish, 1))
	require.NoError(t, l.Allow(c, mqttsec.LimitPublish, 1))
	require.ErrorIs(t, l.Allow(c, mqttsec.LimitPublish, 1), mqttsec.ErrRateTooHigh)
	require.NoError(t, l.Allow(c, mqttsec.Limit(200), 1), "unknown limits are allowed")
}

type failingStore struct{}

func (failingStore) AllowN(context.Context, string, Rate, int, time.Time) (Result, error) {
	return Result{}, errors.New("backend down")
}

func TestLimiterStoreErrorDenies(t *testing.T) {
	l, err := New(Config{NewStore: func(string) Store { return failingStore{} }, Events: quiet})
	require.NoError(t, err)
	err = l.Allow(cl("x", "u", "192.0.2.1:1"), mqttsec.LimitConnect, 1)
	require.Equal(t, mqttsec.CodeServerUnavailable, mqttsec.CodeOf(err))
}

func TestLimiterConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Messages: Rate{Interval: time.Second}},
		{Bytes: Rate{Burst: 1}},
		{AddrFailures: Throttle{Free: 5, BanAfter: 5}},
		{UserFailures: Throttle{Ban: time.Hour, MaxBan: time.Minute}},
		{Flapping: Flapping{Ban: time.Hour, MaxBan: time.Minute}},
		{IPv6Prefix: 129},
		{NewStore: func(string) Store { return nil }},
	} {
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrConfig, "%+v", cfg)
	}
	_, err := New(Config{AddrFailures: Throttle{Free: -1}, Flapping: Flapping{Max: -1}})
	require.NoError(t, err, "throttles can be turned off")
}

func TestAdminBanKicks(t *testing.T) {
	g, l, _, k := setup(t, Config{})
	_, code := connect(g, "dev1", "alice", "pw", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	_, code = connect(g, "dev2", "bob", "pw", "192.0.2.200:1")
	require.Equal(t, mqttsec.CodeSuccess, code)
	require.NoError(t, l.Bans().Add(bg, Ban{Kind: BanAddr, Value: "192.0.2.0/25"}))
	c, ok := k.code("dev1")
	require.True(t, ok)
	require.Equal(t, mqttsec.CodeBanned, c)
	require.Equal(t, mqttsec.CodeAdministrativeAction, c.ForDisconnect(), "a v5 DISCONNECT carries 0x98")
	_, ok = k.code("dev2")
	require.False(t, ok)
	require.NoError(t, l.Bans().Add(bg, Ban{Kind: BanSubject, Value: "bob"}))
	_, ok = k.code("dev2")
	require.True(t, ok)
	_, code = connect(g, "dev3", "bob", "pw", "198.51.100.1:1")
	require.Equal(t, mqttsec.CodeBanned, code)
}

func TestZeroValues(t *testing.T) {
	var l Limiter
	c := cl("x", "u", "192.0.2.1:1")
	require.Equal(t, mqttsec.CodeServerUnavailable, mqttsec.CodeOf(l.Allow(c, mqttsec.LimitConnect, 1)))
	var g Gate
	_, err := g.Authenticate(bg, c, mqttsec.Credentials{})
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	_, err = NewGate(nil, GateConfig{}).Authenticate(bg, c, mqttsec.Credentials{})
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	var s MemoryStore
	_, err = s.AllowN(bg, "k", Every(time.Second, 1), 1, time.Now())
	require.Error(t, err)
	var b Bans
	require.NoError(t, b.Check(c))
	require.NoError(t, b.Add(bg, Ban{Kind: BanClientID, Value: "x"}))
	require.ErrorIs(t, b.Check(c), mqttsec.ErrBanned)
	_, ok := b.autoBan(BanSubject, "u", "t", time.Minute, time.Hour)
	require.True(t, ok)
}
