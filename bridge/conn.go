package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// frameGuard follows the MQTT framing of a byte stream (fixed header byte,
// remaining length, body) and refuses a packet larger than max bytes before
// its body is read, so a broker cannot make the client allocate what a
// header claims. It allocates nothing.
type frameGuard struct {
	max       int
	state     uint8 // 0: fixed header byte next, 1: in the remaining length, 2: in the body
	typ       byte  // packet type of the current packet
	lenBytes  int
	length    int
	mult      int
	remaining int

	// disconnect is set when a DISCONNECT packet was seen, with its
	// reason code in code.
	disconnect bool
	code       byte
}

// scan consumes b and returns ErrPacketTooLarge or ErrMalformed at the
// first packet that breaks the limits. After an error the guard must not be
// used again.
func (g *frameGuard) scan(b []byte) error {
	for i := 0; i < len(b); {
		switch g.state {
		case 0:
			g.state, g.typ, g.lenBytes, g.length, g.mult = 1, b[i]>>4, 0, 0, 1
			i++
		case 1:
			c := b[i]
			i++
			g.length += int(c&0x7f) * g.mult
			g.mult *= 128
			g.lenBytes++
			if c&0x80 != 0 {
				if g.lenBytes == 4 {
					return ErrMalformed
				}
				continue
			}
			if 1+g.lenBytes+g.length > g.max {
				return fmt.Errorf("%w: %d bytes announced, %d allowed", ErrPacketTooLarge, 1+g.lenBytes+g.length, g.max)
			}
			if g.typ == 14 { // DISCONNECT: no reason code byte means 0x00
				g.disconnect, g.code = true, 0
			}
			if g.length == 0 {
				g.state = 0
			} else {
				g.state, g.remaining = 2, g.length
			}
		default:
			if g.typ == 14 && g.remaining == g.length {
				g.code = b[i]
			}
			n := min(len(b)-i, g.remaining)
			i += n
			g.remaining -= n
			if g.remaining == 0 {
				g.state = 0
			}
		}
	}
	return nil
}

// conn wraps a broker connection for paho:
//   - reads pass through a frameGuard (the Maximum Packet Size);
//   - it is a sync.Locker, which paho's packet writer takes around each
//     packet, so writes of concurrent packets never interleave; and at the
//     end of a PUBLISH written it calls onPublish, which lets the forwarder
//     start the next publish only after the previous one is on the wire
//     (order is kept with several messages in flight).
type conn struct {
	net.Conn
	onPublish func()

	rmu   sync.Mutex // one reader (paho's), but Read must be safe anyway
	guard frameGuard
	rerr  error // the first read error

	wmu   sync.Mutex
	start bool // the next Write starts a packet
	pub   bool // the packet being written is a PUBLISH

	closeOnce sync.Once
	closed    chan struct{}
}

func newConn(c net.Conn, maxPacket int, onPublish func()) *conn {
	return &conn{Conn: c, onPublish: onPublish, guard: frameGuard{max: maxPacket}, closed: make(chan struct{})}
}

// Close closes the connection and the channel Done returns. paho closes
// the connection first when a client shuts down.
func (c *conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// Done is closed when the connection is closed.
func (c *conn) Done() <-chan struct{} { return c.closed }

func (c *conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return 0, c.rerr
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if gerr := c.guard.scan(p[:n]); gerr != nil {
			c.rerr = gerr
			_ = c.Close()
			return 0, gerr
		}
	}
	if err != nil {
		c.rerr = err
	}
	return n, err
}

// endReason says why the connection ended, as far as the reads tell: the
// broker's DISCONNECT, a framing violation, or the read error.
func (c *conn) endReason() error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.guard.disconnect {
		return fmt.Errorf("broker sent DISCONNECT 0x%02X", c.guard.code)
	}
	if c.rerr != nil {
		return c.rerr
	}
	return errors.New("connection closed")
}

// Lock starts a packet (paho's ControlPacket.WriteTo takes it).
func (c *conn) Lock() {
	c.wmu.Lock()
	c.start = true
}

// Unlock ends a packet and reports a written PUBLISH.
func (c *conn) Unlock() {
	pub := c.pub
	c.start, c.pub = false, false
	c.wmu.Unlock()
	if pub && c.onPublish != nil {
		c.onPublish()
	}
}

func (c *conn) Write(b []byte) (int, error) {
	if c.start && len(b) > 0 {
		c.start = false
		c.pub = b[0]>>4 == 3
	}
	return c.Conn.Write(b)
}

// dialer opens network connections to one broker.
type dialer struct {
	url     *url.URL
	tls     func() *tls.Config // called for each dial, so reloaded CAs are used
	dial    func(ctx context.Context) (net.Conn, error)
	timeout time.Duration
}

func (d *dialer) dialContext(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if d.dial != nil {
		return d.dial(ctx)
	}
	var nd net.Dialer
	switch d.url.Scheme {
	case "mqtt":
		return nd.DialContext(ctx, "tcp", d.url.Host)
	case "mqtts":
		td := tls.Dialer{NetDialer: &nd, Config: d.tls()}
		return td.DialContext(ctx, "tcp", d.url.Host)
	case "ws", "wss":
		return dialWebSocket(ctx, d.url, d.tls)
	}
	return nil, fmt.Errorf("bridge: scheme %q", d.url.Scheme)
}

// dialWebSocket opens an MQTT-over-WebSocket connection (subprotocol "mqtt").
// Proxy settings from the environment are not used.
func dialWebSocket(ctx context.Context, u *url.URL, tlsConfig func() *tls.Config) (net.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}}
	if u.Scheme == "wss" {
		// A WebSocket server is a web server: the only protocol to
		// negotiate by ALPN is HTTP/1.1 (the WebSocket client refuses
		// any other, "mqtt" included).
		cfg := tlsConfig().Clone()
		cfg.NextProtos = []string{"http/1.1"}
		d.TLSClientConfig = cfg
	}
	ws, resp, err := d.DialContext(ctx, u.String(), nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	return &wsConn{ws: ws}, nil
}

// wsConn is a net.Conn over WebSocket binary messages: each Write is one
// message; Read reads messages one after the other as a stream.
type wsConn struct {
	ws  *websocket.Conn
	r   io.Reader
	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errors.New("websocket: text message on an MQTT connection")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error                       { return c.ws.Close() }
func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
func (c *wsConn) SetDeadline(t time.Time) error {
	return errors.Join(c.ws.SetReadDeadline(t), c.ws.SetWriteDeadline(t))
}
