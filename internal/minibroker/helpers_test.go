package minibroker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/minibroker"
)

// timeout bounds each wait for the broker. It is generous because tests
// run with the race detector on a loaded machine; a passing test never
// waits for it.
const timeout = 20 * time.Second

// quiet is how long a test waits to see that something does not happen.
const quiet = 300 * time.Millisecond

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
		if e.Kind == kind && (clientID == "" || e.ClientID == clientID) {
			n++
		}
	}
	return n
}

// users is the test authenticator: any user name with password "pw",
// except removed users. It is a Revalidator: a removed user's sessions
// no longer verify.
type users struct {
	mu      sync.Mutex
	removed map[string]bool
	expiry  time.Duration // credentials of users named "short..." expire after it
}

func (u *users) remove(name string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.removed == nil {
		u.removed = map[string]bool{}
	}
	u.removed[name] = true
}

func (u *users) Authenticate(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if cl.Username == "" || string(cred.Password) != "pw" || u.removed[cl.Username] {
		return nil, fmt.Errorf("%w: unknown user or wrong password", mqttsec.ErrBadCredentials)
	}
	id := &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}
	if strings.HasPrefix(cl.Username, "short") {
		id.Expiry = time.Now().Add(u.expiry)
	}
	return id, nil
}

func (u *users) Revalidate(_ context.Context, cl *mqttsec.Client) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.removed[cl.Identity.Subject] {
		return fmt.Errorf("%w: user removed", mqttsec.ErrBadCredentials)
	}
	return nil
}

// policy is the test authorizer:
//   - "code/XX/..." (XX a hex reason code) is denied with that code for
//     publish and subscribe, and allowed for receive;
//   - "secret/..." is denied everything;
//   - rules added with deny are denied;
//   - anything else is allowed.
type policy struct {
	mu   sync.Mutex
	deny []rule
}

type rule struct {
	access mqttsec.Access
	prefix string
}

func (p *policy) denyAccess(a mqttsec.Access, prefix string) {
	p.mu.Lock()
	p.deny = append(p.deny, rule{a, prefix})
	p.mu.Unlock()
}

func (p *policy) Authorize(_ context.Context, _ *mqttsec.Client, a mqttsec.Access, name string) error {
	if rest, ok := strings.CutPrefix(name, "code/"); ok && a != mqttsec.Receive {
		hex, _, _ := strings.Cut(rest, "/")
		c, err := strconv.ParseUint(hex, 16, 8)
		if err != nil {
			return mqttsec.ErrNotAuthorized
		}
		return fmt.Errorf("test policy: %w", mqttsec.NewReasonError(mqttsec.ReasonCode(c), "test denial"))
	}
	if strings.HasPrefix(name, "secret/") {
		return mqttsec.ErrNotAuthorized
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.deny {
		if r.access&a != 0 && strings.HasPrefix(name, r.prefix) {
			return fmt.Errorf("%w: test rule", mqttsec.ErrNotAuthorized)
		}
	}
	return nil
}

// fixture is a running broker with its Guard and parts.
type fixture struct {
	addr   string
	b      *minibroker.Broker
	g      *mqttsec.Guard
	users  *users
	policy *policy
	events *recorder
	tap    *tap
}

// start starts a Broker on a free loopback port behind a wire tap. At
// cleanup the broker is closed and the test fails if any reason code sent
// was invalid for its packet (seen by the broker or by the tap).
func start(t *testing.T, o minibroker.Options, edit ...func(*mqttsec.Config)) *fixture {
	t.Helper()
	f := &fixture{users: &users{expiry: time.Second}, policy: &policy{}, events: &recorder{}}
	cfg := mqttsec.Config{Authenticator: f.users, Authorizer: f.policy, Events: f.events}
	for _, e := range edit {
		e(&cfg)
	}
	f.g = mqttsec.New(cfg)
	f.b = minibroker.New(f.g, o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.tap = &tap{Listener: ln}
	f.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- f.b.Serve(f.tap) }()
	t.Cleanup(func() {
		require.NoError(t, f.b.Close())
		require.ErrorIs(t, <-served, minibroker.ErrClosed)
		require.Zero(t, f.b.Stats().InvalidCodes, "the broker replaced reason codes not valid for their packet")
		require.Empty(t, f.tap.problems(), "invalid packets on the wire")
	})
	return f
}

// tap is a listener that records what each connection reads and writes
// and, when the connection closes, decodes everything the broker wrote and
// checks it: every reason code must be valid for its packet type and
// protocol version (its own tables, from the MQTT 5.0 and 3.1.1
// specifications), and no MQTT 3 client gets a v5-only packet.
type tap struct {
	net.Listener
	mu   sync.Mutex
	errs []string
}

func (l *tap) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, l: l}, nil
}

func (l *tap) problems() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

type tapConn struct {
	net.Conn
	l     *tap
	mu    sync.Mutex
	in    bytes.Buffer // client to broker (the first KiBs)
	out   bytes.Buffer // broker to client
	check sync.Once
}

func (c *tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	if c.in.Len() < 1<<16 {
		c.in.Write(b[:n])
	}
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.mu.Lock()
	c.out.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) Close() error {
	err := c.Conn.Close()
	c.check.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if errs := checkServerStream(c.in.Bytes(), c.out.Bytes()); len(errs) > 0 {
			c.l.mu.Lock()
			c.l.errs = append(c.l.errs, errs...)
			c.l.mu.Unlock()
		}
	})
	return err
}

// The reason codes a server may send (MQTT 5.0 3.2.2.2, 3.4.2.1, 3.5.2.1,
// 3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1; MQTT 3.1.1 3.2.2.3, 3.9.3).
var wireCodes = map[byte]string{
	packets.CONNACK:    "00 80 81 82 83 84 85 86 87 88 89 8a 8c 90 95 97 99 9a 9b 9c 9d 9f",
	packets.PUBACK:     "00 10 80 83 87 90 91 97 99",
	packets.PUBREC:     "00 10 80 83 87 90 91 97 99",
	packets.PUBCOMP:    "00 92",
	packets.SUBACK:     "00 01 02 80 83 87 8f 91 97 9e a1 a2",
	packets.UNSUBACK:   "00 11 80 83 87 8f 91",
	packets.DISCONNECT: "00 80 81 82 83 87 89 8b 8d 8e 8f 90 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f a0 a1 a2",
}

var wireCodesV3 = map[byte]string{
	packets.CONNACK: "00 01 02 03 04 05",
	packets.SUBACK:  "00 01 02 80",
}

func wireValid(table map[byte]string, typ, code byte) bool {
	return strings.Contains(" "+table[typ]+" ", fmt.Sprintf(" %02x ", code))
}

// checkServerStream decodes the bytes a server wrote to one client (in:
// what the client sent, for its protocol level) and returns the problems.
func checkServerStream(in, out []byte) []string {
	version := byte(5)
	if len(in) > 2 && in[0]>>4 == packets.CONNECT {
		// fixed header, remaining length, protocol name, level
		i := 1
		for i < len(in) && in[i]&0x80 != 0 {
			i++
		}
		i++
		if i+2 <= len(in) {
			nl := int(binary.BigEndian.Uint16(in[i:]))
			if i+2+nl < len(in) {
				version = in[i+2+nl]
			}
		}
	}
	var errs []string
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Sprintf("protocol %d: ", version)+fmt.Sprintf(format, a...))
	}
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		cp, body, err := readRaw(r)
		if err != nil {
			return errs // the end, or a packet cut short by a closed socket
		}
		typ := cp >> 4
		if version != 5 {
			switch typ {
			case packets.CONNACK:
				if len(body) != 2 || !wireValid(wireCodesV3, typ, body[1]) {
					bad("CONNACK %x", body)
				}
			case packets.SUBACK:
				for _, c := range body[2:] {
					if !wireValid(wireCodesV3, typ, c) {
						bad("SUBACK code %#x", c)
					}
				}
			case packets.PUBACK, packets.PUBREC, packets.PUBCOMP, packets.UNSUBACK:
				if len(body) != 2 {
					bad("packet %d of %d bytes", typ, len(body))
				}
			case packets.PUBLISH, packets.PINGRESP:
			default:
				bad("packet type %d sent to an MQTT 3 client", typ)
			}
			continue
		}
		var codes []byte
		switch typ {
		case packets.CONNACK:
			if len(body) < 2 {
				bad("short CONNACK")
				continue
			}
			if body[1] >= 0x80 && body[0] != 0 {
				bad("refusing CONNACK with session present") // [MQTT-3.2.2-6]
			}
			codes = body[1:2]
		case packets.PUBACK, packets.PUBREC, packets.PUBCOMP:
			if len(body) >= 3 {
				codes = body[2:3]
			}
		case packets.DISCONNECT:
			if len(body) >= 1 {
				codes = body[:1]
			}
		case packets.SUBACK:
			s := &packets.Suback{Properties: &packets.Properties{}}
			if err := s.Unpack(bytes.NewBuffer(body)); err != nil {
				bad("SUBACK: %v", err)
			}
			codes = s.Reasons
		case packets.UNSUBACK:
			u := &packets.Unsuback{Properties: &packets.Properties{}}
			if err := u.Unpack(bytes.NewBuffer(body)); err != nil {
				bad("UNSUBACK: %v", err)
			}
			codes = u.Reasons
		case packets.PUBLISH, packets.PINGRESP:
		default:
			bad("packet type %d from a server", typ)
		}
		for _, c := range codes {
			if !wireValid(wireCodes, typ, c) {
				bad("reason code %#x in packet type %d", c, typ)
			}
		}
	}
}

func readRaw(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("bad remaining length")
		}
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return h, b, err
}

// v5 is a connected paho v5 client.
type v5 struct {
	*paho.Client
	msgs   chan *paho.Publish
	disc   chan *paho.Disconnect
	closed chan struct{}
	once   sync.Once
}

type v5opts struct {
	id, user      string
	resume        bool
	expiry        uint32
	will          *paho.WillMessage
	willDelay     uint32
	keepAlive     uint16
	maxPacketSize uint32
}

type noAuth struct{}

func (noAuth) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{ReasonCode: 0x80} }
func (noAuth) Authenticated()                     {}

// dial5 connects a paho v5 client with password "pw". It returns the
// CONNACK and an error when the CONNECT is refused.
func dial5(t *testing.T, addr string, o v5opts) (*v5, *paho.Connack, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, timeout)
	require.NoError(t, err)
	c := &v5{msgs: make(chan *paho.Publish, 1024), disc: make(chan *paho.Disconnect, 4), closed: make(chan struct{})}
	markClosed := func() { c.once.Do(func() { close(c.closed) }) }
	c.Client = paho.NewClient(paho.ClientConfig{
		ClientID: o.id, Conn: nc, AuthHandler: noAuth{}, PacketTimeout: timeout,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			select {
			case c.msgs <- pr.Packet:
			default:
			}
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disc <- d:
			default:
			}
			markClosed()
		},
		OnClientError: func(error) { markClosed() },
	})
	ka := o.keepAlive
	if ka == 0 {
		ka = 30
	}
	cp := &paho.Connect{ClientID: o.id, KeepAlive: ka, CleanStart: !o.resume, WillMessage: o.will,
		Username: o.user, UsernameFlag: o.user != "", Password: []byte("pw"), PasswordFlag: true,
		Properties: &paho.ConnectProperties{}}
	if o.expiry > 0 {
		cp.Properties.SessionExpiryInterval = &o.expiry
	}
	if o.maxPacketSize > 0 {
		cp.Properties.MaximumPacketSize = &o.maxPacketSize
	}
	if o.willDelay > 0 {
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &o.willDelay}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = nc.Close()
		return nil, ca, err
	}
	go func() {
		<-c.Done()
		markClosed()
	}()
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		<-c.Done()
	})
	return c, ca, nil
}

// mustDial5 connects or fails the test.
func mustDial5(t *testing.T, addr string, o v5opts) *v5 {
	t.Helper()
	c, _, err := dial5(t, addr, o)
	require.NoError(t, err)
	return c
}

// refused5 connects and returns the CONNACK code of a refused CONNECT.
func refused5(t *testing.T, addr string, o v5opts) byte {
	t.Helper()
	c, ca, err := dial5(t, addr, o)
	require.Error(t, err)
	require.Nil(t, c)
	require.NotNil(t, ca, "no CONNACK: %v", err)
	return ca.ReasonCode
}

func (c *v5) sub(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	require.NotNil(t, sa, "no SUBACK for %q: %v", filter, err)
	require.Len(t, sa.Reasons, 1)
	return sa.Reasons[0]
}

// pub publishes and returns the PUBACK/PUBREC code (0 for QoS 0).
func (c *v5) pub(t *testing.T, name string, payload string, qos byte, retain bool) byte {
	t.Helper()
	code, err := c.tryPub(name, payload, qos, retain)
	require.NoError(t, err)
	return code
}

// tryPub publishes and returns the PUBACK/PUBREC code and paho's error; it
// returns as soon as the connection closes.
func (c *v5) tryPub(name string, payload string, qos byte, retain bool) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: name, Payload: []byte(payload), QoS: qos, Retain: retain})
	if pr == nil {
		return 0, err
	}
	return pr.ReasonCode, nil
}

func (c *v5) expect(t *testing.T, name string) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		require.Equal(t, name, m.Topic, "payload %q", m.Payload)
		return m
	case <-time.After(timeout):
		t.Fatalf("no message on %q", name)
		return nil
	}
}

func (c *v5) none(t *testing.T) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("unexpected message on %q: %q", m.Topic, m.Payload)
	case <-time.After(quiet):
	}
}

func (c *v5) serverDisconnect(t *testing.T) byte {
	t.Helper()
	select {
	case d := <-c.disc:
		return d.ReasonCode
	case <-time.After(timeout):
		t.Fatal("no DISCONNECT from the server")
		return 0
	}
}

// drop closes the socket without a DISCONNECT (so the will is due).
func (c *v5) drop() {
	c.TerminateConnectionForTest()
	<-c.Done()
}

// leave sends DISCONNECT 0x00 and waits for the connection to end.
func (c *v5) leave(t *testing.T) {
	t.Helper()
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	<-c.Done()
}

// v3 is a raw MQTT 3.1.1 client: it encodes packets by hand, so it sees
// exactly what the broker sends. It is not safe for concurrent use.
type v3 struct {
	c      net.Conn
	r      *bufio.Reader
	nextID uint16
}

type v3opts struct {
	id, user, pass string
	persistent     bool // clean session 0
	keepAlive      uint16
	will           *mqttsec.Message
}

// dial3 sends CONNECT and returns the CONNACK return code, the session
// present flag and, when accepted, the client.
func dial3(t *testing.T, addr string, o v3opts) (code byte, present bool, c *v3) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, timeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	c = &v3{c: nc, r: bufio.NewReader(nc)}
	body := appendStr(nil, "MQTT")
	flags := byte(0)
	if !o.persistent {
		flags |= 0x02
	}
	if o.will != nil {
		flags |= 0x04 | o.will.QoS<<3
		if o.will.Retain {
			flags |= 0x20
		}
	}
	if o.user != "" {
		flags |= 0x80
	}
	if o.pass != "" {
		flags |= 0x40
	}
	ka := o.keepAlive
	if ka == 0 {
		ka = 30
	}
	body = append(body, 4, flags, byte(ka>>8), byte(ka))
	body = appendStr(body, o.id)
	if o.will != nil {
		body = appendStr(body, o.will.Topic)
		body = appendStr(body, string(o.will.Payload))
	}
	if o.user != "" {
		body = appendStr(body, o.user)
	}
	if o.pass != "" {
		body = appendStr(body, o.pass)
	}
	require.NoError(t, c.write(0x10, body))
	typ, b, err := c.read(timeout)
	require.NoError(t, err, "no CONNACK")
	require.Equal(t, packets.CONNACK, typ>>4)
	require.Len(t, b, 2)
	if b[1] != 0 {
		return b[1], false, nil
	}
	return 0, b[0]&1 == 1, c
}

func mustDial3(t *testing.T, addr string, o v3opts) *v3 {
	t.Helper()
	if o.pass == "" {
		o.pass = "pw"
	}
	code, _, c := dial3(t, addr, o)
	require.Zero(t, code)
	return c
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (c *v3) write(header byte, body []byte) error {
	pk := []byte{header}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if n == 0 {
			break
		}
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.c.Write(append(pk, body...))
	return err
}

func (c *v3) read(d time.Duration) (byte, []byte, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	return readRaw(c.r)
}

func (c *v3) id() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// expectType reads packets until one of type typ with packet ID id.
func (c *v3) expectType(t *testing.T, typ byte, id uint16) []byte {
	t.Helper()
	for {
		h, b, err := c.read(timeout)
		require.NoError(t, err, "waiting for packet type %d", typ)
		if h>>4 == typ && len(b) >= 2 && binary.BigEndian.Uint16(b) == id {
			return b
		}
		require.Equal(t, packets.PUBLISH, h>>4, "unexpected packet type %d", h>>4)
	}
}

// publish sends a PUBLISH and completes its QoS exchange.
func (c *v3) publish(t *testing.T, name, payload string, qos byte, retain bool) {
	t.Helper()
	body := appendStr(nil, name)
	var id uint16
	if qos > 0 {
		id = c.id()
		body = binary.BigEndian.AppendUint16(body, id)
	}
	h := byte(0x30) | qos<<1
	if retain {
		h |= 1
	}
	require.NoError(t, c.write(h, append(body, payload...)))
	switch qos {
	case 1:
		c.expectType(t, packets.PUBACK, id)
	case 2:
		c.expectType(t, packets.PUBREC, id)
		require.NoError(t, c.write(0x62, binary.BigEndian.AppendUint16(nil, id)))
		c.expectType(t, packets.PUBCOMP, id)
	}
}

// subscribe returns the SUBACK return code.
func (c *v3) subscribe(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	id := c.id()
	body := binary.BigEndian.AppendUint16(nil, id)
	body = append(appendStr(body, filter), qos)
	require.NoError(t, c.write(0x82, body))
	b := c.expectType(t, packets.SUBACK, id)
	require.Len(t, b, 3)
	return b[2]
}

// next waits up to d for a PUBLISH and acknowledges it (QoS 1).
func (c *v3) next(d time.Duration) (name, payload string, err error) {
	deadline := time.Now().Add(d)
	for {
		h, b, err := c.read(time.Until(deadline))
		if err != nil {
			return "", "", err
		}
		if h>>4 != packets.PUBLISH {
			continue
		}
		if len(b) < 2 {
			return "", "", errors.New("short PUBLISH")
		}
		n := int(binary.BigEndian.Uint16(b))
		name, rest := string(b[2:2+n]), b[2+n:]
		if qos := h >> 1 & 3; qos > 0 {
			_ = c.write(0x40, rest[:2])
			rest = rest[2:]
		}
		return name, string(rest), nil
	}
}

func (c *v3) expect(t *testing.T, name string) string {
	t.Helper()
	got, payload, err := c.next(timeout)
	require.NoError(t, err, "waiting for %q", name)
	require.Equal(t, name, got)
	return payload
}

func (c *v3) none(t *testing.T) {
	t.Helper()
	name, payload, err := c.next(quiet)
	require.Error(t, err, "unexpected message on %q: %q", name, payload)
}

// closed waits until the broker closes the connection.
func (c *v3) closed(t *testing.T) {
	t.Helper()
	for {
		_, _, err := c.read(timeout)
		if err == nil {
			continue
		}
		require.False(t, isTimeout(err), "the connection stayed open")
		return
	}
}

func (c *v3) disconnect() {
	_ = c.write(0xE0, nil)
	_ = c.c.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// eventually waits for cond.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, timeout, 5*time.Millisecond, msg)
}

// TestTapFindsInvalidCodes makes sure the wire check can fail.
func TestTapFindsInvalidCodes(t *testing.T) {
	connect5 := []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x1e, 0x00, 0x00, 0x01, 'c'}
	connect3 := []byte{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x1e, 0x00, 0x01, 'c'}
	ok5 := []byte{0x20, 0x03, 0x00, 0x00, 0x00, 0x40, 0x04, 0x00, 0x01, 0x87, 0x00, 0x90, 0x04, 0x00, 0x01, 0x00, 0x87, 0xe0, 0x02, 0x98, 0x00}
	require.Empty(t, checkServerStream(connect5, ok5))
	require.Empty(t, checkServerStream(connect3, []byte{0x20, 0x02, 0x00, 0x05, 0x90, 0x03, 0x00, 0x01, 0x80}))
	for _, tc := range []struct {
		in, out []byte
	}{
		{connect5, []byte{0x40, 0x04, 0x00, 0x01, 0x96, 0x00}}, // PUBACK 0x96
		{connect5, []byte{0x50, 0x04, 0x00, 0x01, 0x95, 0x00}}, // PUBREC 0x95
		{connect5, []byte{0x20, 0x03, 0x00, 0x98, 0x00}},       // CONNACK 0x98
		{connect5, []byte{0x20, 0x03, 0x01, 0x87, 0x00}},       // refused with session present
		{connect5, []byte{0x90, 0x04, 0x00, 0x01, 0x00, 0x86}}, // SUBACK 0x86
		{connect5, []byte{0xe0, 0x02, 0x8a, 0x00}},             // DISCONNECT 0x8A
		{connect5, []byte{0xe0, 0x02, 0x04, 0x00}},             // DISCONNECT 0x04 (client only)
		{connect3, []byte{0x20, 0x02, 0x00, 0x87}},             // v3 CONNACK 0x87
		{connect3, []byte{0x90, 0x03, 0x00, 0x01, 0x87}},       // v3 SUBACK 0x87
		{connect3, []byte{0xe0, 0x00}},                         // DISCONNECT to v3
		{connect3, []byte{0x40, 0x03, 0x00, 0x01, 0x87}},       // v3 PUBACK with a code
	} {
		require.NotEmpty(t, checkServerStream(tc.in, tc.out), "%x", tc.out)
	}
}
