package minibroker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttsec/mqttsec"
)

// ErrClosed is returned by [Broker.Serve] after [Broker.Close].
var ErrClosed = errors.New("minibroker: broker closed")

// Options configures a [Broker]. Every zero field has a bounded default.
type Options struct {
	// Listener names the listener in [mqttsec.Client.Listener].
	Listener string
	// MaxPacketSize is the largest packet accepted from a client, in
	// bytes, CONNECT included; a larger one ends the connection (v5:
	// DISCONNECT 0x95). It is announced to v5 clients. Default 256 KiB.
	MaxPacketSize int
	// ConnectTimeout bounds the time from accepting a connection to a
	// complete CONNECT, and the time [mqttsec.Guard.Connect] may take.
	// Default 10 s.
	ConnectTimeout time.Duration
	// WriteTimeout bounds each write to a client. Default 10 s.
	WriteTimeout time.Duration
	// MaxKeepAlive is the longest keep alive a client gets; a v5 client
	// asking for more (or for none) is told this one, a v3 client is
	// disconnected after 1.5 times it without a packet. Default 5 min.
	MaxKeepAlive time.Duration
	// MaxSessionExpiry is the longest a session is kept after its
	// connection ends; a v3 client without clean session has its session
	// kept this long. Default 1 h.
	MaxSessionExpiry time.Duration
	// MaxQueue is the number of messages a session holds for delivery
	// (queued and in flight); further messages for it are dropped.
	// Default 1000.
	MaxQueue int
	// MaxInflight is the number of unacknowledged QoS 1 messages sent to a
	// client, and the receive maximum announced to v5 clients. Default 32.
	MaxInflight int
	// MaxSubscriptions is the number of filters one session may hold.
	// Default 100.
	MaxSubscriptions int
	// MaxRetained is the number of retained messages kept. Default 10000.
	MaxRetained int
	// MaxSessions is the number of sessions, live or kept. Default 10000.
	MaxSessions int
	// MaxConnections is the number of open sockets, before and after
	// CONNECT. Default 1000.
	MaxConnections int
	// Logger receives protocol problems (never credentials). Security
	// events go to the Guard's event sink. Nil discards.
	Logger *slog.Logger
}

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.MaxPacketSize, 256<<10)
	o.MaxPacketSize = min(o.MaxPacketSize, maxRemaining+5)
	defd(&o.ConnectTimeout, 10*time.Second)
	defd(&o.WriteTimeout, 10*time.Second)
	defd(&o.MaxKeepAlive, 5*time.Minute)
	o.MaxKeepAlive = min(o.MaxKeepAlive, 65535*time.Second)
	defd(&o.MaxSessionExpiry, time.Hour)
	o.MaxSessionExpiry = min(o.MaxSessionExpiry, 0xFFFFFFFE*time.Second)
	def(&o.MaxQueue, 1000)
	def(&o.MaxInflight, 32)
	o.MaxInflight = min(o.MaxInflight, 65535)
	def(&o.MaxSubscriptions, 100)
	def(&o.MaxRetained, 10000)
	def(&o.MaxSessions, 10000)
	def(&o.MaxConnections, 1000)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// keepGrace is added to the keep passed to [mqttsec.Guard.Disconnect]: the
// broker sends a will that is due when the session expires and then ends
// the session itself; the Guard's own timer must not end it first.
const keepGrace = time.Second

// Broker is a small MQTT broker whose every decision is made by a
// [mqttsec.Guard]. Create it with [New], serve listeners with
// [Broker.Serve], stop it with [Broker.Close].
//
// A Broker is safe for concurrent use.
type Broker struct {
	g      *mqttsec.Guard
	o      Options
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	// wg counts every goroutine of the broker: connection readers and
	// writers, and timer callbacks that are running.
	wg sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}         // every open socket
	live      map[*mqttsec.Session]*conn // connections past CONNECT
	sessions  map[string]*state          // MQTT sessions by client ID, live or kept
	retained  map[string]*message        // retained messages by topic
	shareNext map[string]uint32          // round-robin position per shared group
	invalid   atomic.Int64               // reason codes that failed checkCode
	dropped   atomic.Int64               // messages dropped for a full queue
}

// New returns a Broker that enforces g, and installs it as g's
// [mqttsec.Disconnector] (a Guard has one Disconnector: serve one Broker
// per Guard).
func New(g *mqttsec.Guard, o Options) *Broker {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		g: g, o: o, log: o.Logger, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		live:      map[*mqttsec.Session]*conn{},
		sessions:  map[string]*state{},
		retained:  map[string]*message{},
		shareNext: map[string]uint32{},
	}
	g.SetDisconnector(b)
	return b
}

// Serve accepts connections on ln until ln fails or the broker is closed;
// it then returns ErrClosed (after Close) or the accept error. Serve may
// be called for several listeners; Close closes them all.
func (b *Broker) Serve(ln net.Listener) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	b.listeners[ln] = struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.listeners, ln)
		b.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			b.mu.Lock()
			closed := b.closed
			b.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		b.accept(nc)
	}
}

func (b *Broker) accept(nc net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.conns) >= b.o.MaxConnections {
		_ = nc.Close()
		return
	}
	c := newConn(b, nc)
	b.conns[c] = struct{}{}
	b.wg.Add(1)
	go c.serve()
}

// Close stops the broker: it closes every listener, sends v5 clients a
// DISCONNECT 0x8B (server shutting down), closes every connection, ends
// every session with the Guard (wills are not sent) and waits for all of
// the broker's goroutines to return. It is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.wg.Wait()
		return nil
	}
	b.closed = true
	for ln := range b.listeners {
		_ = ln.Close()
	}
	for c := range b.conns {
		_ = c.nc.SetDeadline(time.Now().Add(time.Second))
		if c.gs != nil {
			c.kick(mqttsec.CodeServerShuttingDown)
		} else {
			_ = c.nc.Close()
		}
	}
	var kept []*mqttsec.Session
	for _, st := range b.sessions {
		if st.conn == nil {
			kept = append(kept, st.gs)
		}
		st.discard()
	}
	clear(b.sessions)
	clear(b.retained)
	b.mu.Unlock()
	b.cancel()
	for _, gs := range kept {
		b.g.Disconnect(gs, 0)
	}
	b.wg.Wait()
	return nil
}

// Reason codes of the protocol itself, which the mqttsec package does not
// name (its codes are the answers of security decisions).
const (
	codePacketIDNotFound      byte = 0x92
	codeNoSubscriptionExisted byte = 0x11
)

// Disconnect implements [mqttsec.Disconnector]: the connection of s gets a
// DISCONNECT with code.ForDisconnect() (v5) and is closed; a session the
// broker keeps for s after its connection ended is discarded with its
// subscriptions, queued messages and delayed will. It does not block.
func (b *Broker) Disconnect(s *mqttsec.Session, code mqttsec.ReasonCode) {
	if s == nil {
		return
	}
	b.mu.Lock()
	if c := b.live[s]; c != nil {
		c.kick(code.ForDisconnect())
		b.mu.Unlock()
		return
	}
	st := b.sessions[s.Client().ID]
	if st == nil || st.gs != s || st.conn != nil {
		b.mu.Unlock()
		return
	}
	b.removeLocked(st)
	b.mu.Unlock()
	b.g.Disconnect(s, 0)
}

// removeLocked discards a session. The caller holds b.mu.
func (b *Broker) removeLocked(st *state) {
	if b.sessions[st.id] == st {
		delete(b.sessions, st.id)
	}
	st.discard()
}

// afterFunc runs f after d on a goroutine the broker waits for at Close;
// f does not run once the broker is closed.
func (b *Broker) afterFunc(d time.Duration, f func()) *time.Timer {
	return time.AfterFunc(d, func() {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		b.wg.Add(1)
		b.mu.Unlock()
		defer b.wg.Done()
		f()
	})
}

// checkCode is the last step before a reason code goes on the wire: a code
// the packet may not carry (a mapping bug) is counted, logged and replaced
// by 0x80 (v3 CONNACK: 0x05), which every such packet may carry.
func (b *Broker) checkCode(version, typ, code byte) byte {
	if ValidCode(version, typ, code) {
		return code
	}
	b.invalid.Add(1)
	b.log.Error("minibroker: reason code not valid for packet; sent 0x80 instead",
		"packet", typ, "code", code, "protocol", version)
	if version != v5 && typ == packets.CONNACK {
		return mqttsec.V3NotAuthorized
	}
	return byte(mqttsec.CodeUnspecified)
}

// Stats are counters of a Broker.
type Stats struct {
	// InvalidCodes counts reason codes that were not valid for their
	// packet and were replaced before sending: always 0 unless a mapping
	// is wrong.
	InvalidCodes int64
	// Dropped counts messages dropped because a session's queue was full
	// or a client's maximum packet size was too small.
	Dropped int64
	// Connections, Sessions and Retained are the current counts.
	Connections, Sessions, Retained int
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Stats{InvalidCodes: b.invalid.Load(), Dropped: b.dropped.Load(),
		Connections: len(b.conns), Sessions: len(b.sessions), Retained: len(b.retained)}
}

var _ mqttsec.Disconnector = (*Broker)(nil)
