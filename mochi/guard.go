package mochi

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// ErrMalformedPacket is the read error of a connection closed by [Harden]
// because it sent a packet known to crash mochi v2.7.9's decoder.
var ErrMalformedPacket = errors.New("mochi: malformed packet refused")

// maxSubscribeBody is the largest SUBSCRIBE body [Harden] inspects; a larger
// SUBSCRIBE closes the connection.
const maxSubscribeBody = 1 << 20

// Harden wraps a mochi listener with [IdleTimeout], the pre-authentication
// bounds of [HardenConfig] at their defaults, and a packet guard. Use it (or
// [HardenWith]) for every listener that accepts untrusted clients.
//
// The packet guard reads the inbound MQTT stream of each connection in front
// of mochi and closes the connection, before mochi decodes the packet, when
// it sends an MQTT v5 SUBSCRIBE whose last topic filter lacks its
// subscription options byte: mochi v2.7.9's decoder indexes past the end of
// such a packet and the panic ends the whole broker process, so any
// authenticated client could stop the broker. The guard frames packets
// without copying them (only SUBSCRIBE bodies of v5 connections, up to
// 1 MiB, are buffered) and adds no work per PUBLISH beyond reading its fixed
// header.
func Harden(l listeners.Listener, connectTimeout time.Duration) listeners.Listener {
	return HardenWith(l, HardenConfig{ConnectTimeout: connectTimeout})
}

// HardenNet is [Harden] for a net.Listener, for use with mochi's
// listeners.NewNet.
func HardenNet(l net.Listener, connectTimeout time.Duration) net.Listener {
	return HardenNetWith(l, HardenConfig{ConnectTimeout: connectTimeout})
}

// The defaults of [HardenConfig].
const (
	// DefaultMaxConnectSize is the largest CONNECT packet accepted by
	// default: room for a long token, a certificate-sized password and a
	// will message of up to about 60 KiB.
	DefaultMaxConnectSize = 64 << 10
	// DefaultMaxPending is the default number of connections of one
	// listener that may be between accept and CONNACK at once.
	DefaultMaxPending = 1024
	// DefaultMaxPendingPerIP is the default number of those per remote IP.
	DefaultMaxPendingPerIP = 32
	// DefaultWriteTimeout is the default time a write to a client may
	// block.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultInboundBudget is the default of [HardenConfig.InboundBudget].
	DefaultInboundBudget = 64 << 20
	// DefaultPacketTimeout is the default of [HardenConfig.PacketTimeout].
	DefaultPacketTimeout = time.Minute
)

// HardenConfig bounds what a connection may cost before it is
// authenticated: mochi v2.7.9 reads a CONNECT of any size its header claims
// (up to the packet size limit of authenticated clients) and accepts any
// number of connections that never finish their CONNECT. A connection is
// pending from accept until the broker writes its first packet (the
// CONNACK) or the connection closes. The zero value is the default of every
// field.
//
// Worst case before authentication, per listener: MaxPending × (MaxConnectSize
// + the TLS and socket buffers of a connection, about 40 KiB), about 104 MiB
// with the defaults, held for at most twice ConnectTimeout.
type HardenConfig struct {
	// ConnectTimeout is the time a new connection has to complete its TLS
	// handshake and send CONNECT; once CONNECT is in, the deadline moves to
	// twice ConnectTimeout from then, for authentication and the CONNACK
	// (keep the hook's connect timeout, [WithConnectTimeout], below that).
	// Zero means [DefaultConnectTimeout].
	ConnectTimeout time.Duration
	// MaxConnectSize is the largest CONNECT (remaining length) accepted:
	// a larger one closes the connection before mochi allocates it. Zero
	// means [DefaultMaxConnectSize].
	MaxConnectSize int
	// MaxPending is the most pending connections of the listener: more are
	// closed at once. Zero means [DefaultMaxPending]; negative means no
	// limit.
	MaxPending int
	// MaxPendingPerIP is the most pending connections from one remote IP.
	// Zero means [DefaultMaxPendingPerIP]; negative means no limit.
	MaxPendingPerIP int
	// WriteTimeout is the longest a write to a client may block (its
	// socket buffers are full: it does not read) before the connection is
	// closed, at any time of the connection. mochi v2.7.9 writes while
	// holding the client's lock, which a publisher needs to send the client
	// a QoS 1 or 2 message: without a bound, a subscriber that stops
	// reading stalls every publisher of its topics until its keep-alive
	// runs out (forever with a keep-alive of zero). The hook's
	// [Limits.WriteStall] acts earlier. Zero means [DefaultWriteTimeout];
	// negative means no limit.
	WriteTimeout time.Duration
	// InboundBudget bounds the bytes of the large packets (16 KiB or more)
	// the listener's clients are sending at once: mochi v2.7.9 allocates
	// a packet's whole claimed size as soon as its header is in, so a
	// client that trickles the rest holds that memory — with many
	// connections, a multiple of the packet size limit. A packet that
	// does not fit waits (its header is not passed on to mochi) until
	// others are in, and its connection is closed if it waits longer than
	// PacketTimeout. Zero means [DefaultInboundBudget]; negative means no
	// limit.
	InboundBudget int64
	// PacketTimeout bounds the time an authenticated client may take to
	// send one packet, from its first byte to its last: the connection is
	// closed after it. Zero means [DefaultPacketTimeout]; negative means
	// no limit (the keep-alive still applies).
	PacketTimeout time.Duration
}

func (c HardenConfig) withDefaults() HardenConfig {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxConnectSize <= 0 {
		c.MaxConnectSize = DefaultMaxConnectSize
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxPendingPerIP == 0 {
		c.MaxPendingPerIP = DefaultMaxPendingPerIP
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.InboundBudget == 0 {
		c.InboundBudget = DefaultInboundBudget
	}
	if c.PacketTimeout == 0 {
		c.PacketTimeout = DefaultPacketTimeout
	}
	return c
}

// HardenWith is [Harden] with explicit bounds.
func HardenWith(l listeners.Listener, c HardenConfig) listeners.Listener {
	c = c.withDefaults()
	return &idleListener{Listener: l, d: c.ConnectTimeout, guard: true, cfg: c, pend: newPending(c), in: newInbound(c)}
}

// HardenNetWith is [HardenNet] with explicit bounds.
func HardenNetWith(l net.Listener, c HardenConfig) net.Listener {
	c = c.withDefaults()
	return &idleNetListener{Listener: l, d: c.ConnectTimeout, guard: true, cfg: c, pend: newPending(c), in: newInbound(c)}
}

// pending counts the connections of a listener that have not been
// answered yet, in all and per remote IP.
type pending struct {
	max, maxIP int
	mu         sync.Mutex
	total      int
	perIP      map[string]int
}

func newPending(c HardenConfig) *pending {
	return &pending{max: c.MaxPending, maxIP: c.MaxPendingPerIP, perIP: make(map[string]int)}
}

func (p *pending) acquire(ip string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if (p.max > 0 && p.total >= p.max) || (p.maxIP > 0 && p.perIP[ip] >= p.maxIP) {
		return false
	}
	p.total++
	p.perIP[ip]++
	return true
}

func (p *pending) release(ip string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total--
	if n := p.perIP[ip] - 1; n > 0 {
		p.perIP[ip] = n
	} else {
		delete(p.perIP, ip)
	}
}

// Pending returns the number of connections of a listener returned by
// [HardenWith] or [HardenNetWith] that have not been answered yet; 0 for
// any other listener.
func Pending(l any) int {
	var p *pending
	switch v := l.(type) {
	case *idleListener:
		p = v.pend
	case *idleNetListener:
		p = v.pend
	}
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// ErrConnectTooLarge is the read error of a connection closed by [Harden]
// because its CONNECT is larger than [HardenConfig.MaxConnectSize].
var ErrConnectTooLarge = errors.New("mochi: CONNECT larger than the pre-authentication limit")

// wrap makes c a guarded connection, or returns nil when the listener's
// pending bounds are reached (c is then closed).
func wrap(c net.Conn, cfg HardenConfig, pend *pending, in *inbound) net.Conn {
	ip := remoteIP(c)
	if !pend.acquire(ip) {
		_ = c.Close()
		return nil
	}
	g := &guardConn{Conn: c, timeout: cfg.ConnectTimeout, writeTimeout: max(cfg.WriteTimeout, 0),
		packetTimeout: max(cfg.PacketTimeout, 0)}
	g.sc.maxConnect = cfg.MaxConnectSize
	g.sc.in = in
	g.done = func() { pend.release(ip) }
	return g
}

// inbound is a listener's budget of bytes of large packets being received.
type inbound struct {
	max  int64 // -1: no limit
	used atomic.Int64
}

// reserveMin is the packet size from which a packet takes its bytes from
// the inbound budget: smaller ones cost less than the buffers every
// connection has anyway.
const reserveMin = 16 << 10

func newInbound(c HardenConfig) *inbound { return &inbound{max: c.InboundBudget} }

// take reserves n bytes, if they fit.
func (in *inbound) take(n int64) bool {
	if in == nil || in.max < 0 {
		return true
	}
	for {
		u := in.used.Load()
		if u+n > in.max {
			return false
		}
		if in.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (in *inbound) give(n int64) {
	if in != nil && in.max >= 0 && n > 0 {
		in.used.Add(-n)
	}
}

// ErrInboundBudget is the read error of a connection closed by [Harden]
// because a packet it started waited longer than
// [HardenConfig.PacketTimeout] for room in the listener's inbound budget,
// or took longer than that to arrive.
var ErrInboundBudget = errors.New("mochi: packet not received in time")

func remoteIP(c net.Conn) string {
	a := c.RemoteAddr()
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// guardConn is a net.Conn whose reads pass through a packet scanner, which
// counts as pending until its first write (the CONNACK) or close, and
// whose writes are bounded in time.
type guardConn struct {
	net.Conn
	sc           scanner
	err          error
	timeout      time.Duration
	writeTimeout time.Duration
	writeStart   atomic.Int64 // unix nanoseconds of the write in progress, 0 when none
	wmu          sync.Mutex   // orders the write deadline's changes
	done         func()
	once         sync.Once
	answer       atomic.Bool
	closing      atomic.Bool // Close was called: the connection only drains

	packetTimeout time.Duration
	rmu           sync.Mutex // guards the read deadlines below
	want          time.Time  // the read deadline mochi asked for
	pktDeadline   time.Time  // when the packet being received must be in; zero when none
	inPacket      bool       // a packet is being received; read and written by Read only
}

// NetConn returns the wrapped connection.
func (c *guardConn) NetConn() net.Conn { return c.Conn }

func (c *guardConn) Read(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.closing.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	if c.closing.Load() {
		return 0, net.ErrClosed // what arrives now is drained, not read
	}
	if n > 0 {
		connect := c.sc.version != 0
		serr := c.sc.feed(b[:n])
		if errors.Is(serr, errNoBudget) {
			serr = c.waitBudget(b[:n])
		}
		if serr != nil {
			c.err = serr
			_ = c.Close()
			return 0, serr
		}
		if !connect && c.sc.version != 0 && c.timeout > 0 && !c.answer.Load() {
			// CONNECT is in: leave time to authenticate and answer it.
			_ = c.Conn.SetDeadline(time.Now().Add(2 * c.timeout))
		}
		if c.answer.Load() && c.packetTimeout > 0 {
			c.packetDeadline(c.sc.state != 0)
		}
	}
	return n, err
}

// waitBudget waits, before the bytes b are passed on to mochi, for room in
// the inbound budget for the packet whose header they hold, then feeds the
// rest of them. It gives up after the packet timeout.
func (c *guardConn) waitBudget(b []byte) error {
	limit := c.packetTimeout
	if limit <= 0 {
		limit = DefaultPacketTimeout
	}
	deadline := time.Now().Add(limit)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if c.closing.Load() {
			return net.ErrClosed
		}
		if time.Now().After(deadline) {
			return ErrInboundBudget
		}
		time.Sleep(wait)
		err := c.sc.resume()
		if !errors.Is(err, errNoBudget) {
			return err
		}
	}
}

// packetDeadline keeps the read deadline at the earlier of mochi's and
// the end of the packet being received (inPacket: a packet has begun and
// is not complete).
func (c *guardConn) packetDeadline(inPacket bool) {
	if inPacket == c.inPacket {
		return // the common case: no lock, no deadline change
	}
	c.inPacket = inPacket
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if inPacket {
		c.pktDeadline = time.Now().Add(c.packetTimeout)
	} else {
		c.pktDeadline = time.Time{}
	}
	c.applyRead()
}

// applyRead sets the read deadline to the earlier of mochi's and the
// packet's. The caller holds c.rmu.
func (c *guardConn) applyRead() {
	d := c.want
	if !c.pktDeadline.IsZero() && (d.IsZero() || c.pktDeadline.Before(d)) {
		d = c.pktDeadline
	}
	_ = c.Conn.SetReadDeadline(d)
}

func (c *guardConn) Write(b []byte) (int, error) {
	if c.closing.Load() {
		return 0, net.ErrClosed
	}
	if !c.answer.Load() {
		c.answer.Store(true)
		c.release()
	}
	c.wmu.Lock()
	now := time.Now()
	c.writeStart.Store(now.UnixNano())
	if c.writeTimeout > 0 {
		_ = c.Conn.SetWriteDeadline(now.Add(c.writeTimeout))
	}
	c.wmu.Unlock()
	n, err := c.Conn.Write(b)
	c.wmu.Lock()
	c.writeStart.Store(0)
	if c.writeTimeout > 0 {
		// No deadline between writes: a TLS read may write (a key update).
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
	c.wmu.Unlock()
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		_ = c.Close() // a partial packet was written: the stream is broken
	}
	return n, err
}

// SetDeadline sets the read deadline only when writes have their own
// bound: mochi refreshes the deadline with the client's keep-alive, which
// would extend a write blocked on a client that pings but does not read.
func (c *guardConn) SetDeadline(t time.Time) error {
	if c.closing.Load() {
		return nil // the drain's deadline stands (mochi refreshes it after each packet)
	}
	if c.writeTimeout <= 0 {
		_ = c.Conn.SetWriteDeadline(t)
	}
	return c.SetReadDeadline(t)
}

// SetReadDeadline sets the read deadline, no later than the end of a packet
// being received (see [HardenConfig.PacketTimeout]), and not while the
// connection drains after Close.
func (c *guardConn) SetReadDeadline(t time.Time) error {
	if c.closing.Load() {
		return nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.want = t
	c.applyRead()
	return nil
}

// writing returns how long the write in progress has been blocked, or -1.
func (c *guardConn) writing() time.Duration {
	s := c.writeStart.Load()
	if s == 0 {
		return -1
	}
	return time.Duration(time.Now().UnixNano() - s)
}

// hurry makes the write in progress, if any, fail (and close the
// connection) unless it completes within d of its start: someone waits
// for it.
func (c *guardConn) hurry(d time.Duration) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if s := c.writeStart.Load(); s != 0 {
		_ = c.Conn.SetWriteDeadline(time.Unix(0, s).Add(d))
	}
}

// lingerTime bounds how long a connection the broker closed keeps draining
// what the client still sends: closing a socket with unread data resets it,
// and a reset makes the client's system discard what it had not read yet —
// the DISCONNECT that says why (0x96 to a flooder, say).
const lingerTime = 500 * time.Millisecond

// Close shuts the sending side (after what was written, the DISCONNECT
// included), then drains and closes the connection within lingerTime in
// the background. Reads and writes fail from now on.
func (c *guardConn) Close() error {
	c.release()
	c.sc.giveBack()
	if !c.closing.CompareAndSwap(false, true) {
		return nil
	}
	if closeWrite(c.Conn) != nil {
		return c.Conn.Close()
	}
	deadline := time.Now().Add(lingerTime)
	go func() {
		var buf [512]byte
		// The deadline is set again before each read: a reader that was
		// already past its check may still refresh it once.
		for time.Now().Before(deadline) {
			_ = c.Conn.SetReadDeadline(deadline)
			if _, err := c.Conn.Read(buf[:]); err != nil {
				break
			}
		}
		_ = c.Conn.Close()
	}()
	return nil
}

// closeWrite shuts the sending side of c: a TLS close_notify, then the
// TCP FIN.
func closeWrite(c net.Conn) error {
	for range 8 {
		switch v := c.(type) {
		case *tls.Conn:
			_ = v.CloseWrite()
			c = v.NetConn()
		case interface{ CloseWrite() error }:
			return v.CloseWrite()
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return errors.ErrUnsupported
		}
	}
	return errors.ErrUnsupported
}

func (c *guardConn) release() {
	if c.done != nil {
		c.once.Do(c.done)
	}
}

// scanner frames an inbound MQTT byte stream.
type scanner struct {
	maxConnect int // largest first CONNECT, 0 for no limit
	in         *inbound
	reserved   atomic.Int64 // bytes of the packet being received, taken from in
	// rest holds the bytes of a Read not fed yet because the packet whose
	// header they hold waits for room in the inbound budget.
	rest    []byte
	state   uint8 // 0 fixed header, 1 remaining length, 2 body
	typ     byte
	lenVal  int
	lenMul  int
	lenN    int
	remain  int
	collect bool
	buf     []byte
	version byte // protocol level from CONNECT, 0 before
}

const (
	pktConnect   = 1
	pktSubscribe = 8
)

func (s *scanner) feed(b []byte) error {
	for len(b) > 0 {
		switch s.state {
		case 0:
			s.typ = b[0] >> 4
			s.lenVal, s.lenMul, s.lenN = 0, 1, 0
			s.state = 1
			b = b[1:]
		case 1:
			d := b[0]
			b = b[1:]
			s.lenVal += int(d&0x7f) * s.lenMul
			s.lenMul *= 128
			s.lenN++
			if d&0x80 != 0 {
				if s.lenN == 4 {
					return ErrMalformedPacket
				}
				continue
			}
			s.remain = s.lenVal
			if s.typ == pktConnect && s.version == 0 && s.maxConnect > 0 && s.remain > s.maxConnect {
				return ErrConnectTooLarge
			}
			if s.remain >= reserveMin && s.in != nil {
				if !s.in.take(int64(s.remain)) {
					s.state = 3 // waits for the budget, see resume
					s.rest = b
					return errNoBudget
				}
				s.reserved.Store(int64(s.remain))
			}
			s.collect = (s.typ == pktConnect && s.version == 0) || (s.typ == pktSubscribe && s.version == 5)
			if s.collect && s.typ == pktSubscribe && s.remain > maxSubscribeBody {
				return ErrMalformedPacket
			}
			s.buf = s.buf[:0]
			s.state = 2
			if s.remain == 0 {
				if err := s.done(); err != nil {
					return err
				}
			}
		case 2:
			k := min(s.remain, len(b))
			if s.collect {
				if s.typ == pktConnect {
					// The protocol level is within the first bytes.
					s.buf = append(s.buf, b[:min(k, max(0, 64-len(s.buf)))]...)
				} else {
					s.buf = append(s.buf, b[:k]...)
				}
			}
			s.remain -= k
			b = b[k:]
			if s.remain == 0 {
				if err := s.done(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// errNoBudget says that the packet whose header was just read waits for
// room in the inbound budget: feed stopped, resume goes on.
var errNoBudget = errors.New("mochi: inbound budget full")

// resume tries again to take the budget for the packet feed stopped at,
// then feeds the rest of the bytes.
func (s *scanner) resume() error {
	if !s.in.take(int64(s.remain)) {
		return errNoBudget
	}
	s.reserved.Store(int64(s.remain))
	rest := s.rest
	s.rest = nil
	s.state = 2
	if s.remain == 0 {
		if err := s.done(); err != nil {
			return err
		}
	}
	return s.feed(rest)
}

// giveBack returns the budget of a packet that will not complete.
func (s *scanner) giveBack() {
	s.in.give(s.reserved.Swap(0))
}

// done ends a packet whose body has been read.
func (s *scanner) done() error {
	s.state = 0
	s.giveBack()
	if !s.collect {
		return nil
	}
	switch s.typ {
	case pktConnect:
		// Where the level is out of reach, check SUBSCRIBE packets as v5
		// (mochi refuses such a CONNECT anyway).
		s.version = 5
		if len(s.buf) >= 2 {
			if i := 2 + (int(s.buf[0])<<8 | int(s.buf[1])); i < len(s.buf) {
				s.version = s.buf[i]
			}
		}
		if s.version == 0 {
			s.version = 5
		}
	case pktSubscribe:
		if !subscribeV5OK(s.buf) {
			return ErrMalformedPacket
		}
	}
	if cap(s.buf) > 4096 {
		s.buf = nil
	}
	return nil
}

// subscribeV5OK reports whether mochi v2.7.9 can decode an MQTT v5
// SUBSCRIBE body without panicking. It follows mochi's decoder: where that
// returns an error, the body is left to it.
func subscribeV5OK(b []byte) bool {
	if len(b) < 2 {
		return true
	}
	off := 2
	// Properties: a variable byte integer length, then that many bytes,
	// decoded as mochi's DecodeLength does (any number of continuation
	// bytes, shifts past 32 bits yield zero).
	var l uint32
	var shift uint
	n := 0
	for {
		if off+n >= len(b) {
			return true // mochi fails to decode the length
		}
		d := b[off+n]
		n++
		l |= uint32(d&0x7f) << shift
		if l > 268435455 {
			return true
		}
		if d&0x80 == 0 {
			break
		}
		shift += 7
	}
	off += n + int(l)
	if off > len(b) {
		return true // mochi fails to decode the properties
	}
	for off < len(b) {
		if off+2 > len(b) {
			return true // mochi: malformed topic
		}
		sl := int(b[off])<<8 | int(b[off+1])
		if off+2+sl > len(b) {
			return true // mochi: malformed topic
		}
		if f := b[off+2 : off+2+sl]; !utf8.Valid(f) || bytes.IndexByte(f, 0) >= 0 {
			return true // mochi: invalid UTF-8
		}
		off += 2 + sl
		if off >= len(b) {
			return false // no options byte: mochi indexes past the end
		}
		if b[off]&3 > 2 {
			return true // mochi: QoS out of range
		}
		off++
	}
	return true
}
