package mochi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/mochi"
)

// newServer returns a mochi server with bounded packets and discarded logs.
func newServer() *mqtt.Server {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 1 << 20
	return mqtt.New(&mqtt.Options{Logger: discard(), Capabilities: caps})
}

// recorder collects security events.
type recorder struct {
	mu     sync.Mutex
	events []mqttsec.Event
}

func (r *recorder) Event(e mqttsec.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) count(kind mqttsec.EventKind, clientID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == kind && e.ClientID == clientID {
			n++
		}
	}
	return n
}

// denials maps a user name to the error its CONNECT is denied with.
var denials = map[string]error{
	"badpass":  fmt.Errorf("%w: wrong password", mqttsec.ErrBadCredentials),
	"badid":    fmt.Errorf("%w: not allowed", mqttsec.ErrClientIDInvalid),
	"noauth":   fmt.Errorf("%w: disabled", mqttsec.ErrNotAuthorized),
	"banned":   fmt.Errorf("%w: go away", mqttsec.ErrBanned),
	"tooquick": fmt.Errorf("%w: slow down", mqttsec.ErrConnectionRate),
	"quota":    fmt.Errorf("%w: too many", mqttsec.ErrQuotaExceeded),
	"plain":    fmt.Errorf("database down"), // the Guard makes it 0x86
}

// policy is the test policy:
//   - "ro/..." may be subscribed to and received, not published;
//   - "hidden/..." may be published and subscribed to, not received;
//   - "secret/..." nothing;
//   - "mochi/..." the authorizer returns a wrapped mochi packets.Code
//     (which would panic mochi if it reached OnPublish's return value);
//   - anything else is allowed.
func policy(_ context.Context, _ *mqttsec.Client, a mqttsec.Access, topic string) error {
	switch {
	case strings.HasPrefix(topic, "ro/") && a == mqttsec.Publish:
		return fmt.Errorf("%w: read only", mqttsec.ErrNotAuthorized)
	case strings.HasPrefix(topic, "hidden/") && a == mqttsec.Receive:
		return mqttsec.ErrNotAuthorized
	case strings.HasPrefix(topic, "secret/"):
		return mqttsec.ErrNotAuthorized
	case strings.HasPrefix(topic, "mochi/") && a == mqttsec.Publish:
		return fmt.Errorf("wrapped: %w", packets.ErrNotAuthorized)
	}
	return nil
}

type fixture struct {
	b       *testbroker.Broker
	g       *mqttsec.Guard
	events  *recorder
	mu      sync.Mutex
	clients []mqttsec.Client
}

func (f *fixture) seen() []mqttsec.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]mqttsec.Client(nil), f.clients...)
}

func start(t *testing.T, o testbroker.Options, edit ...func(*mqttsec.Config)) *fixture {
	t.Helper()
	f := &fixture{events: &recorder{}}
	cfg := mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			f.mu.Lock()
			f.clients = append(f.clients, *cl)
			f.mu.Unlock()
			if err, ok := denials[cl.Username]; ok {
				return nil, err
			}
			if string(cred.Password) != "pw" {
				return nil, mqttsec.ErrBadCredentials
			}
			id := &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}
			if strings.HasPrefix(cl.Username, "short") {
				id.Expiry = time.Now().Add(time.Second)
			}
			return id, nil
		}),
		Authorizer: mqttsec.AuthorizerFunc(policy),
		Events:     f.events,
	}
	for _, e := range edit {
		e(&cfg)
	}
	f.g = mqttsec.New(cfg)
	f.b = testbroker.Start(t, f.g, o)
	return f
}

func (f *fixture) dial(t *testing.T, id, user string) *testbroker.Conn {
	t.Helper()
	c, _, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: id, Username: user, Password: []byte("pw")})
	require.NoError(t, err)
	return c
}

func TestConnectDeniedV5(t *testing.T) {
	f := start(t, testbroker.Options{})
	for user, want := range map[string]byte{
		"badpass": 0x86, "badid": 0x85, "noauth": 0x87, "banned": 0x8A,
		"tooquick": 0x9F, "quota": 0x97, "plain": 0x86,
	} {
		t.Run(user, func(t *testing.T) {
			c, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "c-" + user, Username: user, Password: []byte("pw")})
			require.Error(t, err)
			require.Nil(t, c)
			require.NotNil(t, ca)
			require.Equal(t, want, ca.ReasonCode)
		})
	}
	// The reason string names the code, never the error's detail.
	_, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "c", Username: "badpass", Password: []byte("pw")})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "wrong password")
	require.NotNil(t, ca)
}

func TestConnectDeniedV3(t *testing.T) {
	f := start(t, testbroker.Options{})
	for user, want := range map[string]byte{
		"badpass": 0x04, "badid": 0x02, "noauth": 0x05, "banned": 0x05,
		"tooquick": 0x03, "quota": 0x03, "plain": 0x04,
	} {
		t.Run(user, func(t *testing.T) {
			code, c, err := testbroker.DialV3(t, f.b.Addr, "v3-"+user, user, "pw")
			require.NoError(t, err)
			require.Nil(t, c)
			require.Equal(t, want, code)
		})
	}
	code, c, err := testbroker.DialV3(t, f.b.Addr, "v3-ok", "alice", "pw")
	require.NoError(t, err)
	require.NotNil(t, c)
	require.Equal(t, byte(0), code)
}

func TestClientFields(t *testing.T) {
	cert := selfSigned(t)
	f := start(t, testbroker.Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	c, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{
		Username: "alice", Password: []byte("pw"),
		TLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
	})
	require.NoError(t, err)
	require.NotNil(t, c)
	seen := f.seen()
	require.Len(t, seen, 1)
	cl := seen[0]
	// mochi assigned the empty client ID; the Guard saw the assigned one and
	// the client was told it.
	require.NotEmpty(t, cl.ID)
	require.NotNil(t, ca.Properties)
	require.Equal(t, cl.ID, ca.Properties.AssignedClientID)
	require.Equal(t, "alice", cl.Username)
	require.Equal(t, "t1", cl.Listener)
	require.Equal(t, "127.0.0.1", cl.IP())
	require.Equal(t, byte(5), cl.Protocol)
	require.True(t, cl.CleanStart)
	require.NotNil(t, cl.TLS)
	require.True(t, cl.TLS.HandshakeComplete)
	require.GreaterOrEqual(t, cl.TLS.Version, uint16(tls.VersionTLS12))
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test broker"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// expectOnly asserts that the next message c receives is on topic: a denied
// message sent before it would have arrived first.
func expectOnly(t *testing.T, c *testbroker.Conn, topic string) {
	t.Helper()
	select {
	case m := <-c.Messages():
		require.Equal(t, topic, m.Topic, "payload %q", m.Payload)
	case <-time.After(testbroker.Timeout):
		t.Fatalf("no message on %q", topic)
	}
}

func TestPublishDeniedV5(t *testing.T) {
	f := start(t, testbroker.Options{})
	sub := f.dial(t, "sub", "alice")
	require.Equal(t, byte(2), sub.Sub(t, "#", 2))
	pub := f.dial(t, "pub", "bob")
	for qos := byte(0); qos <= 2; qos++ {
		for _, topic := range []string{"ro/x", "mochi/x"} {
			t.Run(fmt.Sprintf("%s/qos%d", topic, qos), func(t *testing.T) {
				code, err := pub.Pub(t, topic, []byte("denied"), qos)
				want := byte(0x87)
				if topic == "mochi/x" {
					want = 0x80 // an error without a mqttsec reason code
				}
				if qos == 1 {
					require.Error(t, err)
					require.Equal(t, want, code)
				} else if qos == 2 {
					// paho reports a failing PUBREC only by its code.
					require.Equal(t, want, code)
				} else {
					require.NoError(t, err)
				}
				marker := fmt.Sprintf("ok/%s/%d", topic, qos)
				_, err = pub.Pub(t, marker, []byte("ok"), qos)
				require.NoError(t, err)
				expectOnly(t, sub, marker)
			})
		}
	}
	// Retained denied publishes are not stored either.
	_, err := pub.Pub(t, "ro/retained", []byte("denied"), 1)
	require.Error(t, err)
	late := f.dial(t, "late", "carol")
	require.Equal(t, byte(0), late.Sub(t, "ro/#", 0))
	late.NoMessage(t, 300*time.Millisecond)
	// The publisher is still connected and can publish.
	_, err = pub.Pub(t, "ok/end", []byte("ok"), 1)
	require.NoError(t, err)
	expectOnly(t, sub, "ok/end")
	require.GreaterOrEqual(t, f.events.count(mqttsec.EventPublishDenied, "pub"), 7)
}

func TestPublishDeniedV3(t *testing.T) {
	f := start(t, testbroker.Options{})
	sub := f.dial(t, "sub", "alice")
	require.Equal(t, byte(2), sub.Sub(t, "#", 2))
	code, pub, err := testbroker.DialV3(t, f.b.Addr, "pub3", "bob", "pw")
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	for qos := byte(0); qos <= 2; qos++ {
		for _, topic := range []string{"ro/x", "mochi/x"} {
			t.Run(fmt.Sprintf("%s/qos%d", topic, qos), func(t *testing.T) {
				// A v3 ack cannot say "denied": the broker acks and drops.
				require.NoError(t, pub.Publish(topic, []byte("denied"), qos))
				marker := fmt.Sprintf("ok/%s/%d", topic, qos)
				require.NoError(t, pub.Publish(marker, []byte("ok"), qos))
				expectOnly(t, sub, marker)
			})
		}
	}
}

func TestPublishDeniedV3Disconnect(t *testing.T) {
	f := start(t, testbroker.Options{HookOptions: []mochi.Option{mochi.WithV3DenyDisconnect()}})
	_, pub, err := testbroker.DialV3(t, f.b.Addr, "pub3", "bob", "pw")
	require.NoError(t, err)
	require.Error(t, pub.Publish("ro/x", []byte("denied"), 1))
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "pub3") == 1 },
		testbroker.Timeout, 10*time.Millisecond)
}

func TestSubscribeDenied(t *testing.T) {
	f := start(t, testbroker.Options{})
	sub := f.dial(t, "sub", "alice")
	require.Equal(t, byte(0x87), sub.Sub(t, "secret/#", 1))
	require.Equal(t, byte(0x87), sub.Sub(t, "secret/a", 1))
	// A SUBSCRIBE with an allowed and a denied filter.
	ctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
	defer cancel()
	sa, _ := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "ok/#", QoS: 1}, {Topic: "secret/+/x", QoS: 1}, {Topic: "$share/g/secret/y", QoS: 1},
	}})
	require.NotNil(t, sa)
	require.Equal(t, []byte{1, 0x87, 0x87}, sa.Reasons)

	_, s3, err := testbroker.DialV3(t, f.b.Addr, "sub3", "bob", "pw")
	require.NoError(t, err)
	granted, err := s3.Subscribe("secret/#", 1)
	require.NoError(t, err)
	require.Equal(t, byte(0x80), granted)
	granted, err = s3.Subscribe("ok/#", 1)
	require.NoError(t, err)
	require.Equal(t, byte(1), granted)
	require.Equal(t, 4, f.events.count(mqttsec.EventSubscribeDenied, "sub"))
}

func TestDeliveryDenied(t *testing.T) {
	f := start(t, testbroker.Options{})
	pub := f.dial(t, "pub", "bob")
	// Retained messages first: a later subscriber must not get the hidden one.
	_, err := pub.Publish(context.Background(), &paho.Publish{Topic: "hidden/r", Payload: []byte("r"), QoS: 1, Retain: true})
	require.NoError(t, err)
	_, err = pub.Publish(context.Background(), &paho.Publish{Topic: "ok/r", Payload: []byte("r"), QoS: 1, Retain: true})
	require.NoError(t, err)

	sub := f.dial(t, "sub", "alice")
	require.Equal(t, byte(1), sub.Sub(t, "#", 1))
	expectOnly(t, sub, "ok/r")
	// mochi acknowledges a QoS 1 PUBLISH before it delivers it, so "ok/r"
	// may arrive a second time, live; "hidden/r" never may.
	deadline := time.After(200 * time.Millisecond)
	for done := false; !done; {
		select {
		case m := <-sub.Messages():
			require.Equal(t, "ok/r", m.Topic, "payload %q", m.Payload)
		case <-deadline:
			done = true
		}
	}

	_, s3, err := testbroker.DialV3(t, f.b.Addr, "sub3", "carol", "pw")
	require.NoError(t, err)
	granted, err := s3.Subscribe("#", 1)
	require.NoError(t, err)
	require.Equal(t, byte(1), granted)
	topic, _, err := s3.ReadPublish(testbroker.Timeout)
	require.NoError(t, err)
	require.Equal(t, "ok/r", topic)

	for qos := byte(0); qos <= 2; qos++ {
		_, err := pub.Pub(t, "hidden/x", []byte("h"), qos)
		require.NoError(t, err)
		_, err = pub.Pub(t, "ok/x", []byte("o"), qos)
		require.NoError(t, err)
		expectOnly(t, sub, "ok/x")
		topic, _, err := s3.ReadPublish(testbroker.Timeout)
		require.NoError(t, err)
		require.Equal(t, "ok/x", topic)
	}
}

func TestWillDenied(t *testing.T) {
	f := start(t, testbroker.Options{})
	_, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "w", Username: "alice", Password: []byte("pw"),
		Will: &paho.WillMessage{Topic: "ro/will", Payload: []byte("bye"), QoS: 1}})
	require.Error(t, err)
	require.NotNil(t, ca)
	require.Equal(t, byte(0x87), ca.ReasonCode)

	// An allowed will is accepted and sent when the connection drops.
	sub := f.dial(t, "sub", "bob")
	require.Equal(t, byte(1), sub.Sub(t, "ok/will", 1))
	nc, err := net.Dial("tcp", f.b.Addr)
	require.NoError(t, err)
	w := paho.NewClient(paho.ClientConfig{Conn: nc, AuthHandler: nopAuth{}})
	_, err = w.Connect(context.Background(), &paho.Connect{ClientID: "w2", Username: "alice", UsernameFlag: true,
		Password: []byte("pw"), PasswordFlag: true, KeepAlive: 30, CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "ok/will", Payload: []byte("bye"), QoS: 1}})
	require.NoError(t, err)
	_ = nc.Close() // no DISCONNECT: the will is sent
	<-w.Done()
	m := sub.ExpectMessage(t, "ok/will", testbroker.Timeout)
	require.Equal(t, "bye", string(m.Payload))
}

type nopAuth struct{}

func (nopAuth) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{ReasonCode: 0x80} }
func (nopAuth) Authenticated()                     {}

func TestTakeover(t *testing.T) {
	f := start(t, testbroker.Options{})
	dev := f.dial(t, "device-1", "alice")
	require.Equal(t, byte(1), dev.Sub(t, "ok/#", 1))

	// Another identity cannot take the client ID.
	c, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "device-1", Username: "mallory", Password: []byte("pw")})
	require.Error(t, err)
	require.Nil(t, c)
	require.NotNil(t, ca)
	require.Equal(t, byte(0x85), ca.ReasonCode)
	code, v3, err := testbroker.DialV3(t, f.b.Addr, "device-1", "mallory", "pw")
	require.NoError(t, err)
	require.Nil(t, v3)
	require.Equal(t, byte(0x02), code)

	// The device is still connected and subscribed.
	select {
	case <-dev.Closed():
		t.Fatal("the device was disconnected by a refused takeover")
	default:
	}
	pub := f.dial(t, "pub", "bob")
	_, err = pub.Pub(t, "ok/1", []byte("1"), 1)
	require.NoError(t, err)
	dev.ExpectMessage(t, "ok/1", testbroker.Timeout)
	require.Equal(t, 0, f.events.count(mqttsec.EventDisconnected, "device-1"))

	// The same identity may take over: the old connection gets 0x8E.
	dev2 := f.dial(t, "device-1", "alice")
	select {
	case d := <-dev.ServerDisconnect():
		require.Equal(t, byte(0x8E), d.ReasonCode)
	case <-time.After(testbroker.Timeout):
		t.Fatal("no DISCONNECT on takeover")
	}
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "device-1") == 1 },
		testbroker.Timeout, 10*time.Millisecond)
	require.Equal(t, byte(1), dev2.Sub(t, "ok/#", 1))
	_, err = pub.Pub(t, "ok/2", []byte("2"), 1)
	require.NoError(t, err)
	dev2.ExpectMessage(t, "ok/2", testbroker.Timeout)

	// After the takeover the ID is still bound to alice.
	_, ca, err = testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "device-1", Username: "mallory", Password: []byte("pw")})
	require.Error(t, err)
	require.Equal(t, byte(0x85), ca.ReasonCode)

	// Once it disconnects, Guard.Disconnect runs exactly once more and the
	// ID is free.
	require.NoError(t, dev2.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "device-1") == 2 },
		testbroker.Timeout, 10*time.Millisecond)
	_ = f.dial(t, "device-1", "mallory")
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, 2, f.events.count(mqttsec.EventDisconnected, "device-1"))
}

func TestExpiryDisconnect(t *testing.T) {
	f := start(t, testbroker.Options{})
	sub := f.dial(t, "watch", "bob")
	require.Equal(t, byte(1), sub.Sub(t, "ok/will", 1))
	c, _, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "short-1", Username: "short", Password: []byte("pw"),
		Will: &paho.WillMessage{Topic: "ok/will", Payload: []byte("bye"), QoS: 1}})
	require.NoError(t, err)
	select {
	case d := <-c.ServerDisconnect():
		require.Equal(t, byte(0xA0), d.ReasonCode)
	case <-time.After(testbroker.Timeout):
		t.Fatal("no DISCONNECT 0xA0 after the credentials expired")
	}
	<-c.Closed()
	require.Equal(t, 1, f.events.count(mqttsec.EventExpired, "short-1"))
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "short-1") == 1 },
		testbroker.Timeout, 10*time.Millisecond)
	// The will of an expired identity is not sent.
	sub.NoMessage(t, 300*time.Millisecond)

	// A v3 client is just closed.
	_, v3, err := testbroker.DialV3(t, f.b.Addr, "short-3", "short", "pw")
	require.NoError(t, err)
	_, _, err = v3.ReadPublish(testbroker.Timeout)
	require.ErrorIs(t, err, io.EOF)
}

func TestIdleSocketClosed(t *testing.T) {
	f := start(t, testbroker.Options{ConnectTimeout: 300 * time.Millisecond})
	for name, send := range map[string][]byte{
		"silent":          nil,
		"partial CONNECT": {0x10, 0x20, 0x00, 0x04, 'M', 'Q'},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.b.Addr)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Write(send)
			require.NoError(t, err)
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			require.Error(t, err)
			var ne net.Error
			if errorsAs(err, &ne) {
				require.False(t, ne.Timeout(), "the broker did not close the idle socket")
			}
			require.Less(t, time.Since(start), 3*time.Second)
		})
	}
	// A client that connects in time keeps its connection past the timeout.
	c := f.dial(t, "slow", "alice")
	time.Sleep(600 * time.Millisecond)
	_, err := c.Pub(t, "ok/alive", []byte("x"), 1)
	require.NoError(t, err)
}

func errorsAs(err error, target *net.Error) bool {
	ne, ok := err.(net.Error)
	if ok {
		*target = ne
	}
	return ok
}

func TestNoPanicOnGarbage(t *testing.T) {
	f := start(t, testbroker.Options{ConnectTimeout: time.Second})
	inputs := [][]byte{
		{0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
		{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F},
		{0x30, 0x02, 0x00, 0x01},
		{0x10, 0x0A, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0xFF, 0x00, 0x00},
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	}
	for i := 0; i < 20; i++ {
		b := make([]byte, 64)
		_, _ = rand.Read(b)
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		c, err := net.Dial("tcp", f.b.Addr)
		require.NoError(t, err)
		_, _ = c.Write(in)
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		_ = c.Close()
	}
	// A v5 SUBSCRIBE without its options byte panics mochi v2.7.9's decoder
	// (and with it the whole broker); Harden closes the connection first.
	nc, err := net.Dial("tcp", f.b.Addr)
	require.NoError(t, err)
	p := paho.NewClient(paho.ClientConfig{Conn: nc, AuthHandler: nopAuth{}})
	_, err = p.Connect(context.Background(), &paho.Connect{ClientID: "crash", Username: "alice", UsernameFlag: true,
		Password: []byte("pw"), PasswordFlag: true, KeepAlive: 30, CleanStart: true})
	require.NoError(t, err)
	_, err = nc.Write([]byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, '#'})
	require.NoError(t, err)
	select {
	case <-p.Done():
	case <-time.After(testbroker.Timeout):
		t.Fatal("the connection that sent a crashing SUBSCRIBE was not closed")
	}
	// Garbage after a good CONNECT.
	_, v3, err := testbroker.DialV3(t, f.b.Addr, "g", "alice", "pw")
	require.NoError(t, err)
	require.Error(t, v3.Publish("ok/\x00bad", []byte("x"), 1))
	// The broker still serves.
	c := f.dial(t, "after", "alice")
	require.Equal(t, byte(0), c.Sub(t, "ok/#", 0))
}

func TestForeignACLHook(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{})
	s := newServer()
	require.NoError(t, s.AddHook(new(auth.AllowHook), nil))
	_, err := mochi.NewHook(g, s)
	require.ErrorIs(t, err, mochi.ErrForeignACL)

	// Added after the hook: Verify notices, and subscriptions the Guard
	// denies are revoked anyway.
	f := start(t, testbroker.Options{})
	require.NoError(t, f.b.Hook.Verify())
	require.NoError(t, f.b.Server.AddHook(new(auth.AllowHook), nil))
	require.ErrorIs(t, f.b.Hook.Verify(), mochi.ErrForeignACL)
	sub := f.dial(t, "sub", "alice")
	require.Equal(t, byte(0x87), sub.Sub(t, "secret/#", 1))
	pub := f.dial(t, "pub", "bob")
	_, err = pub.Pub(t, "secret/x", []byte("x"), 1)
	require.Error(t, err)
	_, err = pub.Pub(t, "ok/x", []byte("x"), 1)
	require.NoError(t, err)
	sub.NoMessage(t, 200*time.Millisecond)
}

func TestNewHookArgs(t *testing.T) {
	_, err := mochi.NewHook(nil, newServer())
	require.Error(t, err)
	_, err = mochi.NewHook(mqttsec.New(mqttsec.Config{}), nil)
	require.Error(t, err)
	// A server that does not bound the packet size is refused: mochi would
	// allocate what any pre-authentication header claims.
	_, err = mochi.NewHook(mqttsec.New(mqttsec.Config{}), mqtt.New(&mqtt.Options{Logger: discard()}))
	require.ErrorIs(t, err, mochi.ErrUnboundedPackets)
}

func TestPersistentSession(t *testing.T) {
	f := start(t, testbroker.Options{})
	opts := func(id, user string, resume bool) testbroker.ClientOptions {
		return testbroker.ClientOptions{ClientID: id, Username: user, Password: []byte("pw"), SessionExpiry: 300, Resume: resume}
	}
	c, _, err := testbroker.Dial(t, f.b.Addr, opts("keep-1", "alice", false))
	require.NoError(t, err)
	require.Equal(t, byte(1), c.Sub(t, "ok/#", 1))
	require.Equal(t, byte(1), c.Sub(t, "hidden/#", 1))
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "keep-1") == 1 },
		testbroker.Timeout, 10*time.Millisecond)

	// Messages published while alice is offline are queued for her, after
	// the receive check.
	pub := f.dial(t, "pub", "bob")
	_, err = pub.Pub(t, "hidden/q", []byte("h"), 1)
	require.NoError(t, err)
	_, err = pub.Pub(t, "ok/q", []byte("o"), 1)
	require.NoError(t, err)

	c, ca, err := testbroker.Dial(t, f.b.Addr, opts("keep-1", "alice", true))
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	expectOnly(t, c, "ok/q")
	c.NoMessage(t, 200*time.Millisecond)
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "keep-1") == 2 },
		testbroker.Timeout, 10*time.Millisecond)

	// Another identity may neither resume nor discard the kept session:
	// the client ID stays bound to alice while her session is kept.
	_, err = pub.Pub(t, "ok/for-alice", []byte("private"), 1)
	require.NoError(t, err)
	_, ca, err = testbroker.Dial(t, f.b.Addr, opts("keep-1", "mallory", true))
	require.Error(t, err)
	require.Equal(t, byte(0x85), ca.ReasonCode)
	_, ca, err = testbroker.Dial(t, f.b.Addr, opts("keep-1", "mallory", false))
	require.Error(t, err, "a clean start by another identity must not discard the kept session")
	require.Equal(t, byte(0x85), ca.ReasonCode)
	c, ca, err = testbroker.Dial(t, f.b.Addr, opts("keep-1", "alice", true))
	require.NoError(t, err)
	require.True(t, ca.SessionPresent, "alice's session survived")
	expectOnly(t, c, "ok/for-alice")
}

func TestPublishLimits(t *testing.T) {
	f := start(t, testbroker.Options{}, func(c *mqttsec.Config) {
		c.MaxPayload = 8
	})
	sub := f.dial(t, "sub", "alice")
	require.Equal(t, byte(1), sub.Sub(t, "ok/#", 1))
	pub := f.dial(t, "pub", "bob")
	// Too large: a DISCONNECT 0x95 (PUBACK cannot carry it).
	_, _ = pub.Pub(t, "ok/big", []byte("0123456789"), 1)
	select {
	case d := <-pub.ServerDisconnect():
		require.Equal(t, byte(0x95), d.ReasonCode)
	case <-time.After(testbroker.Timeout):
		t.Fatal("no DISCONNECT 0x95")
	}
	sub.NoMessage(t, 200*time.Millisecond)
}

func TestPublishRateLimited(t *testing.T) {
	f := start(t, testbroker.Options{}, func(c *mqttsec.Config) {
		c.Limiter = mqttsec.LimiterFunc(func(cl *mqttsec.Client, l mqttsec.Limit, _ int) error {
			if l == mqttsec.LimitPublish && cl.Username == "bob" {
				return mqttsec.ErrRateTooHigh
			}
			return nil
		})
	})
	sub := f.dial(t, "sub", "alice")
	require.Equal(t, byte(1), sub.Sub(t, "ok/#", 1))
	pub := f.dial(t, "pub", "bob")
	// 0x96 is not a PUBACK code: the client gets 0x97 (quota exceeded).
	code, err := pub.Pub(t, "ok/x", []byte("x"), 1)
	require.Error(t, err)
	require.Equal(t, byte(0x97), code)
	ok := f.dial(t, "pub2", "carol")
	_, err = ok.Pub(t, "ok/y", []byte("y"), 1)
	require.NoError(t, err)
	expectOnly(t, sub, "ok/y")
}

// TestExpiryDuringConnect: credentials that expire while the CONNECT is
// still being processed (after the Guard started the expiry timer, before
// the hook registered the session) must still end the connection.
func TestExpiryDuringConnect(t *testing.T) {
	f := start(t, testbroker.Options{}, func(c *mqttsec.Config) {
		authn, events := c.Authenticator, c.Events
		c.Authenticator = mqttsec.AuthenticatorFunc(func(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			id, err := authn.Authenticate(ctx, cl, cred)
			if err == nil && cl.Username == "brief" {
				id.Expiry = time.Now().Add(20 * time.Millisecond)
			}
			return id, err
		})
		c.Events = mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Kind == mqttsec.EventConnected && e.Username == "brief" {
				time.Sleep(300 * time.Millisecond) // the expiry timer fires meanwhile
			}
			events.Event(e)
		})
	})
	c, _, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "brief-1", Username: "brief", Password: []byte("pw")})
	if err == nil {
		select {
		case <-c.Closed():
		case <-time.After(testbroker.Timeout):
			t.Fatal("a connection whose credentials expired during CONNECT stayed open")
		}
	}
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "brief-1") == 1 },
		testbroker.Timeout, 10*time.Millisecond)
	// The client ID is free again.
	_ = f.dial(t, "brief-1", "mallory")
}

// TestSharePrefixCase: mochi takes "$SHARE/{group}/{filter}" in any case as
// a shared subscription to filter; the Guard, as MQTT does, only "$share".
// Such a filter would be subscribed without filter being authorized.
func TestSharePrefixCase(t *testing.T) {
	f := start(t, testbroker.Options{})
	sub := f.dial(t, "sub", "alice")
	for _, filter := range []string{"$SHARE/g/secret/#", "$Share/g/secret/x", "$sHaRe/g/#"} {
		require.Equal(t, byte(0x8F), sub.Sub(t, filter, 1), filter)
	}
	require.Equal(t, byte(1), sub.Sub(t, "$share/g/ok/#", 1))
	require.Equal(t, byte(0x87), sub.Sub(t, "$share/g/secret/#", 1))
	pub := f.dial(t, "pub", "bob")
	_, err := pub.Pub(t, "ok/x", []byte("x"), 1)
	require.NoError(t, err)
	expectOnly(t, sub, "ok/x")
}

// TestVerifyConcurrent: a Verify that overlaps another must not report a
// clean server without probing it.
func TestVerifyConcurrent(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {})})
	s := newServer()
	h, err := mochi.NewHook(g, s)
	require.NoError(t, err)
	require.NoError(t, s.AddHook(new(auth.AllowHook), nil))
	var wg sync.WaitGroup
	errs := make([]error, 32)
	for i := range errs {
		wg.Go(func() { errs[i] = h.Verify() })
	}
	wg.Wait()
	for i, err := range errs {
		require.ErrorIs(t, err, mochi.ErrForeignACL, "Verify %d", i)
	}
}

// TestDisconnectOncePerSession: whatever way connections end (DISCONNECT,
// dropped socket, takeover, kept session), the Guard ends each session
// exactly once and every client ID is free again afterwards.
func TestDisconnectOncePerSession(t *testing.T) {
	f := start(t, testbroker.Options{})
	var wg sync.WaitGroup
	const n = 12
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("d-%d", i)
			o := testbroker.ClientOptions{ClientID: id, Username: "alice", Password: []byte("pw")}
			if i%2 == 1 {
				o.SessionExpiry = 300
			}
			switch i % 3 {
			case 0: // clean DISCONNECT
				c, _, err := testbroker.Dial(t, f.b.Addr, o)
				if err == nil {
					_ = c.Disconnect(&paho.Disconnect{})
				}
			case 1: // taken over, then DISCONNECT
				c1, _, err1 := testbroker.Dial(t, f.b.Addr, o)
				c2, _, err2 := testbroker.Dial(t, f.b.Addr, o)
				if err1 == nil {
					<-c1.Closed()
				}
				if err2 == nil {
					_ = c2.Disconnect(&paho.Disconnect{})
				}
			case 2: // socket dropped
				_, v3, err := testbroker.DialV3(t, f.b.Addr, id, "alice", "pw")
				if err == nil && v3 != nil {
					_ = v3.Close()
				}
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		f.events.mu.Lock()
		defer f.events.mu.Unlock()
		conn, disc := map[string]int{}, map[string]int{}
		for _, e := range f.events.events {
			switch e.Kind {
			case mqttsec.EventConnected:
				conn[e.ClientID]++
			case mqttsec.EventDisconnected:
				disc[e.ClientID]++
			}
		}
		return len(conn) == n && maps.Equal(conn, disc)
	}, testbroker.Timeout, 10*time.Millisecond)
	for i := range n {
		c, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: fmt.Sprintf("d-%d", i), Username: "mallory", Password: []byte("pw")})
		if i%2 == 1 && i%3 != 2 {
			// alice's session is kept: her ID stays bound to her.
			require.Error(t, err, "d-%d", i)
			require.Equal(t, byte(0x85), ca.ReasonCode, "d-%d", i)
			continue
		}
		require.NoError(t, err, "d-%d", i)
		require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	}
}

// TestSessionEndsWhenConnackFails: mochi calls no OnDisconnect when it
// cannot send the CONNACK (here: the client's Maximum Packet Size is too
// small for it); the hook still ends the session, so the client ID is not
// locked.
func TestSessionEndsWhenConnackFails(t *testing.T) {
	f := start(t, testbroker.Options{HookOptions: []mochi.Option{mochi.WithConnectTimeout(200 * time.Millisecond)}})
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xC2, 0, 30}
	body = append(body, 5, 0x27, 0, 0, 0, 2) // Maximum Packet Size 2
	for _, s := range []string{"tiny", "alice", "pw"} {
		body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
		body = append(body, s...)
	}
	c, err := net.Dial("tcp", f.b.Addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventConnected, "tiny") == 1 },
		testbroker.Timeout, 10*time.Millisecond)
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "tiny") == 1 },
		testbroker.Timeout, 10*time.Millisecond)
	_ = f.dial(t, "tiny", "mallory")
}
