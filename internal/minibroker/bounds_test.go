package minibroker_test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/minibroker"
)

// raw5 is a raw MQTT v5 connection that sends and reads paho packets as
// they are, for what a well-behaved client would not send.
type raw5 struct {
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *raw5 {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, timeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return &raw5{c: nc, r: bufio.NewReader(nc)}
}

func connectPacket(id string) *packets.Connect {
	return &packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: id, CleanStart: true, KeepAlive: 30,
		Username: "carol", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true,
		Properties: &packets.Properties{}}
}

// connect5 sends cp and returns the CONNACK.
func (r *raw5) connect(t *testing.T, cp *packets.Connect) *packets.Connack {
	t.Helper()
	r.send(t, cp)
	pk := r.next(t)
	ca, ok := pk.Content.(*packets.Connack)
	require.True(t, ok, "expected CONNACK, got %s", pk.PacketType())
	return ca
}

func (r *raw5) send(t *testing.T, pk packets.Packet) {
	t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := pk.WriteTo(r.c)
	require.NoError(t, err)
}

func (r *raw5) sendBytes(t *testing.T, b []byte) {
	t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := r.c.Write(b)
	require.NoError(t, err)
}

func (r *raw5) next(t *testing.T) *packets.ControlPacket {
	t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	pk, err := packets.ReadPacket(r.r)
	require.NoError(t, err)
	return pk
}

// disconnected reads until a DISCONNECT and returns its code.
func (r *raw5) disconnected(t *testing.T) byte {
	t.Helper()
	for {
		pk := r.next(t)
		if d, ok := pk.Content.(*packets.Disconnect); ok {
			return d.ReasonCode
		}
	}
}

// closed waits until the broker closes the connection, and returns how
// long it took and the bytes read meanwhile.
func (r *raw5) closed(t *testing.T) (time.Duration, []byte) {
	t.Helper()
	began := time.Now()
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	var got bytes.Buffer
	_, err := got.ReadFrom(r.r)
	require.False(t, isTimeout(err), "the connection stayed open: %v", err)
	return time.Since(began), got.Bytes()
}

func TestConnectTimeout(t *testing.T) {
	f := start(t, minibroker.Options{ConnectTimeout: 300 * time.Millisecond})
	idle := dialRaw(t, f.addr)
	took, got := idle.closed(t)
	require.Empty(t, got)
	require.Less(t, took, 5*time.Second)
	// A CONNECT sent byte by byte, too slowly.
	slow := dialRaw(t, f.addr)
	slow.sendBytes(t, []byte{0x10, 0x20})
	_, got = slow.closed(t)
	require.Empty(t, got)
	require.Zero(t, f.b.Stats().Connections)
}

func TestMaxPacketSize(t *testing.T) {
	f := start(t, minibroker.Options{MaxPacketSize: 1024})
	// Before CONNECT: a header announcing 256 MB is refused before any
	// body is read.
	r := dialRaw(t, f.addr)
	r.sendBytes(t, []byte{0x10, 0xff, 0xff, 0xff, 0x7f})
	_, got := r.closed(t)
	require.Empty(t, got)

	// After CONNECT: v5 gets DISCONNECT 0x95.
	r = dialRaw(t, f.addr)
	ca := r.connect(t, connectPacket("big5"))
	require.Zero(t, ca.ReasonCode)
	require.NotNil(t, ca.Properties.MaximumPacketSize)
	require.Equal(t, uint32(1024), *ca.Properties.MaximumPacketSize)
	r.send(t, &packets.Publish{Topic: "a", Payload: make([]byte, 2000), Properties: &packets.Properties{}})
	require.Equal(t, byte(0x95), r.disconnected(t))

	// v3: the socket is closed.
	v := mustDial3(t, f.addr, v3opts{id: "big3", user: "carol"})
	require.NoError(t, v.write(0x30, append(appendStr(nil, "a"), make([]byte, 2000)...)))
	v.closed(t)

	// A message larger than a client's maximum packet size is not sent to
	// it [MQTT-3.1.2-25].
	small := mustDial5(t, f.addr, v5opts{id: "small", user: "carol", maxPacketSize: 64})
	require.Equal(t, byte(0), small.sub(t, "m/#", 0))
	pub := mustDial5(t, f.addr, v5opts{id: "pub", user: "carol"})
	require.Zero(t, pub.pub(t, "m/big", strings.Repeat("x", 100), 0, false))
	require.Zero(t, pub.pub(t, "m/small", "x", 0, false))
	small.expect(t, "m/small")
	require.Equal(t, int64(1), f.b.Stats().Dropped)
}

func TestKeepAlive(t *testing.T) {
	f := start(t, minibroker.Options{})
	r := dialRaw(t, f.addr)
	cp := connectPacket("ka5")
	cp.KeepAlive = 1
	require.Zero(t, r.connect(t, cp).ReasonCode)
	began := time.Now()
	pk := r.next(t)
	d, ok := pk.Content.(*packets.Disconnect)
	require.True(t, ok, "expected DISCONNECT, got %s", pk.PacketType())
	require.Equal(t, byte(0x8D), d.ReasonCode)
	require.Equal(t, "keep alive timeout", d.Properties.ReasonString)
	require.GreaterOrEqual(t, time.Since(began), time.Second)

	v := mustDial3(t, f.addr, v3opts{id: "ka3", user: "carol", keepAlive: 1})
	v.closed(t)

	// A client asking for no keep alive is given the server's.
	r = dialRaw(t, f.addr)
	cp = connectPacket("ka0")
	cp.KeepAlive = 0
	ca := r.connect(t, cp)
	require.NotNil(t, ca.Properties.ServerKeepAlive)
	require.Equal(t, uint16(300), *ca.Properties.ServerKeepAlive)
}

func TestMaxConnections(t *testing.T) {
	f := start(t, minibroker.Options{MaxConnections: 2})
	a := dialRaw(t, f.addr)
	require.Zero(t, a.connect(t, connectPacket("a")).ReasonCode)
	_ = dialRaw(t, f.addr) // idle, not yet connected: it counts too
	eventually(t, func() bool { return f.b.Stats().Connections == 2 }, "two connections")
	c := dialRaw(t, f.addr)
	_, got := c.closed(t)
	require.Empty(t, got)
}

func TestConnectEdgeCases(t *testing.T) {
	f := start(t, minibroker.Options{})
	// An empty client ID is assigned one (v5) ...
	r := dialRaw(t, f.addr)
	ca := r.connect(t, connectPacket(""))
	require.Zero(t, ca.ReasonCode)
	require.True(t, strings.HasPrefix(ca.Properties.AssignedClientID, "auto-"))
	// ... and refused for a persistent v3 session [MQTT-3.1.3-8].
	code, _, _ := dial3(t, f.addr, v3opts{user: "carol", pass: "pw", persistent: true})
	require.Equal(t, mqttsec.V3IdentifierRejected, code)
	code, _, _ = dial3(t, f.addr, v3opts{user: "carol", pass: "pw"})
	require.Zero(t, code)

	// Enhanced authentication is refused with 0x8C.
	r = dialRaw(t, f.addr)
	cp := connectPacket("am")
	cp.Properties.AuthMethod = "SCRAM-SHA-256"
	require.Equal(t, byte(0x8C), r.connect(t, cp).ReasonCode)

	// An unknown protocol level gets the 3.1.1 "unacceptable protocol
	// version" answer.
	r = dialRaw(t, f.addr)
	cp = connectPacket("p6")
	cp.ProtocolVersion = 6
	r.send(t, cp)
	_, got := r.closed(t)
	require.Equal(t, []byte{0x20, 0x02, 0x00, 0x01}, got)

	// Bad credentials: v5 0x86, v3 0x04.
	require.Equal(t, byte(0x86), refused5(t, f.addr, v5opts{id: "x", user: ""}))
	code, _, _ = dial3(t, f.addr, v3opts{id: "x", user: "carol", pass: "nope"})
	require.Equal(t, mqttsec.V3BadUsernameOrPass, code)

	// The session expiry is capped and the cap announced.
	r = dialRaw(t, f.addr)
	cp = connectPacket("exp")
	forever := uint32(0xFFFFFFFF)
	cp.Properties.SessionExpiryInterval = &forever
	ca = r.connect(t, cp)
	require.NotNil(t, ca.Properties.SessionExpiryInterval)
	require.Equal(t, uint32(3600), *ca.Properties.SessionExpiryInterval)
}

// TestMalformed sends packets that must end the connection, and checks
// that the broker keeps serving.
func TestMalformed(t *testing.T) {
	f := start(t, minibroker.Options{})
	for _, tc := range []struct {
		name string
		pkt  []byte
		code byte // the DISCONNECT code
	}{
		// The SUBSCRIBE that panics mochi's decoder: no options byte.
		{"subscribe without options", []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'}, 0x81},
		{"subscribe reserved bits", []byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0xc0}, 0x81},
		{"subscribe retain handling 3", []byte{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x30}, 0x81},
		{"subscribe without filters", []byte{0x82, 0x03, 0x00, 0x01, 0x00}, 0x82},
		{"subscribe bad flags", []byte{0x80, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x00}, 0x81},
		{"publish QoS 3", []byte{0x36, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 0x00}, 0x81},
		{"publish QoS 1 without packet ID", []byte{0x32, 0x06, 0x00, 0x01, 'a', 0x00, 0x00, 0x00}, 0x82},
		{"publish topic alias", []byte{0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x01}, 0x94},
		{"publish truncated properties", []byte{0x30, 0x05, 0x00, 0x01, 'a', 0x05, 0x23}, 0x81},
		{"second CONNECT", encodeConnect(connectPacket("again")), 0x82},
		{"CONNACK from a client", []byte{0x20, 0x03, 0x00, 0x00, 0x00}, 0x82},
		{"AUTH", []byte{0xF0, 0x02, 0x19, 0x00}, 0x82},
		{"PUBREC for nothing", []byte{0x50, 0x02, 0x00, 0x01}, 0x82},
		{"remaining length of 5 bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, 0x81},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, f.addr)
			require.Zero(t, r.connect(t, connectPacket("m")).ReasonCode)
			r.sendBytes(t, tc.pkt)
			require.Equal(t, tc.code, r.disconnected(t))
		})
	}
	c := mustDial5(t, f.addr, v5opts{id: "still", user: "carol"})
	require.Equal(t, byte(1), c.sub(t, "a/#", 1))
}

func encodeConnect(cp *packets.Connect) []byte {
	var b bytes.Buffer
	_, _ = cp.WriteTo(&b)
	return b.Bytes()
}

// TestCloseStopsEverything checks that Close returns with no goroutine of
// the broker left, whatever state its connections and sessions are in.
func TestCloseStopsEverything(t *testing.T) {
	blocked := make(chan struct{})
	u := &users{}
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if cl.Username == "stuck" {
				close(blocked)
				<-ctx.Done()                      // an authenticator waiting for a backend,
				time.Sleep(50 * time.Millisecond) // slow to give up
				return nil, ctx.Err()
			}
			return u.Authenticate(ctx, cl, cred)
		}),
		Authorizer: &policy{},
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	b := minibroker.New(g, minibroker.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- b.Serve(ln) }()

	live := mustDial5(t, addr, v5opts{id: "live", user: "carol"})
	require.Equal(t, byte(1), live.sub(t, "x/#", 1))
	v := mustDial3(t, addr, v3opts{id: "v3", user: "carol"})
	kept := mustDial5(t, addr, v5opts{id: "kept", user: "alice", expiry: 300, willDelay: 200,
		will: &paho.WillMessage{Topic: "x/will", Payload: []byte("x")}})
	kept.drop()
	_ = dialRaw(t, addr) // idle before CONNECT
	stuck := dialRaw(t, addr)
	cp := connectPacket("stuck")
	cp.Username = "stuck"
	stuck.send(t, cp)
	<-blocked
	eventually(t, func() bool { return b.Stats().Sessions == 3 }, "three sessions")

	require.NoError(t, b.Close())
	// Close waited: every connection was torn down (a connection leaves
	// the broker's table just before its goroutine signals it is done).
	require.Equal(t, minibroker.Stats{}, b.Stats())
	require.ErrorIs(t, <-served, minibroker.ErrClosed)
	// No goroutine of the broker is left (one that has signalled may
	// still be returning for an instant).
	require.Eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "mqttsec/internal/minibroker.")
	}, 2*time.Second, 10*time.Millisecond, "a goroutine of the broker outlived Close")

	require.Equal(t, byte(0x8B), live.serverDisconnect(t))
	v.closed(t)
	_, _ = stuck.closed(t)
	require.ErrorIs(t, b.Serve(ln), minibroker.ErrClosed)
	require.NoError(t, b.Close())
	// The Guard knows no session any more: every one was ended.
	require.Empty(t, g.Sessions())
}
