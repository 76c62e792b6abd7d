package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/mochi"
	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/mqttsec/mqttsec/topic"
)

// remoteURL returns mqtts://localhost:PORT for a broker address, so the
// dev CA's certificate for localhost verifies.
func remoteURL(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "mqtts://localhost:" + port
}

func baseConfig(t testing.TB, remoteAddr string, ca *tlsconf.DevCA, topics ...bridge.Mapping) bridge.Config {
	return bridge.Config{
		Name:         "cloud",
		Remote:       remoteURL(remoteAddr),
		TLS:          tlsconf.Config{CAFile: ca.CAFile()},
		Username:     "bridge",
		PasswordFile: passwordFile(t, "bridge-pw"),
		ClientID:     "site1-bridge",
		ReconnectMin: 50 * time.Millisecond,
		ReconnectMax: 500 * time.Millisecond,
		Topics:       topics,
	}
}

func localOf(b *testbroker.Broker) bridge.Local {
	return bridge.Local{URL: "mqtt://" + b.Addr, Username: "bridge", Password: []byte("bridge-pw")}
}

func start(t testing.TB, cfg bridge.Config, local bridge.Local, ev *events) *bridge.Bridge {
	t.Helper()
	if ev == nil {
		ev = &events{}
	}
	b, err := bridge.Start(context.Background(), cfg, local, bridge.WithEvents(ev))
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestForwardBothWays runs a bridge between two in-process brokers, the
// remote one over TLS with a password: messages flow out and in with the
// prefixes applied, properties copied, the retain flag kept, response
// topics mapped back, and the loop marker added.
func TestForwardBothWays(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	ev := &events{}
	cfg := baseConfig(t, remote.Addr, ca,
		bridge.Mapping{Pattern: "sensors/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "site1/"},
		bridge.Mapping{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, LocalPrefix: "cloud/", RemotePrefix: "site1/"},
		bridge.Mapping{Pattern: "replies/#", Direction: bridge.In, QoS: 1, RemotePrefix: "site1/"},
	)
	b := start(t, cfg, localOf(local), ev)
	waitReady(t, b)

	lsub := dial(t, local.Addr, "lsub", nil)
	require.Equal(t, byte(1), lsub.Sub(t, "cloud/#", 1))
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "site1/#", 1))

	// Out: local sensors/t1 arrives as site1/sensors/t1.
	lpub := dial(t, local.Addr, "lpub", nil)
	expiry := uint32(600)
	pf := byte(1)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := lpub.Publish(ctx, &paho.Publish{Topic: "sensors/t1", QoS: 1, Retain: true, Payload: []byte("21.5"),
		Properties: &paho.PublishProperties{
			ContentType: "text/plain", CorrelationData: []byte("c-1"), ResponseTopic: "replies/d1",
			MessageExpiry: &expiry, PayloadFormat: &pf,
			User: paho.UserProperties{{Key: "unit", Value: "C"}},
		}})
	require.NoError(t, err)
	m := rsub.ExpectMessage(t, "site1/sensors/t1", wait)
	require.Equal(t, "21.5", string(m.Payload))
	require.Equal(t, byte(1), m.QoS)
	require.Equal(t, "text/plain", m.Properties.ContentType)
	require.Equal(t, "c-1", string(m.Properties.CorrelationData))
	require.Equal(t, "site1/replies/d1", m.Properties.ResponseTopic, "mapped through the in mapping of replies/#")
	require.NotNil(t, m.Properties.MessageExpiry)
	require.LessOrEqual(t, *m.Properties.MessageExpiry, expiry)
	require.Greater(t, *m.Properties.MessageExpiry, expiry-60)
	require.Equal(t, &pf, m.Properties.PayloadFormat)
	require.Equal(t, "C", m.Properties.User.Get("unit"))
	require.Equal(t, cfg.LoopIDOrDefault(), m.Properties.User.Get(bridge.LoopKey))

	// The retain flag was forwarded: a late subscriber gets it retained.
	late := dial(t, remote.Addr, "late", clientTLS(t, ca))
	require.Equal(t, byte(1), late.Sub(t, "site1/sensors/t1", 1))
	m = late.ExpectMessage(t, "site1/sensors/t1", wait)
	require.True(t, m.Retain)

	// In: remote site1/cmd/reboot arrives as cloud/cmd/reboot.
	rpub := dial(t, remote.Addr, "rpub", clientTLS(t, ca))
	code, err := rpub.Pub(t, "site1/cmd/reboot", []byte("now"), 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	m = lsub.ExpectMessage(t, "cloud/cmd/reboot", wait)
	require.Equal(t, "now", string(m.Payload))

	// Topics outside the mappings do not cross.
	_, err = lpub.Pub(t, "other/x", []byte("no"), 1)
	require.NoError(t, err)
	_, err = rpub.Pub(t, "site1/elsewhere", []byte("no"), 1)
	require.NoError(t, err)
	_, err = lpub.Pub(t, "sensors/end", []byte("end"), 1)
	require.NoError(t, err)
	rsub.ExpectMessage(t, "site1/sensors/end", wait)
	require.Eventually(t, func() bool { return b.Stats().Out.Forwarded == 2 && b.Stats().In.Forwarded == 1 }, wait, 10*time.Millisecond)

	s := b.Stats()
	require.True(t, s.Local.Connected)
	require.True(t, s.Remote.Connected)
	require.Zero(t, s.Out.Loops+s.In.Loops+s.Out.Refused+s.In.Refused+s.Out.Dropped+s.In.Dropped)
	for _, side := range []string{"local", "remote"} {
		_, ok := ev.find(func(e mqttsec.Event) bool {
			return e.Kind == mqttsec.EventConnected && e.Source == "bridge/cloud/"+side
		})
		require.True(t, ok, "connected event for %s", side)
	}
}

// TestNoLoopBothHash maps "#" both ways: each message crosses once and
// never comes back.
func TestNoLoopBothHash(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	b := start(t, baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "#", Direction: bridge.Both, QoS: 1}), localOf(local), nil)
	waitReady(t, b)

	lsub := dial(t, local.Addr, "lsub", nil)
	require.Equal(t, byte(1), lsub.Sub(t, "#", 1))
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "#", 1))
	lpub := dial(t, local.Addr, "lpub", nil)
	rpub := dial(t, remote.Addr, "rpub", clientTLS(t, ca))

	const n = 10
	for i := range n {
		_, err := lpub.Pub(t, fmt.Sprintf("l/%d", i), []byte("x"), 1)
		require.NoError(t, err)
		_, err = rpub.Pub(t, fmt.Sprintf("r/%d", i), []byte("x"), 1)
		require.NoError(t, err)
	}
	// Sentinels, one each way, after everything else: the bridge keeps
	// order, so anything looping would be forwarded before them.
	_, err := lpub.Pub(t, "end/l", nil, 1)
	require.NoError(t, err)
	_, err = rpub.Pub(t, "end/r", nil, 1)
	require.NoError(t, err)

	count := func(c *testbroker.Conn, sentinels int) map[string]int {
		got := map[string]int{}
		seen := 0
		deadline := time.After(wait)
		for seen < sentinels {
			select {
			case m := <-c.Messages():
				got[m.Topic]++
				if strings.HasPrefix(m.Topic, "end/") {
					seen++
				}
			case <-deadline:
				t.Fatalf("sentinels missing; got %v", got)
			}
		}
		return got
	}
	lgot, rgot := count(lsub, 2), count(rsub, 2)
	for _, got := range []map[string]int{lgot, rgot} {
		require.Len(t, got, 2*n+2)
		for topic, k := range got {
			require.Equal(t, 1, k, "topic %q seen %d times", topic, k)
		}
	}
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.Out.Forwarded == n+1 && s.In.Forwarded == n+1
	}, wait, 10*time.Millisecond, "%+v", b.Stats())
	lsub.NoMessage(t, 300*time.Millisecond)
	rsub.NoMessage(t, 100*time.Millisecond)
}

// TestLoopMarkerBetweenTwoBridges connects the same two brokers by two
// bridges, one out and one in on the same topics. No-local cannot help
// (they are different clients); the loop marker stops the second lap.
func TestLoopMarkerBetweenTwoBridges(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	outCfg := baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "x/#", Direction: bridge.Out, QoS: 1})
	inCfg := baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "x/#", Direction: bridge.In, QoS: 1})
	inCfg.Name, inCfg.ClientID = "back", "site1-back"
	require.NoError(t, bridge.ValidateAll([]bridge.Config{outCfg, inCfg}))
	out := start(t, outCfg, localOf(local), nil)
	back := start(t, inCfg, localOf(local), nil)
	waitReady(t, out)
	waitReady(t, back)

	lsub := dial(t, local.Addr, "lsub", nil)
	require.Equal(t, byte(1), lsub.Sub(t, "x/#", 1))
	lpub := dial(t, local.Addr, "lpub", nil)
	_, err := lpub.Pub(t, "x/1", []byte("hello"), 1)
	require.NoError(t, err)

	// The original, then the copy that came back through the second bridge.
	lsub.ExpectMessage(t, "x/1", wait)
	m := lsub.ExpectMessage(t, "x/1", wait)
	require.Equal(t, []string{outCfg.LoopIDOrDefault(), inCfg.LoopIDOrDefault()}, loopPath(m))
	require.Eventually(t, func() bool {
		return out.Stats().Out.Loops == 1 && out.Stats().Out.Forwarded == 1 && back.Stats().In.Forwarded == 1
	}, wait, 10*time.Millisecond)
	lsub.NoMessage(t, 300*time.Millisecond)
}

// assertEventually polls cond until it holds or d passes.
func assertEventually(cond func() bool, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func loopPath(m *paho.Publish) []string {
	var ids []string
	if m.Properties != nil {
		for _, u := range m.Properties.User {
			if u.Key == bridge.LoopKey {
				ids = append(ids, u.Value)
			}
		}
	}
	return ids
}

// TestInvalidConfigRefusedBeforeConnecting: Start refuses an invalid or
// insecure configuration without opening any connection.
func TestInvalidConfigRefusedBeforeConnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()
	addr := ln.Addr().String()
	ca := devCA(t)
	good := baseConfig(t, addr, ca, bridge.Mapping{Pattern: "a/#", Direction: bridge.Out})
	cases := []struct {
		name   string
		cfg    func() bridge.Config
		local  bridge.Local
		target error
	}{
		{"wildcard prefix", func() bridge.Config {
			c := good
			c.Topics = []bridge.Mapping{{Pattern: "a/#", Direction: bridge.Out, RemotePrefix: "x/+/"}}
			return c
		}, bridge.Local{URL: "mqtt://" + addr}, bridge.ErrInvalid},
		{"plaintext remote", func() bridge.Config {
			c := good
			c.Remote, c.TLS = "mqtt://"+addr, tlsconf.Config{}
			return c
		}, bridge.Local{URL: "mqtt://" + addr}, bridge.ErrInsecure},
		{"plaintext local to another host", func() bridge.Config { return good }, bridge.Local{URL: "mqtt://192.0.2.1:1883"}, bridge.ErrInsecure},
		{"missing CA file", func() bridge.Config {
			c := good
			c.TLS.CAFile = "/nonexistent/ca.pem"
			return c
		}, bridge.Local{URL: "mqtt://" + addr}, bridge.ErrInvalid},
		{"# both ways without loop prevention", func() bridge.Config {
			c := good
			c.DisableLoopPrevention = true
			c.Topics = []bridge.Mapping{{Pattern: "#", Direction: bridge.Both}}
			return c
		}, bridge.Local{URL: "mqtt://" + addr}, bridge.ErrLoop},
	}
	before := runtime.NumGoroutine()
	for _, tc := range cases {
		b, err := bridge.Start(context.Background(), tc.cfg(), tc.local)
		require.ErrorIs(t, err, tc.target, tc.name)
		require.Nil(t, b)
	}
	select {
	case <-accepted:
		t.Fatal("a refused configuration connected")
	case <-time.After(200 * time.Millisecond):
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), before+1, "a refused Start left goroutines")
}

// TestRefusedMessageIsNotRetriedForever: a message the destination refuses
// (0x87) is counted and acknowledged; later messages still flow.
func TestRefusedMessageIsNotRetriedForever(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guardDenying(users, ""), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	ev := &events{}
	b := start(t, baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "#", Direction: bridge.Out, QoS: 1}), localOf(local), ev)
	waitReady(t, b)
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "ok/#", 1))
	lpub := dial(t, local.Addr, "lpub", nil)
	_, err := lpub.Pub(t, "secret/x", []byte("no"), 1)
	require.NoError(t, err)
	_, err = lpub.Pub(t, "ok/1", []byte("yes"), 1)
	require.NoError(t, err)
	rsub.ExpectMessage(t, "ok/1", wait)
	require.Eventually(t, func() bool { return b.Stats().Out.Refused == 1 }, wait, 10*time.Millisecond)
	e, ok := ev.find(func(e mqttsec.Event) bool { return e.Kind == mqttsec.EventPublishDenied })
	require.True(t, ok)
	require.Equal(t, "secret/x", e.Topic)
	require.Equal(t, mqttsec.ReasonCode(0x87), e.Code)
	require.Eventually(t, func() bool { return b.Stats().Out.Held == 0 }, wait, 10*time.Millisecond)
}

// TestAtLeastOnceAcrossNetworkFailures cuts the network between the bridge
// and the remote broker several times while QoS 1 messages are published
// locally: every message arrives; duplicates are counted.
func TestAtLeastOnceAcrossNetworkFailures(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	px := startProxy(t, remote.Addr)
	cfg := baseConfig(t, px.addr(), ca, bridge.Mapping{Pattern: "seq/#", Direction: bridge.Out, QoS: 1})
	cfg.MaxInflight = 8
	b := start(t, cfg, localOf(local), nil)
	waitReady(t, b)
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "seq/#", 1))
	lpub := dial(t, local.Addr, "lpub", nil)

	const n = 300
	got := map[int]int{}
	var mu sync.Mutex
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		deadline := time.After(3 * wait)
		for {
			mu.Lock()
			complete := len(got) == n
			mu.Unlock()
			if complete {
				return
			}
			select {
			case m := <-rsub.Messages():
				i, err := strconv.Atoi(string(m.Payload))
				if err == nil {
					mu.Lock()
					got[i]++
					mu.Unlock()
				}
			case <-deadline:
				return
			}
		}
	}()
	for i := range n {
		switch i {
		case 60, 160:
			px.setDown(true)
			require.Eventually(t, func() bool { return !b.Stats().Remote.Connected }, wait, time.Millisecond)
		case 110, 230:
			px.setDown(false)
			require.Eventually(t, func() bool { return b.Stats().Remote.Connected }, wait, time.Millisecond)
		}
		code, err := lpub.Pub(t, "seq/x", []byte(strconv.Itoa(i)), 1)
		require.NoError(t, err)
		require.Equal(t, byte(0), code)
	}
	<-recvDone
	mu.Lock()
	defer mu.Unlock()
	missing := []int{}
	dups := 0
	for i := range n {
		if got[i] == 0 {
			missing = append(missing, i)
		}
		dups += max(got[i]-1, 0)
	}
	require.Empty(t, missing, "lost messages")
	require.Eventually(t, func() bool { return b.Stats().Out.Held == 0 }, wait, 10*time.Millisecond)
	s := b.Stats()
	t.Logf("%d messages, %d duplicates received; bridge: %+v", n, dups, s.Out)
	require.LessOrEqual(t, uint64(dups), s.Out.Retried+s.Out.Redelivered, "every duplicate is accounted for")
	require.GreaterOrEqual(t, s.Remote.Connections, uint64(3))
}

// TestOrderKept publishes a sequence through a bridge with several messages
// in flight: it arrives in order.
func TestOrderKept(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	cfg := baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "seq", Direction: bridge.Out, QoS: 1})
	cfg.MaxInflight = 16
	b := start(t, cfg, localOf(local), nil)
	waitReady(t, b)
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "seq", 1))
	lpub := dial(t, local.Addr, "lpub", nil)
	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		// Publish asynchronously so that many messages are queued at once.
		wg.Add(1)
		_, err := lpub.PublishWithOptions(ctx, &paho.Publish{Topic: "seq", QoS: 1, Payload: []byte(strconv.Itoa(i))},
			paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
		require.NoError(t, err)
		wg.Done()
	}
	wg.Wait()
	for i := range n {
		m := rsub.ExpectMessage(t, "seq", wait)
		require.Equal(t, strconv.Itoa(i), string(m.Payload))
	}
}

// TestQoS0Overflow fills the buffer while the remote is unreachable: QoS 0
// messages beyond it are dropped and counted; memory stays bounded.
func TestQoS0Overflow(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	px := startProxy(t, remote.Addr)
	px.setDown(true)
	cfg := baseConfig(t, px.addr(), ca, bridge.Mapping{Pattern: "q/#", Direction: bridge.Out, QoS: 0})
	cfg.Buffer = 5
	b := start(t, cfg, localOf(local), nil)
	require.Eventually(t, func() bool { return b.Stats().Local.Subscribed }, wait, 10*time.Millisecond)
	lpub := dial(t, local.Addr, "lpub", nil)
	for i := range 30 {
		_, err := lpub.Pub(t, "q/x", []byte(strconv.Itoa(i)), 0)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return b.Stats().Out.Dropped == 25 }, wait, 10*time.Millisecond)
	require.Equal(t, 5, b.Stats().Out.Held)

	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(0), rsub.Sub(t, "q/#", 0))
	px.setDown(false)
	for i := range 5 {
		m := rsub.ExpectMessage(t, "q/x", wait)
		require.Equal(t, strconv.Itoa(i), string(m.Payload), "the oldest are kept")
	}
}

// TestStatusTopic: retained "1" and "0" on the status topics follow the
// remote connection; Close leaves "0".
func TestStatusTopic(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	px := startProxy(t, remote.Addr)
	cfg := baseConfig(t, px.addr(), ca, bridge.Mapping{Pattern: "a", Direction: bridge.Out})
	cfg.StatusTopic = "bridges/cloud/state"
	cfg.RemoteStatusTopic = "bridges/site1/state"
	ev := &events{}
	b := start(t, cfg, localOf(local), ev)
	lsub := dial(t, local.Addr, "lsub", nil)
	require.Equal(t, byte(1), lsub.Sub(t, "bridges/#", 1))
	expect := func(c *testbroker.Conn, topic, payload string) {
		t.Helper()
		deadline := time.After(wait)
		for {
			select {
			case m := <-c.Messages():
				if m.Topic == topic && string(m.Payload) == payload {
					return
				}
			case <-deadline:
				t.Fatalf("no %q on %q", payload, topic)
			}
		}
	}
	expect(lsub, "bridges/cloud/state", "1")
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "bridges/#", 1))
	expect(rsub, "bridges/site1/state", "1") // retained

	px.setDown(true)
	expect(lsub, "bridges/cloud/state", "0")
	expect(rsub, "bridges/site1/state", "0") // the will
	e, ok := ev.find(func(e mqttsec.Event) bool {
		return e.Kind == mqttsec.EventDisconnected && e.Source == "bridge/cloud/remote"
	})
	require.True(t, ok)
	require.Error(t, e.Err)
	px.setDown(false)
	expect(lsub, "bridges/cloud/state", "1")
	expect(rsub, "bridges/site1/state", "1")

	require.NoError(t, b.Close())
	expect(lsub, "bridges/cloud/state", "0")
	expect(rsub, "bridges/site1/state", "0")
}

// TestCloseStopsEverything: Close and the end of the Start context release
// every goroutine the bridge started.
func TestCloseStopsEverything(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	cfg := baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "#", Direction: bridge.Both, QoS: 1})
	time.Sleep(50 * time.Millisecond) // let the brokers' own goroutines settle for the baseline
	before := runtime.NumGoroutine()

	b, err := bridge.Start(context.Background(), cfg, localOf(local), bridge.WithEvents(&events{}))
	require.NoError(t, err)
	waitReady(t, b)
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "idempotent")
	<-b.Done()

	ctx, cancel := context.WithCancel(context.Background())
	b, err = bridge.Start(ctx, cfg, localOf(local), bridge.WithEvents(&events{}))
	require.NoError(t, err)
	waitReady(t, b)
	cancel()
	select {
	case <-b.Done():
	case <-time.After(wait):
		t.Fatal("the bridge did not stop with its context")
	}
	// The brokers end their sides of the connections asynchronously.
	if !assertEventually(func() bool { return runtime.NumGoroutine() <= before }, wait) {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}

// TestOversizedPacketFromBroker: a broker that announces a packet larger
// than the bridge's Maximum Packet Size is disconnected before the bridge
// allocates it. A conforming broker never sends one, so the broker here is
// a raw socket.
func TestOversizedPacketFromBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(wait))
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil { // CONNECT
					return
				}
				_, _ = c.Write([]byte{0x20, 3, 0, 0, 0})             // CONNACK success, no properties
				_, _ = c.Write([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}) // PUBLISH of 256 MB
				_, _ = c.Read(buf)
			}()
		}
	}()
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	ev := &events{}
	cfg := bridge.Config{Name: "evil", Remote: "mqtt://" + ln.Addr().String(), InsecurePlaintext: true, ClientID: "b1",
		ReconnectMin: 50 * time.Millisecond, Topics: []bridge.Mapping{{Pattern: "a", Direction: bridge.In}}}
	start(t, cfg, localOf(local), ev)
	require.Eventually(t, func() bool {
		_, ok := ev.find(func(e mqttsec.Event) bool {
			return e.Kind == mqttsec.EventDisconnected && e.Source == "bridge/evil/remote" && e.Err != nil &&
				strings.Contains(e.Err.Error(), "maximum packet size")
		})
		return ok
	}, wait, 10*time.Millisecond)
}

// TestLocalPipe connects the bridge to an in-process broker through a Pipe
// listener (no network port), as "mqttsec serve" does: the bridge is an
// ordinary client of the broker, authenticated by its Guard.
func TestLocalPipe(t *testing.T) {
	ca := devCA(t)
	remote := startTLSBroker(t, ca)
	cfg := baseConfig(t, remote.Addr, ca,
		bridge.Mapping{Pattern: "up/#", Direction: bridge.Out, QoS: 1},
		bridge.Mapping{Pattern: "down/#", Direction: bridge.In, QoS: 1})
	// The local broker gives the bridge exactly its LocalGrants.
	grants, err := cfg.LocalGrants()
	require.NoError(t, err)
	allowed := func(a mqttsec.Access, t string) bool {
		for _, g := range grants {
			switch {
			case a == mqttsec.Subscribe && g.Access&mqttsec.Subscribe != 0 && topic.Covers(g.Topic, t),
				a == mqttsec.Receive && g.Access&mqttsec.Subscribe != 0 && topic.Match(g.Topic, t),
				a == mqttsec.Publish && g.Access&mqttsec.Publish != 0 && topic.Match(g.Topic, t):
				return true
			}
		}
		return false
	}
	var mu sync.Mutex
	var listenersSeen []string
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			mu.Lock()
			listenersSeen = append(listenersSeen, cl.Listener)
			mu.Unlock()
			if cl.Username == "bridge" && string(cred.Password) == "bridge-pw" {
				return &mqttsec.Identity{Subject: "bridge", Method: mqttsec.MethodPassword}, nil
			}
			return nil, mqttsec.ErrBadCredentials
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(_ context.Context, cl *mqttsec.Client, a mqttsec.Access, t string) error {
			if cl.Identity != nil && cl.Identity.Subject == "bridge" && allowed(a, t) {
				return nil
			}
			return mqttsec.ErrNotAuthorized
		}),
		Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	local := testbroker.Start(t, g, testbroker.Options{})
	pipe := bridge.NewPipe("bridges")
	require.NoError(t, local.Server.AddListener(mochi.Harden(listeners.NewNet("bridges", pipe), 0)))
	local.Server.Listeners.Serve("bridges", local.Server.EstablishConnection)

	b, err := bridge.Start(context.Background(), cfg,
		bridge.Local{Dial: pipe.DialContext, Username: "bridge", Password: []byte("bridge-pw")},
		bridge.WithEvents(&events{}))
	require.NoError(t, err)
	waitReady(t, b)

	down := make(chan string, 1)
	require.NoError(t, local.Server.Subscribe("down/#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		select {
		case down <- pk.TopicName:
		default:
		}
	}))
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "up/#", 1))
	require.NoError(t, local.Server.Publish("up/x", []byte("1"), false, 1))
	rsub.ExpectMessage(t, "up/x", wait)
	rpub := dial(t, remote.Addr, "rpub", clientTLS(t, ca))
	_, err = rpub.Pub(t, "down/y", []byte("2"), 1)
	require.NoError(t, err)
	select {
	case topic := <-down:
		require.Equal(t, "down/y", topic)
	case <-time.After(wait):
		t.Fatal("nothing came down")
	}
	mu.Lock()
	require.Contains(t, listenersSeen, "bridges")
	mu.Unlock()

	// Stop the bridge and let the broker finish its side of the pipe
	// before the broker itself is closed.
	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return atomic.LoadInt64(&local.Server.Info.ClientsConnected) == 0 }, wait, 10*time.Millisecond)
	require.NoError(t, pipe.Close())
}

// TestRemoteClientCertificateAndPinning: a remote that requires client
// certificates accepts the bridge's; a pin that matches no key of the
// remote's chain keeps the bridge out, and says why.
func TestRemoteClientCertificateAndPinning(t *testing.T) {
	ca := devCA(t)
	_, err := ca.IssueClient("site1-bridge")
	require.NoError(t, err)
	stc := ca.ServerConfig()
	stc.ClientAuth = tlsconf.ClientAuthRequire
	sc, err := stc.Server()
	require.NoError(t, err)
	remote := testbroker.Start(t, guard(users), testbroker.Options{TLS: sc})
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	cert, key := ca.ClientFiles("site1-bridge")

	cfg := baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "a", Direction: bridge.Out})
	cfg.TLS.CertFile, cfg.TLS.KeyFile = cert, key
	cfg.TLS.PinnedSPKI = []string{tlsconf.SPKIPin(ca.Certificate().RawSubjectPublicKeyInfo)}
	cfg.DisableSystemRoots = true
	b := start(t, cfg, localOf(local), nil)
	waitReady(t, b)
	require.NoError(t, b.Close())

	other := devCA(t)
	cfg.ClientID = "site1-other"
	cfg.TLS.PinnedSPKI = []string{tlsconf.SPKIPin(other.Certificate().RawSubjectPublicKeyInfo)}
	ev := &events{}
	b = start(t, cfg, localOf(local), ev)
	require.Eventually(t, func() bool {
		_, ok := ev.find(func(e mqttsec.Event) bool {
			return e.Kind == mqttsec.EventError && e.Source == "bridge/cloud/remote" && errors.Is(e.Err, tlsconf.ErrPinMismatch)
		})
		return ok
	}, wait, 10*time.Millisecond)
	require.False(t, b.Stats().Remote.Connected)
}

// TestSourceReconnectRedelivers: messages held while the remote is down
// are not acknowledged to the local broker; when the local connection
// drops too, the broker resumes the bridge's session and redelivers them,
// the bridge drops its older copies, and each arrives once the remote is
// back.
func TestSourceReconnectRedelivers(t *testing.T) {
	ca := devCA(t)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	remote := startTLSBroker(t, ca)
	pxL := startProxy(t, local.Addr)
	pxR := startProxy(t, remote.Addr)
	lb := localOf(local)
	lb.URL = "mqtt://" + pxL.addr()
	b := start(t, baseConfig(t, pxR.addr(), ca, bridge.Mapping{Pattern: "held/#", Direction: bridge.Out, QoS: 1}), lb, nil)
	waitReady(t, b)
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "held/#", 1))

	pxR.setDown(true)
	require.Eventually(t, func() bool { return !b.Stats().Remote.Connected }, wait, time.Millisecond)
	lpub := dial(t, local.Addr, "lpub", nil)
	const n = 10
	for i := range n {
		_, err := lpub.Pub(t, "held/x", []byte(strconv.Itoa(i)), 1)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return b.Stats().Out.Held == n }, wait, time.Millisecond)

	pxL.setDown(true)
	require.Eventually(t, func() bool { return !b.Stats().Local.Connected }, wait, time.Millisecond)
	pxL.setDown(false)
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.Local.Connected && s.Out.Redelivered >= n && s.Out.Held == n
	}, wait, time.Millisecond, "%+v", b.Stats())

	pxR.setDown(false)
	got := map[string]int{}
	deadline := time.After(wait)
	for len(got) < n {
		select {
		case m := <-rsub.Messages():
			got[string(m.Payload)]++
		case <-deadline:
			t.Fatalf("received %v", got)
		}
	}
	require.Eventually(t, func() bool { return b.Stats().Out.Held == 0 }, wait, time.Millisecond)
	rsub.NoMessage(t, 200*time.Millisecond)
	for k, c := range got {
		require.Equal(t, 1, c, "message %s", k)
	}
}

// TestRemoteWebSocket bridges to a remote broker over MQTT on WebSocket
// with TLS (wss://).
func TestRemoteWebSocket(t *testing.T) {
	ca := devCA(t)
	stc := ca.ServerConfig()
	// A WebSocket listener is a web server: its ALPN is HTTP/1.1 (with
	// tlsconf's default, "mqtt", WebSocket clients get "no application
	// protocol").
	stc.ALPN = []string{"http/1.1"}
	sc, err := stc.Server()
	require.NoError(t, err)
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 1 << 20
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler), Capabilities: caps})
	_, err = mochi.NewHook(guard(users), s)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	require.NoError(t, s.AddListener(mochi.Harden(listeners.NewWebsocket(listeners.Config{Type: listeners.TypeWS, ID: "wss", Address: addr, TLSConfig: sc}), 0)))
	require.NoError(t, s.Serve())
	got := make(chan string, 1)
	require.NoError(t, s.Subscribe("site1/#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		select {
		case got <- pk.TopicName + " " + string(pk.Payload):
		default:
		}
	}))

	local := testbroker.Start(t, guard(users), testbroker.Options{})
	cfg := baseConfig(t, addr, ca, bridge.Mapping{Pattern: "up/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "site1/"})
	_, port, _ := net.SplitHostPort(addr)
	cfg.Remote = "wss://localhost:" + port + "/"
	ev := &events{}
	b, err := bridge.Start(context.Background(), cfg, localOf(local), bridge.WithEvents(ev))
	require.NoError(t, err)
	if !assertEventually(func() bool { return b.Stats().Remote.Connected }, wait) {
		ev.mu.Lock()
		t.Fatalf("not connected: %v", ev.all)
	}
	waitReady(t, b)
	lpub := dial(t, local.Addr, "lpub", nil)
	_, err = lpub.Pub(t, "up/a", []byte("over websocket"), 1)
	require.NoError(t, err)
	select {
	case m := <-got:
		require.Equal(t, "site1/up/a over websocket", m)
	case <-time.After(wait):
		t.Fatal("nothing arrived over WebSocket")
	}

	require.NoError(t, b.Close())
	require.Eventually(t, func() bool { return atomic.LoadInt64(&s.Info.ClientsConnected) == 0 }, wait, 10*time.Millisecond)
	require.NoError(t, s.Close())
}

// TestLocalTLS reaches the local broker over TLS too.
func TestLocalTLS(t *testing.T) {
	ca := devCA(t)
	local := startTLSBroker(t, ca)
	remote := startTLSBroker(t, ca)
	lb := localOf(local)
	_, port, _ := net.SplitHostPort(local.Addr)
	lb.URL, lb.TLS = "mqtts://localhost:"+port, clientTLS(t, ca)
	b := start(t, baseConfig(t, remote.Addr, ca, bridge.Mapping{Pattern: "a/#", Direction: bridge.Out, QoS: 1}), lb, nil)
	waitReady(t, b)
	rsub := dial(t, remote.Addr, "rsub", clientTLS(t, ca))
	require.Equal(t, byte(1), rsub.Sub(t, "a/#", 1))
	lpub := dial(t, local.Addr, "lpub", clientTLS(t, ca))
	_, err := lpub.Pub(t, "a/b", []byte("x"), 1)
	require.NoError(t, err)
	rsub.ExpectMessage(t, "a/b", wait)
}
