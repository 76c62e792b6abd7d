package scan

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// connOpts is what a CONNECT carries, for both protocol versions.
type connOpts struct {
	clientID string
	user     string
	userFlag bool
	pass     []byte
	passFlag bool
	keep     bool // clean session / clean start false
	will     *will
}

// summary describes the CONNECT for evidence, without its secrets.
func (o connOpts) summary() string {
	var parts []string
	switch {
	case !o.userFlag:
		parts = append(parts, "no user name")
	case o.passFlag && len(o.pass) == 0:
		parts = append(parts, fmt.Sprintf("user %q with an empty password", o.user))
	default:
		parts = append(parts, fmt.Sprintf("user %q", o.user))
	}
	switch {
	case o.clientID == "":
		parts = append(parts, "an empty client ID")
	case len(o.clientID) > 64:
		parts = append(parts, fmt.Sprintf("a %d-byte client ID", len(o.clientID)))
	}
	if o.keep {
		parts = append(parts, "clean session 0")
	}
	if o.will != nil {
		parts = append(parts, fmt.Sprintf("a will on %q", o.will.topic))
	}
	return "a CONNECT with " + strings.Join(parts, ", ")
}

type will struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// message is a PUBLISH received by a probe connection.
type message struct {
	topic   string
	payload []byte
	retain  bool
}

var errClosed = errors.New("scan: connection closed by the broker")

// conn3 is the scanner's own MQTT 3.1.1 client: it encodes packets by hand
// so that it can send what a library would refuse (wildcards in a topic
// name, an empty topic, a 64 KiB client ID) and read exactly what the broker
// answers. Reads are bounded by the connection's limitConn. It is safe for
// use by one check at a time; a reader goroutine runs until close.
type conn3 struct {
	nc  net.Conn
	wmu sync.Mutex

	mu      sync.Mutex
	waiters map[uint16]chan []byte // by packet identifier
	nextID  uint16

	pings  chan struct{}
	msgs   chan message
	done   chan struct{}
	err    error
	closer sync.Once
	opWait time.Duration
}

// connect3 sends a 3.1.1 CONNECT on nc and reads the CONNACK. It returns
// the CONNACK return code; on code 0 the connection is ready and a reader
// goroutine runs until close. On any other outcome nc is closed.
func connect3(ctx context.Context, nc net.Conn, o connOpts, opWait time.Duration) (*conn3, byte, error) {
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var body []byte
	body = appendString(body, "MQTT")
	var flags byte
	if !o.keep {
		flags |= 0x02
	}
	if o.will != nil {
		flags |= 0x04 | o.will.qos<<3
		if o.will.retain {
			flags |= 0x20
		}
	}
	if o.userFlag {
		flags |= 0x80
	}
	if o.passFlag {
		flags |= 0x40
	}
	body = append(body, 4, flags, 0, 60)
	body = appendString(body, o.clientID)
	if o.will != nil {
		body = appendString(body, o.will.topic)
		body = appendString(body, string(o.will.payload))
	}
	if o.userFlag {
		body = appendString(body, o.user)
	}
	if o.passFlag {
		body = appendString(body, string(o.pass))
	}
	if _, err := nc.Write(appendPacket(nil, 0x10, body)); err != nil {
		_ = nc.Close()
		return nil, 0, ctxErr(ctx, err)
	}
	br := bufio.NewReader(nc)
	typ, b, err := readPacket(br)
	if err != nil {
		_ = nc.Close()
		return nil, 0, fmt.Errorf("no CONNACK: %w", ctxErr(ctx, err))
	}
	if typ>>4 != 2 || len(b) < 2 {
		_ = nc.Close()
		return nil, 0, fmt.Errorf("expected CONNACK, got packet type %d", typ>>4)
	}
	if b[1] != 0 {
		_ = nc.Close()
		return nil, b[1], nil
	}
	_ = nc.SetDeadline(time.Time{})
	c := &conn3{
		nc:      nc,
		waiters: map[uint16]chan []byte{},
		pings:   make(chan struct{}, 1),
		msgs:    make(chan message, 256),
		done:    make(chan struct{}),
		opWait:  opWait,
	}
	go c.readLoop(br)
	return c, 0, nil
}

// ctxErr prefers the context's error over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// readPacket reads one packet. The connection below is a limitConn, which
// refuses oversized packets before this allocates them.
func readPacket(br *bufio.Reader) (byte, []byte, error) {
	typ, err := br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		d, err := br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return 0, nil, err
	}
	return typ, b, nil
}

func (c *conn3) readLoop(br *bufio.Reader) {
	for {
		typ, b, err := readPacket(br)
		if err != nil {
			c.fail(err)
			return
		}
		switch typ >> 4 {
		case 3: // PUBLISH
			m, id, ok := parsePublish3(typ, b)
			if !ok {
				c.fail(errors.New("malformed PUBLISH"))
				return
			}
			switch (typ >> 1) & 3 {
			case 1:
				_ = c.write(0x40, binary.BigEndian.AppendUint16(nil, id))
			case 2:
				_ = c.write(0x50, binary.BigEndian.AppendUint16(nil, id))
			}
			select {
			case c.msgs <- m:
			default: // a busy broker: drop rather than block the reader
			}
		case 4, 5, 7, 9, 11: // PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK
			if len(b) < 2 {
				continue
			}
			id := binary.BigEndian.Uint16(b)
			c.mu.Lock()
			w := c.waiters[id]
			c.mu.Unlock()
			if w != nil {
				select {
				case w <- append([]byte{typ >> 4}, b...):
				default:
				}
			}
		case 6: // PUBREL
			if len(b) >= 2 {
				_ = c.write(0x70, b[:2])
			}
		case 13: // PINGRESP
			select {
			case c.pings <- struct{}{}:
			default:
			}
		}
	}
}

func parsePublish3(typ byte, b []byte) (message, uint16, bool) {
	if len(b) < 2 {
		return message{}, 0, false
	}
	tl := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+tl {
		return message{}, 0, false
	}
	m := message{topic: string(b[2 : 2+tl]), retain: typ&1 != 0}
	rest := b[2+tl:]
	var id uint16
	if (typ>>1)&3 > 0 {
		if len(rest) < 2 {
			return message{}, 0, false
		}
		id = binary.BigEndian.Uint16(rest)
		rest = rest[2:]
	}
	m.payload = rest
	return m, id, true
}

func (c *conn3) fail(err error) {
	c.closer.Do(func() {
		c.err = err
		_ = c.nc.Close()
		close(c.done)
	})
}

// closed reports whether the connection has ended.
func (c *conn3) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *conn3) write(h byte, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(DefaultCheckTimeout))
	_, err := c.nc.Write(appendPacket(nil, h, body))
	return err
}

func (c *conn3) id() (uint16, chan []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		c.nextID++
		if c.nextID != 0 && c.waiters[c.nextID] == nil {
			break
		}
	}
	ch := make(chan []byte, 2)
	c.waiters[c.nextID] = ch
	return c.nextID, ch
}

func (c *conn3) release(id uint16) {
	c.mu.Lock()
	delete(c.waiters, id)
	c.mu.Unlock()
}

// await waits for a packet of type typ on ch.
func (c *conn3) await(ctx context.Context, ch chan []byte, typ byte) ([]byte, error) {
	for {
		select {
		case p := <-ch:
			if p[0] == typ {
				return p[1:], nil
			}
		case <-c.done:
			return nil, errClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// publish sends a PUBLISH and, for QoS 1 and 2, waits for the broker's
// acknowledgement. An MQTT 3.1.1 acknowledgement cannot say "denied": a
// nil error only means the broker read the packet.
func (c *conn3) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.opWait)
	defer cancel()
	h := byte(0x30) | qos<<1
	if retain {
		h |= 1
	}
	body := appendString(nil, topic)
	if qos == 0 {
		return c.write(h, append(body, payload...))
	}
	id, ch := c.id()
	defer c.release(id)
	body = binary.BigEndian.AppendUint16(body, id)
	if err := c.write(h, append(body, payload...)); err != nil {
		return err
	}
	if qos == 1 {
		_, err := c.await(ctx, ch, 4)
		return err
	}
	if _, err := c.await(ctx, ch, 5); err != nil {
		return err
	}
	if err := c.write(0x62, binary.BigEndian.AppendUint16(nil, id)); err != nil {
		return err
	}
	_, err := c.await(ctx, ch, 7)
	return err
}

// ping sends PINGREQ and waits for PINGRESP: it tells whether the broker
// still serves this connection.
func (c *conn3) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.opWait)
	defer cancel()
	if err := c.write(0xC0, nil); err != nil {
		return err
	}
	select {
	case <-c.pings:
		return nil
	case <-c.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close sends DISCONNECT (so no will is published) and closes.
func (c *conn3) Close() error {
	if !c.closed() {
		_ = c.write(0xE0, nil)
	}
	c.fail(errClosed)
	return nil
}

// drop closes the socket without DISCONNECT, so the broker publishes the
// will.
func (c *conn3) drop() { c.fail(errClosed) }
