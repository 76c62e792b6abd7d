package bridge

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// Local says how a bridge reaches its local broker: by URL, as any MQTT
// client, or through Dial (an in-process broker's listener, a Unix socket).
// The local side is MQTT v5 as well.
type Local struct {
	// URL is the local broker: "mqtt://127.0.0.1:1883", "mqtts://...",
	// "ws://..." or "wss://...". Plaintext is accepted on a loopback host;
	// to another host it needs InsecurePlaintext. With Dial set, URL is
	// optional and only names the broker in events.
	URL string
	// TLS configures mqtts:// and wss://. Nil means the secure defaults of
	// [tlsconf] with the system roots.
	TLS *tls.Config
	// Username and Password authenticate the bridge to the local broker.
	Username string
	Password []byte
	// Dial, when set, opens every connection to the local broker:
	// [Pipe.DialContext] for an in-process broker, a Unix socket, ...
	Dial func(ctx context.Context) (net.Conn, error)
	// InsecurePlaintext allows a plaintext URL to a non-loopback host.
	InsecurePlaintext bool
}

// String describes the local side without its password.
func (l Local) String() string {
	to := l.URL
	if to == "" && l.Dial != nil {
		to = "a custom dialer"
	}
	return fmt.Sprintf("local broker %s as user %q", redactURL(to), l.Username)
}

// GoString is String: %#v must not print the password either.
func (l Local) GoString() string { return l.String() }

// Option configures [Start].
type Option func(*options)

type options struct {
	events mqttsec.EventSink
	logger *slog.Logger
}

// WithEvents sends the bridge's events to s: [mqttsec.EventConnected] and
// [mqttsec.EventDisconnected] for each side, [mqttsec.EventPublishDenied]
// for a message the destination refused, [mqttsec.EventSubscribeDenied] for
// a refused subscription and [mqttsec.EventError] for failed connection
// attempts. Source is "bridge/NAME/local" or
// "bridge/NAME/remote". The default is [mqttsec.SlogSink] of the logger.
func WithEvents(s mqttsec.EventSink) Option { return func(o *options) { o.events = s } }

// WithLogger sets the logger of the default event sink. Nil means
// slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Bridge is a running bridge between a local and a remote broker. It
// reconnects to each side on its own until [Bridge.Close] or the context
// given to [Start] ends.
//
// A Bridge is safe for concurrent use.
type Bridge struct {
	cfg    Config
	events mqttsec.EventSink

	ctx    context.Context
	cancel context.CancelFunc
	stopMu sync.Mutex
	stop   func() bool // unregisters the AfterFunc on Start's context
	wg     sync.WaitGroup

	local, remote *side
	out, in       *direction
	reloader      *tlsconf.Reloader

	closing   atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

// Start validates cfg and local, reads the password and the TLS files, and
// starts the bridge: it connects to both brokers in the background and
// returns at once. An invalid or insecure configuration is refused before
// any connection is attempted.
//
// The bridge runs until Close is called or ctx ends; both release every
// goroutine it started.
func Start(ctx context.Context, cfg Config, local Local, opts ...Option) (*Bridge, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.events == nil {
		o.events = mqttsec.SlogSink(o.logger)
	}
	local.Password = bytes.Clone(local.Password)
	cfg = cfg.withDefaults()
	cfg.Topics = append([]Mapping(nil), cfg.Topics...)
	b := &Bridge{cfg: cfg, events: o.events, done: make(chan struct{})}

	localDialer, err := local.dialer(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := cfg.password(); err != nil {
		return nil, err
	}
	remoteURL, _ := parseURL(cfg.Remote)
	remoteDialer := &dialer{url: remoteURL, timeout: cfg.ConnectTimeout}
	if secureScheme(remoteURL.Scheme) {
		tc := cfg.TLS
		if tc.Events == nil {
			tc.Events = o.events
		}
		r, err := tlsconf.NewReloader(tc)
		if err != nil {
			return nil, fmt.Errorf("%w: bridge %q: tls: %w", ErrInvalid, cfg.Name, err)
		}
		b.reloader = r
		remoteDialer.tls = r.Client
	}

	b.ctx, b.cancel = context.WithCancel(context.WithoutCancel(ctx))
	b.local = b.newSide("local", cfg.LocalClientID, localDialer, local.Username, func() ([]byte, error) { return local.Password, nil })
	b.remote = b.newSide("remote", cfg.ClientID, remoteDialer, cfg.Username, cfg.password)
	b.out = b.newDirection("out", b.local, b.remote, routes(cfg.Topics, true), routes(cfg.Topics, false))
	b.in = b.newDirection("in", b.remote, b.local, routes(cfg.Topics, false), routes(cfg.Topics, true))

	for _, s := range []*side{b.local, b.remote} {
		cm, err := autopaho.NewConnection(b.ctx, s.clientConfig())
		if err != nil {
			b.cancel()
			b.shutdown()
			return nil, fmt.Errorf("%w: bridge %q: %s: %w", ErrInvalid, cfg.Name, s.name, err)
		}
		s.cm = cm
	}
	for _, d := range []*direction{b.out, b.in} {
		b.wg.Add(1)
		go d.run()
	}
	b.stopMu.Lock()
	b.stop = context.AfterFunc(ctx, func() { _ = b.Close() })
	b.stopMu.Unlock()
	return b, nil
}

// Name returns the bridge's name.
func (b *Bridge) Name() string { return b.cfg.Name }

// Done is closed when the bridge has stopped (after Close, or after the
// context given to Start ended and the bridge shut down).
func (b *Bridge) Done() <-chan struct{} { return b.done }

// Close stops the bridge: it publishes "0" to the status topics while it
// still can, disconnects from both brokers (normally, so no will is sent;
// the sessions stay for SessionExpiry) and waits for every goroutine it
// started. Messages not yet acknowledged by their destination are not
// acknowledged to their source either, which redelivers them to the next
// run. Close is idempotent and returns nil.
func (b *Bridge) Close() error {
	b.closeOnce.Do(func() {
		b.stopMu.Lock()
		if b.stop != nil {
			b.stop()
		}
		b.stopMu.Unlock()
		b.closing.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var wg sync.WaitGroup
		for _, st := range []struct {
			s     *side
			topic string
		}{{b.local, b.cfg.StatusTopic}, {b.remote, b.cfg.RemoteStatusTopic}} {
			if st.topic == "" || !st.s.connected.Load() {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = st.s.cm.Publish(ctx, statusPublish(st.topic, false))
			}()
		}
		wg.Wait()
		cancel()
		b.cancel()
		b.shutdown()
	})
	<-b.done
	return nil
}

// shutdown waits for the connections and goroutines after b.ctx ended.
func (b *Bridge) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range []*side{b.local, b.remote} {
		if s != nil && s.cm != nil {
			_ = s.cm.Disconnect(ctx)
		}
	}
	b.wg.Wait()
	if b.reloader != nil {
		_ = b.reloader.Close()
	}
	close(b.done)
}

func (b *Bridge) event(e mqttsec.Event) {
	e.Time = time.Now()
	b.events.Event(e)
}

// Stats are counters of a running bridge.
type Stats struct {
	// Out counts local-to-remote messages, In remote-to-local ones.
	Out, In DirectionStats
	// Local and Remote describe the connections.
	Local, Remote SideStats
}

// DirectionStats counts the messages of one direction.
type DirectionStats struct {
	// Forwarded messages were acknowledged by the destination (QoS 1, 2)
	// or written to it (QoS 0).
	Forwarded uint64
	// Retried messages were sent again after a lost connection or an
	// unanswered publish, by the bridge or by the session's retransmission:
	// at most this many duplicates were sent.
	Retried uint64
	// Redelivered messages arrived with the DUP flag: the source sent them
	// again after a lost connection (they may have been forwarded before).
	Redelivered uint64
	// Dropped are QoS 0 messages discarded: buffer full, or lost with a
	// connection.
	Dropped uint64
	// Refused messages were refused by the destination (a reason code of
	// 0x80 or more, larger than its Maximum Packet Size, a QoS it does not
	// support). They are acknowledged to the source and not retried.
	Refused uint64
	// Expired messages outlived their Message Expiry Interval in the bridge.
	Expired uint64
	// Loops are messages that carried this bridge's loop marker or too
	// many of them.
	Loops uint64
	// Unmapped messages matched no mapping (a subscription left in a
	// resumed session by an older configuration, say): not forwarded.
	Unmapped uint64
	// Paused counts the times a QoS 1 or 2 message found the buffer full:
	// the bridge stopped reading from the source until there was room.
	Paused uint64
	// Held is the number of messages in the bridge now.
	Held int
}

// SideStats describes the connection to one broker.
type SideStats struct {
	// Connected is true while the connection is up.
	Connected bool
	// Subscribed is true once the broker granted every subscription of
	// the current connection (at once when the side has none).
	Subscribed bool
	// Connections counts the connections made.
	Connections uint64
}

// Stats returns the bridge's counters.
func (b *Bridge) Stats() Stats {
	return Stats{Out: b.out.stats(), In: b.in.stats(), Local: b.local.stats(), Remote: b.remote.stats()}
}

// password returns the remote password from its source, nil when none.
func (c Config) password() ([]byte, error) {
	switch {
	case c.PasswordFile != "":
		p, err := readPasswordFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: bridge %q: %w", ErrCredentials, c.Name, err)
		}
		return p, nil
	case c.PasswordEnv != "":
		v, ok := os.LookupEnv(c.PasswordEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: bridge %q: environment variable %s is not set", ErrCredentials, c.Name, c.PasswordEnv)
		}
		return []byte(v), nil
	case c.InsecurePassword != "":
		return []byte(c.InsecurePassword), nil
	}
	return nil, nil
}

// readPasswordFile reads a password file: a regular file, not readable or
// writable by others, of at most 65535 bytes, whose first line is the
// password.
func readPasswordFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("password file %q is not a regular file", path)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("%w: password file %q is accessible to others (mode %04o): chmod 600 it", ErrInsecure, path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 65536))
	if err != nil {
		return nil, fmt.Errorf("password file %q: %w", path, err)
	}
	if len(data) > 65535 {
		return nil, fmt.Errorf("password file %q is longer than 65535 bytes", path)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return nil, fmt.Errorf("password file %q is empty", path)
	}
	return []byte(line), nil
}

// dialer checks the local side and returns how to reach it.
func (l Local) dialer(cfg Config) (*dialer, error) {
	fail := func(kind error, format string, args ...any) error {
		return fmt.Errorf("%w: bridge %q: local: %s", kind, cfg.Name, fmt.Sprintf(format, args...))
	}
	d := &dialer{dial: l.Dial, timeout: cfg.ConnectTimeout}
	if l.Dial != nil && l.URL == "" {
		d.url = &url.URL{Scheme: "mqtt", Host: "in-process"}
		return d, nil
	}
	u, err := parseURL(l.URL)
	if err != nil {
		return nil, fail(ErrInvalid, "%v", err)
	}
	d.url = u
	if l.Dial != nil {
		return d, nil
	}
	if !secureScheme(u.Scheme) {
		if !isLoopback(u.Hostname()) && !l.InsecurePlaintext {
			return nil, fail(ErrInsecure, "%s is plaintext to host %q: use mqtts:// or wss://, or set InsecurePlaintext", u.Scheme, u.Hostname())
		}
		return d, nil
	}
	tc := l.TLS
	if tc == nil {
		if tc, err = (tlsconf.Config{}).Client(); err != nil {
			return nil, fail(ErrInvalid, "tls: %v", err)
		}
	}
	d.tls = func() *tls.Config { return tc }
	return d, nil
}

// side is the connection to one broker. It is the source of one direction
// and the destination of the other.
type side struct {
	b        *Bridge
	name     string
	clientID string
	source   string // event source
	dialer   *dialer
	username string
	password func() ([]byte, error)
	cm       *autopaho.ConnectionManager

	src, dst *direction // the directions this side feeds and receives

	gen        atomic.Uint64 // connection attempts, for purging redelivered messages
	conn       atomic.Pointer[conn]
	caps       atomic.Pointer[capabilities]
	writes     atomic.Uint64 // PUBLISH packets written
	wrote      chan struct{}
	connected  atomic.Bool
	subscribed atomic.Bool
	streak     atomic.Int32
	upSince    atomic.Int64
	conns      atomic.Uint64

	mu      sync.Mutex
	cctx    context.Context // of the current connection; nil while down
	ccancel context.CancelFunc
	// pctx is the context of publishes to this broker: it survives a
	// reconnection that resumes the session (paho then resends what was
	// not acknowledged and the publish completes) and ends with a
	// reconnection that does not (the publishes are lost and sent again).
	pctx    context.Context
	pcancel context.CancelFunc
	upWait  chan struct{}
	lastErr error
}

// capabilities are what the broker said in CONNACK.
type capabilities struct {
	maxQoS    byte
	retain    bool
	maxPacket int
}

func (b *Bridge) newSide(name, clientID string, d *dialer, user string, pass func() ([]byte, error)) *side {
	s := &side{b: b, name: name, clientID: clientID, source: "bridge/" + b.cfg.Name + "/" + name, dialer: d,
		username: user, password: pass, wrote: make(chan struct{}, 1), upWait: make(chan struct{})}
	s.caps.Store(&capabilities{maxQoS: 2, retain: true})
	return s
}

func (s *side) stats() SideStats {
	return SideStats{Connected: s.connected.Load(), Subscribed: s.connected.Load() && s.subscribed.Load(), Connections: s.conns.Load()}
}

func (s *side) clientConfig() autopaho.ClientConfig {
	cfg := s.b.cfg
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{s.dialer.url},
		KeepAlive:                     uint16(cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: cfg.CleanStart,
		SessionExpiryInterval:         uint32(cfg.SessionExpiry / time.Second),
		ReconnectBackoff:              s.backoff,
		ConnectTimeout:                cfg.ConnectTimeout,
		AttemptConnection:             s.attempt,
		OnConnectionUp:                s.up,
		OnConnectionDown:              s.down,
		OnConnectError:                s.connectError,
		ConnectPacketBuilder:          s.buildConnect,
		ClientConfig: paho.ClientConfig{
			ClientID: s.clientID,
			// paho crashes on a CONNACK with an authentication method
			// when there is no AuthHandler.
			AuthHandler:                noEnhancedAuth{},
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){s.src.receive},
			OnServerDisconnect:         s.serverDisconnect,
			OnClientError:              s.clientError,
			PacketTimeout:              cfg.ConnectTimeout,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           10 * time.Millisecond,
		},
	}
	topic := cfg.StatusTopic
	if s.name == "remote" {
		topic = cfg.RemoteStatusTopic
	}
	if topic != "" {
		cc.WillMessage = &paho.WillMessage{Topic: topic, QoS: 1, Retain: true, Payload: []byte("0")}
	}
	return cc
}

// noEnhancedAuth answers an unexpected AUTH challenge with a protocol
// error: the bridge uses no MQTT v5 enhanced authentication.
type noEnhancedAuth struct{}

func (noEnhancedAuth) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{ReasonCode: 0x18} }
func (noEnhancedAuth) Authenticated()                     {}

// backoff is the delay before connection attempt n: none for the first
// attempt after a connection that lasted, then exponential from
// ReconnectMin to ReconnectMax with jitter. Short-lived connections (a
// session taken over by a duplicate client ID, say) count as failed attempts.
func (s *side) backoff(attempt int) time.Duration {
	n := attempt + int(s.streak.Load())
	if n <= 0 {
		return 0
	}
	return jitter(backoffDelay(s.b.cfg.ReconnectMin, s.b.cfg.ReconnectMax, n))
}

// backoffDelay returns min·2^(n-1), at most max, without overflowing.
func backoffDelay(min, max time.Duration, n int) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max || d <= 0 {
		d = max
	}
	return d
}

// jitter returns a random delay between d/2 and d.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func (s *side) attempt(ctx context.Context, _ autopaho.ClientConfig, _ *url.URL) (net.Conn, error) {
	s.gen.Add(1)
	nc, err := s.dialer.dialContext(ctx)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, s.b.cfg.MaxPacketSize, s.published)
	s.conn.Store(c)
	return c, nil
}

// published is called after each PUBLISH written to this broker.
func (s *side) published() {
	s.writes.Add(1)
	select {
	case s.wrote <- struct{}{}:
	default:
	}
}

func (s *side) buildConnect(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
	pass, err := s.password()
	if err != nil {
		return nil, err
	}
	if s.username != "" {
		cp.Username, cp.UsernameFlag = s.username, true
	}
	if pass != nil {
		cp.Password, cp.PasswordFlag = pass, true
	}
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{}
	}
	rm := uint16(min(s.b.cfg.Buffer, 65535))
	mp := uint32(s.b.cfg.MaxPacketSize)
	cp.Properties.ReceiveMaximum = &rm
	cp.Properties.MaximumPacketSize = &mp
	// paho encodes the zero value as Request Problem Information 0, and
	// mochi then strips user properties from every PUBLISH it sends
	// (MQTT-3.1.2-29 keeps them on PUBLISH): the loop marker would be lost.
	cp.Properties.RequestProblemInfo = true
	return cp, nil
}

func (s *side) up(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	c := &capabilities{maxQoS: 2, retain: true}
	if p := ca.Properties; p != nil {
		if p.MaximumQoS != nil {
			c.maxQoS = *p.MaximumQoS
		}
		c.retain = p.RetainAvailable
		if p.MaximumPacketSize != nil {
			c.maxPacket = int(*p.MaximumPacketSize)
		}
	}
	s.caps.Store(c)
	s.mu.Lock()
	s.lastErr = nil
	s.cctx, s.ccancel = context.WithCancel(s.b.ctx)
	cctx := s.cctx
	if !ca.SessionPresent || s.pctx == nil {
		if s.pcancel != nil {
			s.pcancel()
		}
		s.pctx, s.pcancel = context.WithCancel(s.b.ctx)
	}
	close(s.upWait)
	s.upWait = make(chan struct{})
	s.mu.Unlock()
	s.upSince.Store(time.Now().UnixNano())
	s.conns.Add(1)
	s.subscribed.Store(len(s.src.subs) == 0)
	s.connected.Store(true)
	if ca.SessionPresent {
		// The broker resumed the session: it redelivers what the bridge
		// had not acknowledged, so older copies are dropped.
		s.src.q.purge(s.gen.Load())
	}
	s.b.event(mqttsec.Event{Kind: mqttsec.EventConnected, ClientID: s.clientID, RemoteAddr: s.dialer.url.Host, Source: s.source})
	if subs := s.src.subs; len(subs) > 0 {
		s.b.wg.Add(1)
		go s.subscribe(cm, cctx, subs)
	}
	b := s.b
	if s == b.remote {
		b.status(b.in, b.cfg.StatusTopic, true)
		b.status(b.out, b.cfg.RemoteStatusTopic, true)
	} else {
		b.status(b.in, b.cfg.StatusTopic, b.remote.connected.Load())
	}
}

func (s *side) subscribe(cm *autopaho.ConnectionManager, ctx context.Context, subs []paho.SubscribeOptions) {
	defer s.b.wg.Done()
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if sa == nil {
		if ctx.Err() == nil && err != nil {
			s.b.event(mqttsec.Event{Kind: mqttsec.EventError, ClientID: s.clientID, RemoteAddr: s.dialer.url.Host, Source: s.source,
				Err: fmt.Errorf("bridge %q: subscribe on %s: %w", s.b.cfg.Name, s.name, err)})
		}
		return
	}
	granted := len(sa.Reasons) == len(subs)
	for i, code := range sa.Reasons {
		if code >= 0x80 && i < len(subs) {
			granted = false
			s.b.event(mqttsec.Event{Kind: mqttsec.EventSubscribeDenied, ClientID: s.clientID, RemoteAddr: s.dialer.url.Host, Source: s.source,
				Topic: subs[i].Topic, Code: mqttsec.ReasonCode(code),
				Err: fmt.Errorf("bridge %q: %s broker refused the subscription to %q with 0x%02X", s.b.cfg.Name, s.name, subs[i].Topic, code)})
		}
	}
	if granted && ctx.Err() == nil {
		s.subscribed.Store(true)
	}
}

func (s *side) down() bool {
	s.connected.Store(false)
	s.mu.Lock()
	if s.ccancel != nil {
		s.ccancel()
	}
	s.cctx, s.ccancel = nil, nil
	err := s.lastErr
	s.lastErr = nil
	s.mu.Unlock()
	if c := s.conn.Load(); c != nil {
		// paho reports the error to its callbacks asynchronously; the
		// connection itself knows why it ended.
		if reason := c.endReason(); err == nil || errors.Is(err, net.ErrClosed) {
			err = reason
		}
	}
	stable := max(10*s.b.cfg.ReconnectMin, time.Second)
	if time.Since(time.Unix(0, s.upSince.Load())) < stable {
		s.streak.Store(min(s.streak.Load()+1, 30))
	} else {
		s.streak.Store(0)
	}
	s.b.event(mqttsec.Event{Kind: mqttsec.EventDisconnected, ClientID: s.clientID, RemoteAddr: s.dialer.url.Host, Source: s.source, Err: err})
	if s == s.b.remote {
		s.b.status(s.b.in, s.b.cfg.StatusTopic, false)
	}
	return !s.b.closing.Load()
}

func (s *side) setErr(err error) {
	s.mu.Lock()
	if s.lastErr == nil {
		s.lastErr = err
	}
	s.mu.Unlock()
}

func (s *side) serverDisconnect(d *paho.Disconnect) {
	reason := ""
	if d.Properties != nil && d.Properties.ReasonString != "" {
		reason = ": " + d.Properties.ReasonString
	}
	s.setErr(fmt.Errorf("%s broker sent DISCONNECT 0x%02X%s", s.name, d.ReasonCode, reason))
}

func (s *side) clientError(err error) { s.setErr(err) }

func (s *side) connectError(err error) {
	e := mqttsec.Event{Kind: mqttsec.EventError, ClientID: s.clientID, RemoteAddr: s.dialer.url.Host, Source: s.source,
		Err: fmt.Errorf("bridge %q: connect to %s broker: %w", s.b.cfg.Name, s.name, err)}
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		e.Code = mqttsec.ReasonCode(ce.ReasonCode)
	}
	if s.b.closing.Load() {
		return
	}
	s.b.event(e)
}

// awaitUp returns the context of the current connection and the context
// for publishes, waiting for a connection; nil when ctx ends.
func (s *side) awaitUp(ctx context.Context) (conn, pub context.Context) {
	for {
		s.mu.Lock()
		c, p, w := s.cctx, s.pctx, s.upWait
		s.mu.Unlock()
		if c != nil && c.Err() == nil {
			return c, p
		}
		select {
		case <-w:
		case <-ctx.Done():
			return nil, nil
		}
	}
}

// status queues a retained status message ("1" or "0") for the
// destination of d.
func (b *Bridge) status(d *direction, topic string, online bool) {
	if topic == "" || b.closing.Load() {
		return
	}
	p := statusPublish(topic, online)
	d.q.admit(&item{status: true, topic: topic, msg: p, qos: 1, size: len(topic) + 1, received: time.Now()})
}

func statusPublish(topic string, online bool) *paho.Publish {
	payload := []byte("0")
	if online {
		payload = []byte("1")
	}
	return &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: payload}
}

// direction forwards the messages of one way: from src to dst.
type direction struct {
	b        *Bridge
	name     string
	src, dst *side
	routes   []route
	reverse  []route // the other direction's routes, for response topics
	subs     []paho.SubscribeOptions
	q        *queue
	window   chan struct{}

	forwarded, retried, redelivered, dropped, refused, expired, loops, unmapped, paused atomic.Uint64
}

func (b *Bridge) newDirection(name string, src, dst *side, rs, reverse []route) *direction {
	d := &direction{b: b, name: name, src: src, dst: dst, routes: rs, reverse: reverse,
		subs: subscriptions(rs, !b.cfg.DisableLoopPrevention),
		q:    newQueue(b.cfg.Buffer, b.cfg.BufferBytes), window: make(chan struct{}, b.cfg.MaxInflight)}
	src.src, dst.dst = d, d
	return d
}

func (d *direction) stats() DirectionStats {
	return DirectionStats{
		Forwarded: d.forwarded.Load(), Retried: d.retried.Load(), Redelivered: d.redelivered.Load(),
		Dropped: d.dropped.Load(), Refused: d.refused.Load(), Expired: d.expired.Load(), Loops: d.loops.Load(),
		Unmapped: d.unmapped.Load(), Paused: d.paused.Load(), Held: d.q.held(),
	}
}

// receive handles a message from the source broker (paho's router calls it,
// in order). It maps the topic, drops loops, and queues the message; a QoS
// 1 or 2 message is acknowledged only once its destination acknowledged it.
// When the buffer is full it drops a QoS 0 message and waits for room for a
// QoS 1 or 2 one.
func (d *direction) receive(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	if d.b.closing.Load() {
		return true, nil // not acknowledged: redelivered to the next run
	}
	if p.QoS > 0 && p.Duplicate() {
		d.redelivered.Add(1)
	}
	ackNow := func() {
		if p.QoS > 0 {
			_ = pr.Client.Ack(p)
		}
	}
	dst, r, ok := remap(d.routes, p.Topic)
	if !ok {
		d.unmapped.Add(1)
		ackNow()
		return true, nil
	}
	if d.isLoop(p.Properties) {
		d.loops.Add(1)
		ackNow()
		return true, nil
	}
	it := &item{gen: d.src.gen.Load(), topic: dst, msg: p, qos: min(p.QoS, r.qos),
		size: len(dst) + len(p.Topic) + len(p.Payload), received: time.Now(), src: pr.Client}
	switch d.q.admit(it) {
	case dropped:
		d.dropped.Add(1)
	case full:
		// Backpressure: stop reading from the source until the
		// destination takes messages; acknowledgements still flow. If the
		// connection ends meanwhile the source redelivers the message.
		d.paused.Add(1)
		var closed <-chan struct{}
		if c := d.src.conn.Load(); c != nil {
			closed = c.Done()
		}
		d.q.admitWait(d.b.ctx, closed, it)
	}
	return true, nil
}

// isLoop reports a message that carries this bridge's loop marker, or
// MaxHops markers.
func (d *direction) isLoop(pp *paho.PublishProperties) bool {
	if d.b.cfg.DisableLoopPrevention || pp == nil {
		return false
	}
	n := 0
	for _, u := range pp.User {
		if u.Key == LoopKey {
			if u.Value == d.b.cfg.LoopID {
				return true
			}
			n++
		}
	}
	return n >= d.b.cfg.MaxHops
}

// run is the forwarder: it publishes the held messages to the destination
// in order, up to MaxInflight at a time. It starts a publish only after the
// previous one was written, so the destination receives them in order.
func (d *direction) run() {
	defer d.b.wg.Done()
	ctx := d.b.ctx
	for {
		cctx, pctx := d.dst.awaitUp(ctx)
		if cctx == nil {
			return
		}
		it := d.q.next(ctx, cctx)
		if it == nil {
			continue
		}
		select {
		case d.window <- struct{}{}:
		case <-ctx.Done():
			d.q.requeue(it)
			return
		case <-cctx.Done():
			d.q.requeue(it)
			continue
		}
		w0 := d.dst.writes.Load()
		done := make(chan struct{})
		d.b.wg.Add(1)
		go func() {
			defer d.b.wg.Done()
			d.publish(cctx, pctx, it)
			<-d.window
			close(done)
		}()
		if !d.waitWritten(ctx, w0, done) {
			return
		}
	}
}

// waitWritten waits until a PUBLISH was written after w0, or the publish
// ended without one. It returns false when ctx ends.
func (d *direction) waitWritten(ctx context.Context, w0 uint64, done <-chan struct{}) bool {
	for d.dst.writes.Load() == w0 {
		select {
		case <-d.dst.wrote:
		case <-done:
			return true
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// publish sends one message to the destination and settles it: acknowledged
// to the source when the destination acknowledged or refused it for good,
// queued again when the connection failed.
func (d *direction) publish(cctx, pctx context.Context, it *item) {
	settle := func() {
		it.ack()
		d.q.done(it)
	}
	p, expired := d.build(it)
	if expired {
		d.expired.Add(1)
		settle()
		return
	}
	if max := d.dst.caps.Load().maxPacket; max > 0 && publishSize(p) > max {
		d.refused.Add(1)
		d.deny(it, 0x95, fmt.Errorf("bridge %q: message of %d bytes exceeds the %s broker's maximum packet size %d", d.b.cfg.Name, publishSize(p), d.dst.name, max))
		settle()
		return
	}
	gen := d.dst.gen.Load()
	pr, err := d.dst.cm.Publish(pctx, p)
	if err == nil && d.dst.gen.Load() != gen {
		// The connection was replaced while the message was in flight:
		// paho resent it with the resumed session.
		d.retried.Add(1)
	}
	switch {
	case pr != nil && pr.ReasonCode >= 0x80:
		d.refused.Add(1)
		d.deny(it, pr.ReasonCode, fmt.Errorf("bridge %q: %s broker refused %q with 0x%02X", d.b.cfg.Name, d.dst.name, it.topic, pr.ReasonCode))
		settle()
	case err == nil:
		if !it.status {
			d.forwarded.Add(1)
		}
		settle()
	case errors.Is(err, paho.ErrInvalidArguments):
		d.refused.Add(1)
		d.deny(it, 0x80, fmt.Errorf("bridge %q: %s broker cannot take %q: %w", d.b.cfg.Name, d.dst.name, it.topic, err))
		settle()
	case d.b.ctx.Err() != nil:
		d.q.done(it) // shutting down: the source redelivers it to the next run
	case it.qos == 0 && !it.status:
		d.dropped.Add(1)
		d.q.done(it)
	default:
		if !errors.Is(err, autopaho.ConnectionDownError) && !errors.Is(err, session.ErrNoConnection) {
			d.retried.Add(1) // it may have reached the destination
		}
		if cctx.Err() == nil {
			// The connection is up but the publish failed: do not spin.
			t := time.NewTimer(d.b.cfg.ReconnectMin)
			select {
			case <-t.C:
			case <-cctx.Done():
			}
			t.Stop()
		}
		d.q.requeue(it)
	}
}

func (d *direction) deny(it *item, code byte, err error) {
	d.b.event(mqttsec.Event{Kind: mqttsec.EventPublishDenied, ClientID: d.dst.clientID, RemoteAddr: d.dst.dialer.url.Host,
		Source: d.dst.source, Topic: it.topic, Code: mqttsec.ReasonCode(code), Err: err})
}

// build makes the destination PUBLISH: the mapped topic, the QoS and retain
// flag the destination supports, the properties copied (the message expiry
// reduced by the time spent in the bridge, a response topic mapped back when
// a mapping of the other direction covers it) and the loop marker added.
func (d *direction) build(it *item) (p *paho.Publish, expired bool) {
	c := d.dst.caps.Load()
	m := it.msg
	p = &paho.Publish{QoS: min(it.qos, c.maxQoS), Retain: m.Retain && c.retain, Topic: it.topic, Payload: m.Payload}
	props := &paho.PublishProperties{}
	if sp := m.Properties; sp != nil {
		props.CorrelationData = sp.CorrelationData
		props.ContentType = sp.ContentType
		props.PayloadFormat = sp.PayloadFormat
		if rt := sp.ResponseTopic; rt != "" {
			if t, ok := reverseTopic(d.reverse, rt); ok {
				rt = t
			}
			props.ResponseTopic = rt
		}
		if sp.MessageExpiry != nil {
			spent := uint64(time.Since(it.received) / time.Second)
			if spent >= uint64(*sp.MessageExpiry) {
				return nil, true
			}
			left := *sp.MessageExpiry - uint32(spent)
			props.MessageExpiry = &left
		}
		if len(sp.User) > 0 {
			props.User = make(paho.UserProperties, len(sp.User), len(sp.User)+1)
			copy(props.User, sp.User)
		}
	}
	if !d.b.cfg.DisableLoopPrevention {
		props.User = append(props.User, paho.UserProperty{Key: LoopKey, Value: d.b.cfg.LoopID})
	}
	p.Properties = props
	return p, false
}

// publishSize returns the size of the PUBLISH packet p encodes to.
func publishSize(p *paho.Publish) int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	props := 0
	if pp := p.Properties; pp != nil {
		if pp.PayloadFormat != nil {
			props += 2
		}
		if pp.MessageExpiry != nil {
			props += 5
		}
		if pp.ContentType != "" {
			props += 3 + len(pp.ContentType)
		}
		if pp.ResponseTopic != "" {
			props += 3 + len(pp.ResponseTopic)
		}
		if len(pp.CorrelationData) > 0 {
			props += 3 + len(pp.CorrelationData)
		}
		for _, u := range pp.User {
			props += 5 + len(u.Key) + len(u.Value)
		}
	}
	n += varintLen(props) + props
	return 1 + varintLen(n) + n
}

func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}
