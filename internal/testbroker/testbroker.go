// Package testbroker starts an in-process mochi-mqtt broker guarded by a
// [mqttsec.Guard] and connects real MQTT clients to it over loopback sockets,
// for the tests of other packages. It is not API.
//
// Everything started here is stopped at t.Cleanup. The types are safe for
// concurrent use as far as the underlying paho client is.
package testbroker

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/mochi"
)

// Options configures [Start].
type Options struct {
	// TLS, when set, makes the listener a TLS listener.
	TLS *tls.Config
	// Logger receives mochi's and the hook's logs. Nil discards them.
	Logger *slog.Logger
	// ConnectTimeout is the pre-CONNECT idle timeout of the listener,
	// which is wrapped with mochi.Harden. Zero means
	// mochi.DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// HookOptions are passed to mochi.NewHook.
	HookOptions []mochi.Option
}

// Broker is a running test broker.
type Broker struct {
	// Addr is "127.0.0.1:PORT".
	Addr   string
	Server *mqtt.Server
	Hook   *mochi.Hook
}

// Start starts an in-process mochi broker with exactly one mqttsec mochi
// hook for g, listening on a free loopback port. It is stopped at t.Cleanup.
func Start(t testing.TB, g *mqttsec.Guard, o Options) *Broker {
	t.Helper()
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 1 << 20
	s := mqtt.New(&mqtt.Options{Logger: logger, InlineClient: true, Capabilities: caps})
	hook, err := mochi.NewHook(g, s, append([]mochi.Option{mochi.WithLogger(logger)}, o.HookOptions...)...)
	if err != nil {
		t.Fatalf("testbroker: NewHook: %v", err)
	}
	// Reserve a free port, then let mochi listen on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testbroker: listen: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	tcp := listeners.NewTCP(listeners.Config{Type: listeners.TypeTCP, ID: "t1", Address: addr, TLSConfig: o.TLS})
	tr := &tracker{Listener: mochi.Harden(tcp, o.ConnectTimeout), conns: map[net.Conn]struct{}{}}
	if err := s.AddListener(tr); err != nil {
		t.Fatalf("testbroker: add listener: %v", err)
	}
	if err := s.Serve(); err != nil {
		t.Fatalf("testbroker: serve: %v", err)
	}
	t.Cleanup(func() {
		// mochi v2.7.9 calls ClientsWg.Add in each connection's goroutine
		// and ClientsWg.Wait in Close without ordering them, which the race
		// detector reports. Close every connection and wait for their
		// goroutines first, so that Close runs after them.
		tr.closeAll(5 * time.Second)
		_ = s.Close()
	})
	return &Broker{Addr: addr, Server: s, Hook: hook}
}

// tracker is a listener that records the connections being served, so that
// the broker can be stopped after all of them ended.
type tracker struct {
	listeners.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	stop  bool
}

func (l *tracker) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		l.mu.Lock()
		if l.stop {
			l.mu.Unlock()
			return c.Close()
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
		}()
		return establish(id, c)
	})
}

func (l *tracker) closeAll(timeout time.Duration) {
	l.mu.Lock()
	l.stop = true
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		l.mu.Lock()
		n := len(l.conns)
		l.mu.Unlock()
		if n == 0 {
			return
		}
	}
}

// Timeout bounds each wait for an answer of the broker (CONNACK, SUBACK,
// PUBACK, ...). It is generous because tests run with the race detector on
// busy machines; a passing test never waits for it, and a wait ends early
// when the connection closes.
const Timeout = 20 * time.Second

// ClientOptions configures [Dial].
type ClientOptions struct {
	ClientID, Username string
	Password           []byte
	// TLS, when set, makes Dial use TLS.
	TLS  *tls.Config
	Will *paho.WillMessage
	// KeepAlive in seconds; zero means 30 (NoKeepAlive sends 0).
	KeepAlive uint16
	// NoKeepAlive sends a keep-alive of 0: none.
	NoKeepAlive bool
	// SessionExpiry is the v5 session expiry interval; zero means the
	// session ends with the connection.
	SessionExpiry uint32
	// Resume sends CleanStart = false, to resume a kept session.
	Resume bool
	// WillDelay is the v5 will delay interval in seconds.
	WillDelay uint32
}

// Conn is a connected paho v5 client.
type Conn struct {
	*paho.Client
	nc       net.Conn
	msgs     chan *paho.Publish
	disc     chan *paho.Disconnect
	closed   chan struct{}
	closeOne sync.Once
}

// Messages returns every PUBLISH received. The channel is buffered; when it
// is full further messages are dropped rather than blocking paho.
func (c *Conn) Messages() <-chan *paho.Publish { return c.msgs }

// ServerDisconnect returns the DISCONNECT packets sent by the server.
func (c *Conn) ServerDisconnect() <-chan *paho.Disconnect { return c.disc }

// Closed is closed when the connection ends for any reason.
func (c *Conn) Closed() <-chan struct{} { return c.closed }

func (c *Conn) markClosed() { c.closeOne.Do(func() { close(c.closed) }) }

// Drop closes the socket without a DISCONNECT, as a device that loses its
// network does: the broker sends the will message.
func (c *Conn) Drop() { _ = c.nc.Close() }

type noAuth struct{}

func (noAuth) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{ReasonCode: 0x80} }
func (noAuth) Authenticated()                     {}

// Dial connects a paho v5 client to addr. On a refused CONNECT it returns a
// non-nil error and the CONNACK when one was received. The client is closed
// at t.Cleanup.
func Dial(t testing.TB, addr string, o ClientOptions) (*Conn, *paho.Connack, error) {
	t.Helper()
	nc, err := dialNet(addr, o.TLS)
	if err != nil {
		return nil, nil, err
	}
	c := &Conn{
		nc:     nc,
		msgs:   make(chan *paho.Publish, 1024),
		disc:   make(chan *paho.Disconnect, 4),
		closed: make(chan struct{}),
	}
	cfg := paho.ClientConfig{
		ClientID:      o.ClientID,
		Conn:          nc,
		AuthHandler:   noAuth{},
		PacketTimeout: Timeout,
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
			c.markClosed()
		},
		OnClientError: func(error) { c.markClosed() },
	}
	c.Client = paho.NewClient(cfg)
	ka := o.KeepAlive
	if ka == 0 && !o.NoKeepAlive {
		ka = 30
	}
	cp := &paho.Connect{
		ClientID:    o.ClientID,
		KeepAlive:   ka,
		CleanStart:  !o.Resume,
		WillMessage: o.Will,
	}
	if o.Username != "" {
		cp.Username, cp.UsernameFlag = o.Username, true
	}
	if o.Password != nil {
		cp.Password, cp.PasswordFlag = o.Password, true
	}
	if o.SessionExpiry > 0 {
		se := o.SessionExpiry
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &se}
	}
	if o.WillDelay > 0 {
		wd := o.WillDelay
		cp.WillProperties = &paho.WillProperties{WillDelayInterval: &wd}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		_ = nc.Close()
		return nil, ca, err
	}
	go func() {
		<-c.Done()
		c.markClosed()
	}()
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		<-c.Done()
	})
	return c, ca, nil
}

func dialNet(addr string, cfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: Timeout}
	if cfg != nil {
		tc, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		return packetsThreadSafe(tc), nil
	}
	return d.Dial("tcp", addr)
}

// lockedConn serializes whole packets, as paho requires for a tls.Conn:
// paho's packet writer takes the lock of a conn that is a sync.Locker around
// the several Writes of one packet. Locking each Write alone let the
// PINGREQ paho sends right after CONNACK interleave with a SUBSCRIBE, and
// the broker closed the connection on the garbled packet.
type lockedConn struct {
	net.Conn
	sync.Mutex
}

func packetsThreadSafe(c net.Conn) net.Conn { return &lockedConn{Conn: c} }

// opContext returns the context of one request: it ends after [Timeout] or
// when the connection closes, whichever comes first.
func (c *Conn) opContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Sub subscribes to filter and returns the SUBACK reason code. It fails the
// test when no SUBACK arrives.
func (c *Conn) Sub(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := c.opContext()
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil {
		t.Fatalf("testbroker: subscribe %q: no SUBACK: %v", filter, err)
	}
	if len(sa.Reasons) != 1 {
		t.Fatalf("testbroker: subscribe %q: %d reason codes", filter, len(sa.Reasons))
	}
	return sa.Reasons[0]
}

// Pub publishes payload to topic. It returns the PUBACK/PUBREC reason code
// for QoS 1 and 2 (0 for QoS 0) and paho's error. paho reports a refused
// QoS 2 publish (a PUBREC >= 0x80) only by its code, with a nil error.
func (c *Conn) Pub(t testing.TB, topic string, payload []byte, qos byte) (byte, error) {
	t.Helper()
	ctx, cancel := c.opContext()
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: qos})
	if pr == nil {
		return 0, err
	}
	return pr.ReasonCode, err
}

// ExpectMessage waits up to d for a message on topic, skipping others.
func (c *Conn) ExpectMessage(t testing.TB, topic string, d time.Duration) *paho.Publish {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m := <-c.msgs:
			if m.Topic == topic {
				return m
			}
		case <-timer.C:
			t.Fatalf("testbroker: no message on %q within %s", topic, d)
			return nil
		}
	}
}

// NoMessage fails the test when any message arrives within d.
func (c *Conn) NoMessage(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Fatalf("testbroker: unexpected message on %q: %q", m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// V3Conn is a minimal raw MQTT 3.1.1 client: it encodes packets by hand,
// so it sees exactly what the broker sends. It is not safe for concurrent use.
type V3Conn struct {
	c      net.Conn
	r      *bufio.Reader
	nextID uint16
}

// DialV3 connects with a raw MQTT 3.1.1 CONNECT (clean session, keep-alive 30 s)
// and returns the CONNACK return code. An empty username or password is
// left out of the CONNECT. On a refused CONNECT it returns the code and a
// nil conn. The connection is closed at t.Cleanup.
func DialV3(t testing.TB, addr, clientID, username, password string) (code byte, conn *V3Conn, err error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		return 0, nil, err
	}
	v := &V3Conn{c: nc, r: bufio.NewReader(nc)}
	t.Cleanup(func() { _ = nc.Close() })
	var body []byte
	body = appendString(body, "MQTT")
	flags := byte(0x02) // clean session
	if username != "" {
		flags |= 0x80
	}
	if password != "" {
		flags |= 0x40
	}
	body = append(body, 4, flags, 0, 30)
	body = appendString(body, clientID)
	if username != "" {
		body = appendString(body, username)
	}
	if password != "" {
		body = appendString(body, password)
	}
	if err := v.write(0x10, body); err != nil {
		return 0, nil, err
	}
	typ, b, err := v.read(Timeout)
	if err != nil {
		return 0, nil, fmt.Errorf("testbroker: read CONNACK: %w", err)
	}
	if typ>>4 != 2 || len(b) != 2 {
		return 0, nil, fmt.Errorf("testbroker: expected CONNACK, got type %d len %d", typ>>4, len(b))
	}
	if b[1] != 0 {
		_ = nc.Close()
		return b[1], nil, nil
	}
	return 0, v, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (v *V3Conn) write(header byte, body []byte) error {
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
	pk = append(pk, body...)
	_ = v.c.SetWriteDeadline(time.Now().Add(Timeout))
	_, err := v.c.Write(pk)
	return err
}

func (v *V3Conn) read(timeout time.Duration) (byte, []byte, error) {
	_ = v.c.SetReadDeadline(time.Now().Add(timeout))
	typ, err := v.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		d, err := v.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("testbroker: bad remaining length")
		}
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(v.r, b); err != nil {
		return 0, nil, err
	}
	return typ, b, nil
}

func (v *V3Conn) id() uint16 {
	v.nextID++
	if v.nextID == 0 {
		v.nextID = 1
	}
	return v.nextID
}

// Publish sends a PUBLISH. For QoS 1 it waits for the PUBACK; for QoS 2 it
// completes the PUBREC/PUBREL/PUBCOMP exchange. An MQTT 3.1.1 broker acks a
// denied publish like any other, so a nil error does not mean delivery.
func (v *V3Conn) Publish(topic string, payload []byte, qos byte) error {
	body := appendString(nil, topic)
	var id uint16
	if qos > 0 {
		id = v.id()
		body = binary.BigEndian.AppendUint16(body, id)
	}
	body = append(body, payload...)
	if err := v.write(0x30|qos<<1, body); err != nil {
		return err
	}
	switch qos {
	case 0:
		return nil
	case 1:
		return v.expectAck(4, id)
	default:
		if err := v.expectAck(5, id); err != nil {
			return err
		}
		if err := v.write(0x62, binary.BigEndian.AppendUint16(nil, id)); err != nil {
			return err
		}
		return v.expectAck(7, id)
	}
}

func (v *V3Conn) expectAck(typ byte, id uint16) error {
	for {
		t, b, err := v.read(Timeout)
		if err != nil {
			return fmt.Errorf("testbroker: waiting for packet type %d: %w", typ, err)
		}
		if t>>4 == typ && len(b) >= 2 && binary.BigEndian.Uint16(b) == id {
			return nil
		}
		v.stray(t, b)
	}
}

// Subscribe subscribes to filter and returns the granted QoS or 0x80.
func (v *V3Conn) Subscribe(filter string, qos byte) (granted byte, err error) {
	id := v.id()
	body := binary.BigEndian.AppendUint16(nil, id)
	body = appendString(body, filter)
	body = append(body, qos)
	if err := v.write(0x82, body); err != nil {
		return 0, err
	}
	for {
		t, b, err := v.read(Timeout)
		if err != nil {
			return 0, fmt.Errorf("testbroker: waiting for SUBACK: %w", err)
		}
		if t>>4 == 9 && len(b) == 3 && binary.BigEndian.Uint16(b) == id {
			return b[2], nil
		}
		v.stray(t, b)
	}
}

// ReadPublish waits up to timeout for a PUBLISH and returns its topic and
// payload, acknowledging QoS 1 and 2 messages. Other packets are skipped.
func (v *V3Conn) ReadPublish(timeout time.Duration) (topic string, payload []byte, err error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return "", nil, errors.New("testbroker: no PUBLISH before the timeout")
		}
		t, b, err := v.read(left)
		if err != nil {
			return "", nil, err
		}
		if t>>4 != 3 {
			v.stray(t, b)
			continue
		}
		qos := (t >> 1) & 3
		if len(b) < 2 {
			return "", nil, errors.New("testbroker: short PUBLISH")
		}
		tl := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+tl {
			return "", nil, errors.New("testbroker: short PUBLISH topic")
		}
		topic = string(b[2 : 2+tl])
		rest := b[2+tl:]
		if qos > 0 {
			if len(rest) < 2 {
				return "", nil, errors.New("testbroker: PUBLISH without packet id")
			}
			id := rest[:2]
			rest = rest[2:]
			if qos == 1 {
				_ = v.write(0x40, id)
			} else {
				_ = v.write(0x50, id)
			}
		}
		return topic, rest, nil
	}
}

// stray answers a packet read while waiting for another: a PUBREL gets
// its PUBCOMP; anything else (including a PUBLISH) is dropped.
func (v *V3Conn) stray(t byte, b []byte) {
	if t>>4 == 6 && len(b) >= 2 {
		_ = v.write(0x70, b[:2])
	}
}

// Close closes the connection without a DISCONNECT.
func (v *V3Conn) Close() error { return v.c.Close() }

// Disconnect sends DISCONNECT and closes the connection.
func (v *V3Conn) Disconnect() error {
	_ = v.write(0xE0, nil)
	return v.c.Close()
}
