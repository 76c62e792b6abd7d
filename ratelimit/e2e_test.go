package ratelimit

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

// recorder collects security events.
type recorder struct {
	mu sync.Mutex
	ev []mqttsec.Event
}

func (r *recorder) Event(e mqttsec.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, e)
	r.mu.Unlock()
}

// revoked returns the codes of the sessions of clientID the Guard ended.
func (r *recorder) revoked(clientID string) []mqttsec.ReasonCode {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []mqttsec.ReasonCode
	for _, e := range r.ev {
		if e.Kind == mqttsec.EventRevoked && e.ClientID == clientID {
			out = append(out, e.Code)
		}
	}
	return out
}

func (r *recorder) bans() []mqttsec.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []mqttsec.Event
	for _, e := range r.ev {
		if e.Source == "ratelimit" && e.Code == mqttsec.CodeBanned {
			out = append(out, e)
		}
	}
	return out
}

// broker starts a test broker whose Guard has lim and authn, and reports
// its events to the first of events, if any.
func broker(t *testing.T, lim *Limiter, authn mqttsec.Authenticator, events ...mqttsec.EventSink) (*testbroker.Broker, *mqttsec.Guard) {
	t.Helper()
	sink := mqttsec.EventSink(quiet)
	if len(events) > 0 {
		sink = events[0]
	}
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Authorizer: allowAll, Limiter: lim, Events: sink})
	lim.Bans().Attach(g)
	return testbroker.Start(t, g, testbroker.Options{}), g
}

func newLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	if cfg.Events == nil {
		cfg.Events = quiet
	}
	l, err := New(cfg)
	require.NoError(t, err)
	return l
}

func seqPayload(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

// TestE2EFlooderThrottled: a v5 client flooding QoS 1 messages is answered
// 0x97 beyond its rate, and none of its refused messages is delivered,
// while a well-behaved client on the same broker delivers every QoS 1
// message it sends.
func TestE2EFlooderThrottled(t *testing.T) {
	lim := newLimiter(t, Config{Messages: PerSecond(100, 20), Flood: Unlimited()})
	b, _ := broker(t, lim, users)
	sub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "sub", Username: "sub", Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, byte(1), sub.Sub(t, "good", 1))
	require.Equal(t, byte(1), sub.Sub(t, "flood", 1))
	good, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "good", Username: "good", Password: []byte("pw")})
	require.NoError(t, err)
	flood, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "flood", Username: "flood", Password: []byte("pw")})
	require.NoError(t, err)

	const goodN = 60
	var wg sync.WaitGroup
	var accepted sync.Map
	var refused atomic.Int32
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			code, err := flood.Pub(t, "flood", seqPayload(i), 1)
			if err != nil && code == 0 {
				t.Errorf("flood publish %d: %v", i, err)
				return
			}
			switch code {
			case 0:
				accepted.Store(i, true)
			case byte(mqttsec.CodeQuotaExceeded):
				refused.Add(1)
			default:
				t.Errorf("flood publish %d: code 0x%02x", i, code)
				return
			}
		}
	}()
	for i := range goodN {
		code, err := good.Pub(t, "good", seqPayload(i), 1)
		require.NoError(t, err)
		require.Zero(t, code, "message %d of the well-behaved client", i)
		time.Sleep(20 * time.Millisecond) // 50 per second, under its rate
	}
	close(stop)
	wg.Wait()
	require.Positive(t, refused.Load(), "the flooder was throttled")

	got := map[int]bool{}
	deadline := time.After(testbroker.Timeout)
	for len(got) < goodN {
		select {
		case m := <-sub.Messages():
			i := int(binary.BigEndian.Uint32(m.Payload))
			switch m.Topic {
			case "good":
				got[i] = true
			case "flood":
				_, ok := accepted.Load(i)
				require.True(t, ok, "refused flood message %d was delivered", i)
			}
		case <-deadline:
			t.Fatalf("received %d of %d messages of the well-behaved client", len(got), goodN)
		}
	}
}

// TestE2EFlooderDisconnected: a client that keeps flooding is disconnected
// with 0x96, a v5 client at QoS 0 and an MQTT 3.1.1 client alike, and at
// most its rate is delivered.
func TestE2EFlooderDisconnected(t *testing.T) {
	lim := newLimiter(t, Config{Messages: PerSecond(50, 10), Flood: PerSecond(50, 50)})
	rec := &recorder{}
	b, _ := broker(t, lim, users, rec)
	sub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "sub", Username: "sub", Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, byte(0), sub.Sub(t, "flood/#", 0))

	t.Run("v5 QoS 0", func(t *testing.T) {
		c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "f5", Username: "f5", Password: []byte("pw")})
		require.NoError(t, err)
		start := time.Now()
		sent := 0
		for ; sent < 1_000_000; sent++ {
			select {
			case <-c.Closed():
			default:
				_, _ = c.Publish(context.Background(), &paho.Publish{Topic: "flood/v5", Payload: []byte("x")})
				continue
			}
			break
		}
		elapsed := time.Since(start)
		require.Equal(t, []mqttsec.ReasonCode{mqttsec.CodeMessageRateTooHigh}, rec.revoked("f5"))
		// The broker sends a DISCONNECT with 0x96 and drains the flooder's
		// unread messages before it closes the socket: a reset would make
		// the client's system discard the DISCONNECT before paho reads it.
		select {
		case d := <-c.ServerDisconnect():
			require.Equal(t, byte(mqttsec.CodeMessageRateTooHigh), d.ReasonCode)
		case <-time.After(5 * time.Second):
			t.Fatal("the client never read the DISCONNECT")
		}
		delivered := drain(sub, "flood/v5")
		require.Less(t, delivered, sent)
		require.LessOrEqual(t, delivered, 10+int(50*elapsed.Seconds())+5, "at most the rate is delivered")
	})
	t.Run("v3 QoS 0", func(t *testing.T) {
		code, v3, err := testbroker.DialV3(t, b.Addr, "f3", "f3", "pw")
		require.NoError(t, err)
		require.Zero(t, code)
		start := time.Now()
		sent := 0
		for ; sent < 1_000_000; sent++ {
			if err := v3.Publish("flood/v3", []byte("x"), 0); err != nil {
				break // the broker closed the connection
			}
		}
		require.Less(t, sent, 1_000_000, "the v3 flooder was disconnected")
		elapsed := time.Since(start)
		require.Equal(t, []mqttsec.ReasonCode{mqttsec.CodeMessageRateTooHigh}, rec.revoked("f3"))
		delivered := drain(sub, "flood/v3")
		require.LessOrEqual(t, delivered, 10+int(50*elapsed.Seconds())+5, "at most the rate is delivered")
	})
}

// drain counts the messages on topic that arrive until none has for a
// while.
func drain(c *testbroker.Conn, topic string) int {
	n := 0
	for {
		select {
		case m := <-c.Messages():
			if m.Topic == topic {
				n++
			}
		case <-time.After(500 * time.Millisecond):
			return n
		}
	}
}

// TestE2EGuesserBanned: a password guesser is slowed, then banned after the
// configured failures, while the real user connects from another address.
func TestE2EGuesserBanned(t *testing.T) {
	needLoopbacks(t)
	rec := &recorder{}
	lim := newLimiter(t, Config{Events: rec, AddrFailures: Throttle{Free: 3, Slow: 200 * time.Millisecond,
		BanAfter: 6, Forget: time.Minute, Ban: time.Minute, MaxBan: time.Hour}})
	b, _ := broker(t, lim, NewGate(passwords(t, 4, "right password", "alice"), GateConfig{}))

	codes := map[byte]int{}
	deadline := time.Now().Add(testbroker.Timeout)
	for {
		code, _, err := rawConnect(t, b.Addr, "127.0.0.2", "guesser", "alice", "guess")
		require.NoError(t, err)
		codes[code]++
		if code == byte(mqttsec.CodeBanned) {
			break
		}
		require.True(t, time.Now().Before(deadline), "not banned: %v", codes)
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, 6, codes[byte(mqttsec.CodeBadUsernameOrPassword)], "banned after 6 failures: %v", codes)
	require.Positive(t, codes[byte(mqttsec.CodeConnectionRateExceeded)], "slowed before the ban: %v", codes)
	require.Len(t, rec.bans(), 1)

	// The right password from the banned address is refused too.
	code, _, err := rawConnect(t, b.Addr, "127.0.0.2", "guesser", "alice", "right password")
	require.NoError(t, err)
	require.Equal(t, byte(mqttsec.CodeBanned), code)
	// The real user on another address connects.
	code, _, err = rawConnect(t, b.Addr, "127.0.0.3", "phone", "alice", "right password")
	require.NoError(t, err)
	require.Zero(t, code)
	c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "laptop", Username: "alice", Password: []byte("right password")})
	require.NoError(t, err)
	require.Equal(t, byte(0), c.Sub(t, "x", 0))
}

// timed records when each verification of the authenticator it wraps
// started and how long it took.
type timed struct {
	inner mqttsec.Authenticator
	mu    sync.Mutex
	runs  []run
}

type run struct {
	id         string
	start, end time.Time
}

func (a *timed) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	start := time.Now()
	id, err := a.inner.Authenticate(ctx, cl, cred)
	a.mu.Lock()
	a.runs = append(a.runs, run{cl.ID, start, time.Now()})
	a.mu.Unlock()
	return id, err
}

func (a *timed) get() []run {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]run(nil), a.runs...)
}

// TestE2ELoginStormFairness: during 50 wrong-password CONNECTs per second
// from one address, first logins from another address succeed within 2 s:
// no more than one verification of the storm starts between a login's
// CONNECT and its own verification. Only the Gate defends here, with a
// quarter of a CPU (its default on up to 2 CPUs: one slot); the failed-login
// throttle is off.
func TestE2ELoginStormFairness(t *testing.T) {
	needLoopbacks(t)
	lim := newLimiter(t, Config{ConnectPerAddr: Unlimited(), AddrFailures: Throttle{Free: -1}, UserFailures: Throttle{Free: -1}})
	verify := &timed{inner: passwords(t, testCost, "secret", "victim", "u1", "u2", "u3")}
	gate := NewGate(verify, GateConfig{CPU: 0.25}) // the default up to 2 CPUs: one slot
	b, _ := broker(t, lim, gate)

	var wg sync.WaitGroup
	var mu sync.Mutex
	storm := map[byte]int{}
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond) // 50 per second
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, err := rawConnect(t, b.Addr, "127.0.0.2", fmt.Sprint("g", i), "victim", "wrong")
				mu.Lock()
				if err != nil {
					storm[0xff]++
				} else {
					storm[code]++
				}
				mu.Unlock()
			}()
		}
	}()
	// The storm is under way once its verifications run back to back.
	require.Eventually(t, func() bool { return len(verify.get()) >= 3 }, testbroker.Timeout, 10*time.Millisecond)
	type login struct {
		id         string
		sent, done time.Time
	}
	var logins []login
	for _, u := range []string{"u1", "u2", "u3"} {
		sent := time.Now()
		code, _, err := rawConnect(t, b.Addr, "127.0.0.3", u, u, "secret")
		require.NoError(t, err)
		require.Zero(t, code, "first login of %s", u)
		logins = append(logins, login{u, sent, time.Now()})
	}
	close(stop)
	wg.Wait()
	t.Logf("storm answers: %v", storm)
	require.Zero(t, storm[0xff], "every storm CONNECT was answered")
	require.Zero(t, storm[0], "no guess succeeded")
	require.Positive(t, storm[byte(mqttsec.CodeServerBusy)], "the storm was answered 0x89 beyond its share")
	require.Positive(t, storm[byte(mqttsec.CodeBadUsernameOrPassword)], "the storm had its share of verifications")

	runs := verify.get()
	var slowest time.Duration
	for _, r := range runs {
		slowest = max(slowest, r.end.Sub(r.start))
	}
	for _, l := range logins {
		var own run
		for _, r := range runs {
			if r.id == l.id {
				own = r
			}
		}
		require.False(t, own.start.IsZero())
		before := 0
		for _, r := range runs {
			if r.id != l.id && r.start.After(l.sent) && r.start.Before(own.start) {
				before++
			}
		}
		took := l.done.Sub(l.sent)
		t.Logf("first login of %s: %v, %d storm verifications started before its own", l.id, took, before)
		require.LessOrEqual(t, before, 1, "login of %s waited for the storm", l.id)
		// A login waits for the verification running, for the CPU budget
		// that verification spent (its time / CPU), then for its own: that
		// fits in 2 s unless the machine is so loaded that verifications
		// take far longer than their 70 ms.
		if bound := time.Duration(float64(slowest)/gate.cpu) + 2*slowest; bound < 1800*time.Millisecond {
			require.Less(t, took, 2*time.Second, "first login of %s during the storm", l.id)
		} else {
			t.Logf("a verification took %v on this loaded machine: the 2 s bound is not checked", slowest)
		}
	}
}

// TestE2EFlappingBanned: a client that connects and disconnects too often
// is banned, and the ban expires.
func TestE2EFlappingBanned(t *testing.T) {
	clock := newClock()
	lim := newLimiter(t, Config{Clock: clock.Now, ConnectPerAddr: Unlimited(),
		Flapping: Flapping{Max: 3, Window: time.Minute, Ban: time.Minute, MaxBan: time.Hour}})
	b, _ := broker(t, lim, users)
	opts := testbroker.ClientOptions{ClientID: "flappy", Username: "u", Password: []byte("pw")}
	dial := func() (byte, error) {
		c, ca, err := testbroker.Dial(t, b.Addr, opts)
		if err != nil {
			if ca == nil {
				return 0, err
			}
			return ca.ReasonCode, nil
		}
		require.NoError(t, c.Disconnect(&paho.Disconnect{}))
		<-c.Closed()
		return 0, nil
	}
	require.Eventually(t, func() bool {
		code, err := dial()
		require.NoError(t, err)
		return code == byte(mqttsec.CodeBanned)
	}, testbroker.Timeout, 10*time.Millisecond)
	bans := lim.Bans().List()
	require.Len(t, bans, 1)
	require.Equal(t, BanClientID, bans[0].Kind)
	require.Equal(t, "flappy", bans[0].Value)

	c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "steady", Username: "u", Password: []byte("pw")})
	require.NoError(t, err, "another client ID of the same user connects")
	_ = c

	clock.Add(time.Minute)
	code, err := dial()
	require.NoError(t, err)
	require.Zero(t, code, "the ban expired")
}

// TestE2EBanDisconnects: an administrator's ban ends the connections it
// covers: a v5 client gets a DISCONNECT with 0x98 (0x8A is not a DISCONNECT
// code), its will is not published, and a v3 client's socket is closed.
func TestE2EBanDisconnects(t *testing.T) {
	lim := newLimiter(t, Config{})
	b, g := broker(t, lim, users)
	watch, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "watch", Username: "watch", Password: []byte("pw")})
	require.NoError(t, err)
	require.Equal(t, byte(0), watch.Sub(t, "wills/#", 0))
	dev, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "dev1", Username: "alice", Password: []byte("pw"),
		Will: &paho.WillMessage{Topic: "wills/dev1", Payload: []byte("gone")}})
	require.NoError(t, err)
	code, v3, err := testbroker.DialV3(t, b.Addr, "dev2", "bob", "pw")
	require.NoError(t, err)
	require.Zero(t, code)

	require.NoError(t, lim.Bans().Add(context.Background(), Ban{Kind: BanSubject, Value: "alice", Reason: "test"}))
	select {
	case d := <-dev.ServerDisconnect():
		require.Equal(t, byte(mqttsec.CodeAdministrativeAction), d.ReasonCode)
	case <-time.After(testbroker.Timeout):
		t.Fatal("no DISCONNECT after the ban")
	}
	watch.NoMessage(t, 500*time.Millisecond) // the will is not published

	require.NoError(t, lim.Bans().Add(context.Background(), Ban{Kind: BanClientID, Value: "dev2"}))
	_, _, err = v3.ReadPublish(testbroker.Timeout)
	require.Error(t, err, "the v3 connection is closed")

	_, ca, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "dev3", Username: "alice", Password: []byte("pw")})
	require.Error(t, err)
	require.Equal(t, byte(mqttsec.CodeBanned), ca.ReasonCode)
	code, _, err = testbroker.DialV3(t, b.Addr, "dev2", "bob", "pw")
	require.NoError(t, err)
	require.Equal(t, mqttsec.V3NotAuthorized, code)
	require.Eventually(t, func() bool { return len(g.Sessions()) == 1 }, testbroker.Timeout, 10*time.Millisecond)
}
