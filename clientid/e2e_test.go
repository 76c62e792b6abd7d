package clientid_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// passwords authenticates every user with the password "pw"; a client
// with a verified certificate and no user name is authenticated by it.
func passwords(t *testing.T) mqttsec.Authenticator {
	x, err := auth.NewX509(auth.X509Config{})
	require.NoError(t, err)
	pw := mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
		if cl.Username == "" {
			return nil, mqttsec.ErrAbstain
		}
		if string(cred.Password) != "pw" {
			return nil, mqttsec.ErrBadCredentials
		}
		return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
	})
	return auth.Chain(pw, x)
}

type broker struct {
	*testbroker.Broker
	mu           sync.Mutex
	disconnected map[string]int
}

// ended returns the number of connections with client ID id that ended.
func (b *broker) ended(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.disconnected[id]
}

// waitEnded waits until n connections with client ID id have ended: the
// Guard has released them.
func (b *broker) waitEnded(t *testing.T, id string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return b.ended(id) >= n }, testbroker.Timeout, 5*time.Millisecond)
}

func startBroker(t *testing.T, reg mqttsec.Registry, o testbroker.Options) *broker {
	t.Helper()
	p, err := clientid.NewPolicy()
	require.NoError(t, err)
	b := &broker{disconnected: map[string]int{}}
	g := mqttsec.New(mqttsec.Config{
		Authenticator: passwords(t),
		Authorizer:    mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil }),
		ClientIDs:     p,
		Registry:      reg,
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Kind == mqttsec.EventDisconnected {
				b.mu.Lock()
				b.disconnected[e.ClientID]++
				b.mu.Unlock()
			}
		}),
	})
	b.Broker = testbroker.Start(t, g, o)
	return b
}

func opts(id, username string, resume bool) testbroker.ClientOptions {
	return testbroker.ClientOptions{ClientID: id, Username: username, Password: []byte("pw"),
		SessionExpiry: 300, Resume: resume}
}

func dial(t *testing.T, b *broker, o testbroker.ClientOptions) (*testbroker.Conn, *paho.Connack) {
	t.Helper()
	c, ca, err := testbroker.Dial(t, b.Addr, o)
	require.NoError(t, err)
	return c, ca
}

// refused dials and expects the CONNECT to be refused with code.
func refused(t *testing.T, b *broker, o testbroker.ClientOptions, code byte) {
	t.Helper()
	c, ca, err := testbroker.Dial(t, b.Addr, o)
	require.Error(t, err, "client %q as %q", o.ClientID, o.Username)
	require.Nil(t, c)
	require.NotNil(t, ca, "a CONNACK says why")
	require.Equal(t, code, ca.ReasonCode)
}

func live(t *testing.T, c *testbroker.Conn) {
	t.Helper()
	select {
	case <-c.Closed():
		t.Fatal("the connection was closed")
	default:
	}
}

// publish sends a QoS 1 message from a separate client.
func publish(t *testing.T, pub *testbroker.Conn, topic string) {
	t.Helper()
	code, err := pub.Pub(t, topic, []byte(topic), 1)
	require.NoError(t, err)
	require.Less(t, code, byte(0x80))
}

func takenOver(t *testing.T, c *testbroker.Conn) {
	t.Helper()
	select {
	case d := <-c.ServerDisconnect():
		require.Equal(t, byte(0x8E), d.ReasonCode)
	case <-time.After(testbroker.Timeout):
		t.Fatal("no DISCONNECT 0x8E (session taken over)")
	}
}

// TestE2EOwner: another user cannot take a client ID, even when it knows
// it; the holder keeps its connection and its session; its own identity
// takes its session over and resumes it.
func TestE2EOwner(t *testing.T) {
	b := startBroker(t, clientid.NewRegistry(), testbroker.Options{})
	pub, _ := dial(t, b, opts("publisher", "bob", false))
	a, _ := dial(t, b, opts("dev-1", "alice", false))
	require.Equal(t, byte(1), a.Sub(t, "t/#", 1))

	refused(t, b, opts("dev-1", "mallory", false), 0x85)
	refused(t, b, opts("dev-1", "mallory", true), 0x85)
	code, v3, err := testbroker.DialV3(t, b.Addr, "dev-1", "mallory", "pw")
	require.NoError(t, err)
	require.Nil(t, v3)
	require.Equal(t, byte(0x02), code, "v3 clients are told 'identifier rejected'")
	live(t, a)
	publish(t, pub, "t/1")
	a.ExpectMessage(t, "t/1", testbroker.Timeout)

	// alice connects again from elsewhere: she takes her session over.
	a2, ca := dial(t, b, opts("dev-1", "alice", true))
	require.True(t, ca.SessionPresent, "alice resumes her session")
	takenOver(t, a)
	publish(t, pub, "t/2")
	a2.ExpectMessage(t, "t/2", testbroker.Timeout) // her subscription came along

	// Offline, her session is kept and still hers.
	require.NoError(t, a2.Disconnect(&paho.Disconnect{}))
	b.waitEnded(t, "dev-1", 2)
	publish(t, pub, "t/queued")
	refused(t, b, opts("dev-1", "mallory", true), 0x85)
	refused(t, b, opts("dev-1", "mallory", false), 0x85) // nor can it discard it
	a3, ca := dial(t, b, opts("dev-1", "alice", true))
	require.True(t, ca.SessionPresent)
	a3.ExpectMessage(t, "t/queued", testbroker.Timeout)
}

// TestE2EDeny: no second connection while one is live, even of the same
// identity; the kept session is resumed by its identity only.
func TestE2EDeny(t *testing.T) {
	b := startBroker(t, clientid.NewRegistry(clientid.WithTakeover(clientid.TakeoverDeny)), testbroker.Options{})
	pub, _ := dial(t, b, opts("publisher", "bob", false))
	a, _ := dial(t, b, opts("dev-2", "alice", false))
	require.Equal(t, byte(1), a.Sub(t, "t/#", 1))

	refused(t, b, opts("dev-2", "alice", true), 0x85)
	refused(t, b, opts("dev-2", "mallory", true), 0x85)
	live(t, a)
	publish(t, pub, "t/1")
	a.ExpectMessage(t, "t/1", testbroker.Timeout)

	require.NoError(t, a.Disconnect(&paho.Disconnect{}))
	<-a.Closed()
	b.waitEnded(t, "dev-2", 1)
	refused(t, b, opts("dev-2", "mallory", false), 0x85) // the kept session stays alice's
	publish(t, pub, "t/queued")
	a2, ca := dial(t, b, opts("dev-2", "alice", true))
	require.True(t, ca.SessionPresent)
	a2.ExpectMessage(t, "t/queued", testbroker.Timeout)
}

// TestE2EInsecureAllow: any identity may take a client ID over, as MQTT
// says, but never gets the old session: no subscription and no queued
// message of the previous holder reaches it.
func TestE2EInsecureAllow(t *testing.T) {
	b := startBroker(t, clientid.NewRegistry(clientid.WithTakeover(clientid.InsecureTakeoverAllow)), testbroker.Options{})
	pub, _ := dial(t, b, opts("publisher", "bob", false))

	// A kept session of alice's is discarded, not handed to mallory.
	a, _ := dial(t, b, opts("dev-3", "alice", false))
	require.Equal(t, byte(1), a.Sub(t, "kept/#", 1))
	require.NoError(t, a.Disconnect(&paho.Disconnect{}))
	b.waitEnded(t, "dev-3", 1)
	publish(t, pub, "kept/private")
	m, ca := dial(t, b, opts("dev-3", "mallory", true))
	require.False(t, ca.SessionPresent, "mallory gets a fresh session")
	publish(t, pub, "kept/after")
	m.NoMessage(t, 300*time.Millisecond)

	// A live connection of alice's is taken over; mallory does not inherit
	// its subscriptions.
	a, _ = dial(t, b, opts("dev-4", "alice", false))
	require.Equal(t, byte(1), a.Sub(t, "live/#", 1))
	m2, ca := dial(t, b, opts("dev-4", "mallory", true))
	takenOver(t, a)
	require.False(t, ca.SessionPresent, "mallory gets a fresh session")
	publish(t, pub, "live/x")
	m2.NoMessage(t, 300*time.Millisecond)
}

// TestE2EBinding: user names bind "{username}-*", certificates "{cn}".
func TestE2EBinding(t *testing.T) {
	ca, err := tlsconf.CreateDevCA(filepath.Join(t.TempDir(), "pki"))
	require.NoError(t, err)
	_, err = ca.IssueClient("sensor-7")
	require.NoError(t, err)
	srvCfg := ca.ServerConfig()
	srvCfg.ClientAuth = tlsconf.ClientAuthVerifyIfGiven
	srv, err := srvCfg.Server()
	require.NoError(t, err)
	cli, err := ca.ClientConfig("sensor-7").Client()
	require.NoError(t, err)
	cli.ServerName = "127.0.0.1"
	anon, err := tlsconf.Config{CAFile: ca.CAFile(), ServerName: "127.0.0.1"}.Client()
	require.NoError(t, err)

	binding, err := clientid.NewBinding("{username}-*", "{cn}")
	require.NoError(t, err)
	b := startBroker(t, clientid.Bound(clientid.NewRegistry(), binding), testbroker.Options{TLS: srv})

	o := opts("alice-phone", "alice", false)
	o.TLS = anon
	dial(t, b, o)
	for _, id := range []string{"bob-phone", "alice", "sensor-7", "alicephone"} {
		o.ClientID = id
		refused(t, b, o, 0x85)
	}
	// The broker assigns an ID to a client that sends none: the client did
	// not choose it, the binding does not apply.
	o.ClientID = ""
	c, ack := dial(t, b, o)
	require.NotEmpty(t, ack.Properties.AssignedClientID)
	live(t, c)

	dev := testbroker.ClientOptions{ClientID: "sensor-7", TLS: cli}
	dial(t, b, dev)
	dev.ClientID = "sensor-8"
	refused(t, b, dev, 0x85)
}

// TestE2EPolicy: the policy refuses IDs before authentication, with the
// code each protocol version understands.
func TestE2EPolicy(t *testing.T) {
	b := startBroker(t, clientid.NewRegistry(), testbroker.Options{})
	for _, id := range []string{"a/b", "$SYS", "dev+1", "dev 1"} {
		refused(t, b, opts(id, "alice", false), 0x85)
		code, c, err := testbroker.DialV3(t, b.Addr, id, "alice", "pw")
		require.NoError(t, err)
		require.Nil(t, c)
		require.Equal(t, byte(0x02), code, fmt.Sprintf("%q", id))
	}
	// mochi's assigned IDs pass the default policy.
	c, ca := dial(t, b, opts("", "alice", false))
	require.NotEmpty(t, ca.Properties.AssignedClientID)
	live(t, c)
}
