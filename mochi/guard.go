package mochi

import (
	"bytes"
	"errors"
	"net"
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

// Harden wraps a mochi listener with [IdleTimeout] and a packet guard.
// Use it for every listener that accepts untrusted clients.
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
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	return &idleListener{Listener: l, d: connectTimeout, guard: true}
}

// HardenNet is [Harden] for a net.Listener, for use with mochi's
// listeners.NewNet.
func HardenNet(l net.Listener, connectTimeout time.Duration) net.Listener {
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	return &idleNetListener{Listener: l, d: connectTimeout, guard: true}
}

// guardConn is a net.Conn whose reads pass through a packet scanner.
type guardConn struct {
	net.Conn
	sc  scanner
	err error
}

// NetConn returns the wrapped connection.
func (c *guardConn) NetConn() net.Conn { return c.Conn }

func (c *guardConn) Read(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		if serr := c.sc.feed(b[:n]); serr != nil {
			c.err = serr
			_ = c.Conn.Close()
			return 0, serr
		}
	}
	return n, err
}

// scanner frames an inbound MQTT byte stream.
type scanner struct {
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

// done ends a packet whose body has been read.
func (s *scanner) done() error {
	s.state = 0
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
