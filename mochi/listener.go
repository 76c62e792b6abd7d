package mochi

import (
	"errors"
	"net"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultConnectTimeout is the time [IdleTimeout] gives a new connection to
// complete its TLS handshake and send CONNECT when no duration is given.
const DefaultConnectTimeout = 10 * time.Second

// IdleTimeout wraps a mochi listener so that a connection which does not
// complete its TLS handshake and CONNECT within d is closed. mochi v2.7.9 sets
// no read deadline before CONNECT, so without it an idle socket is held open
// forever (a cheap denial of service). d <= 0 means [DefaultConnectTimeout].
//
// The wrapper sets a deadline on each accepted connection; mochi replaces it
// with the keep-alive deadline once it has read the CONNECT, so established
// connections are not affected.
//
// The returned listener is safe for concurrent use as far as l is.
func IdleTimeout(l listeners.Listener, d time.Duration) listeners.Listener {
	if d <= 0 {
		d = DefaultConnectTimeout
	}
	return &idleListener{Listener: l, d: d}
}

type idleListener struct {
	listeners.Listener
	d     time.Duration
	guard bool
	cfg   HardenConfig
	pend  *pending
	in    *inbound
}

// Serve passes each connection to establish with a deadline set. A CONNECT
// the hook refused is not returned as an error: mochi's listener would log
// it again, with an empty message, after the Guard's event.
func (l *idleListener) Serve(establish listeners.EstablishFn) {
	l.Listener.Serve(func(id string, c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(l.d))
		if l.guard {
			if c = wrap(c, l.cfg, l.pend, l.in); c == nil {
				return nil // over the pending bounds: closed
			}
		}
		err := establish(id, c)
		if errors.As(err, new(connectDenied)) {
			return nil
		}
		return err
	})
}

// IdleNetListener wraps a net.Listener the same way as [IdleTimeout], for use
// with mochi's listeners.NewNet. d <= 0 means [DefaultConnectTimeout].
func IdleNetListener(l net.Listener, d time.Duration) net.Listener {
	if d <= 0 {
		d = DefaultConnectTimeout
	}
	return &idleNetListener{Listener: l, d: d}
}

type idleNetListener struct {
	net.Listener
	d     time.Duration
	guard bool
	cfg   HardenConfig
	pend  *pending
	in    *inbound
}

// Accept returns the next connection with a deadline set; connections over
// the pending bounds are closed and skipped.
func (l *idleNetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		_ = c.SetDeadline(time.Now().Add(l.d))
		if !l.guard {
			return c, nil
		}
		if g := wrap(c, l.cfg, l.pend, l.in); g != nil {
			return g, nil
		}
	}
}
