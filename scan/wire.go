package scan

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// errPacketTooLarge is returned when the broker announces a packet larger
// than Options.MaxPacketSize: the scanner never allocates what a hostile
// broker claims.
var errPacketTooLarge = errors.New("scan: broker sent a packet larger than the scanner's limit")

// limitConn frames the inbound MQTT stream and fails the connection when a
// packet's remaining length exceeds max, before any reader allocates it
// (paho's reader allocates the claimed length up front). It is used by one
// reader at a time; writes pass through.
type limitConn struct {
	net.Conn
	max int

	mu    sync.Mutex
	state uint8 // 0 fixed header, 1 remaining length, 2 body
	n     int   // remaining length being decoded, or body bytes left
	mul   int
	digit int
	err   error
}

func newLimitConn(c net.Conn, max int) *limitConn { return &limitConn{Conn: c, max: max} }

func (c *limitConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	if ferr := c.frame(p[:n]); ferr != nil {
		c.err = ferr
		_ = c.Conn.Close()
		return 0, ferr
	}
	return n, err
}

// frame advances the framing state over b.
func (c *limitConn) frame(b []byte) error {
	for i := 0; i < len(b); {
		switch c.state {
		case 0:
			c.state, c.n, c.mul, c.digit = 1, 0, 1, 0
			i++
		case 1:
			d := b[i]
			i++
			c.n += int(d&0x7f) * c.mul
			c.mul *= 128
			c.digit++
			if d&0x80 != 0 {
				if c.digit == 4 {
					return fmt.Errorf("%w: malformed remaining length", errPacketTooLarge)
				}
				continue
			}
			if c.n > c.max {
				return fmt.Errorf("%w (%d > %d bytes)", errPacketTooLarge, c.n, c.max)
			}
			c.state = 2
			if c.n == 0 {
				c.state = 0
			}
		case 2:
			k := min(c.n, len(b)-i)
			c.n -= k
			i += k
			if c.n == 0 {
				c.state = 0
			}
		}
	}
	return nil
}

// appendString appends an MQTT UTF-8 string or binary data (two-byte
// length, then the bytes).
func appendString(b []byte, s string) []byte {
	b = append(b, byte(len(s)>>8), byte(len(s)))
	return append(b, s...)
}

// appendPacket appends a packet with the fixed header byte h and body.
func appendPacket(b []byte, h byte, body []byte) []byte {
	b = append(b, h)
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}
