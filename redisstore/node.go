package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttsec/mqttsec"
)

// DefaultPrefix is the key prefix of a [Config] whose Prefix is empty.
const DefaultPrefix = "mqttsec:"

// Defaults of [Config].
const (
	DefaultTimeout      = 2 * time.Second
	DefaultPingInterval = 2 * time.Second
)

// Config configures a [Node]. The zero Config is ready to use.
type Config struct {
	// Prefix starts every key and channel name the node uses, so that
	// several clusters (or tests) can share one Redis. Empty means
	// [DefaultPrefix]. All nodes of a cluster must use the same prefix.
	Prefix string
	// Events receives the node's errors (Kind [mqttsec.EventError], Source
	// "redis") and recoveries ([mqttsec.EventWarning]). Nil means
	// [mqttsec.SlogSink](nil). While Redis is unreachable, an error is
	// reported when the outage starts and then at most every
	// ReportInterval, not for every refused CONNECT.
	Events mqttsec.EventSink
	// Timeout bounds each Redis operation of a decision (a claim, a
	// release, a publish). Zero means [DefaultTimeout].
	Timeout time.Duration
	// PingInterval is how often the node's subscription is checked when no
	// message arrives: a subscription that does not answer a ping within
	// another interval is reconnected. Zero means [DefaultPingInterval].
	PingInterval time.Duration
	// ReportInterval is the least time between two error events of an
	// outage. Zero means 10 s.
	ReportInterval time.Duration
}

// Kicker ends the sessions a matcher selects with a reason code;
// [*mqttsec.Guard] is one.
type Kicker interface {
	Kick(match func(*mqttsec.Session) bool, code mqttsec.ReasonCode) int
}

// Node is one broker's membership of a cluster that shares its security
// state in Redis. It owns one Redis subscription, on which it receives the
// cluster's kicks (applied to the [Kicker] given to [Node.Attach], the
// broker's Guard), policy notifications (passed to its watchers, see
// [Watcher]) and ban-list changes (see [BanStore]), and runs the lease
// refresh of its [Registry].
//
// Every other node of the cluster reaches this one through Redis: a kick
// ([Node.Kick]) or a takeover of a client ID ([Registry]) published on one
// node is applied by the node that holds the session. When the subscription
// breaks (Redis restarted, a network fault), the node reconnects on its own;
// since Redis pub/sub does not keep messages, it then reloads the policy of
// its watchers and its ban list and re-checks its leases at once, so that
// what it missed is caught up (see the package documentation).
//
// A Node is safe for concurrent use. [New] starts its goroutines; [Node.Close]
// stops them.
type Node struct {
	rdb      redis.UniversalClient
	prefix   string
	id       string
	events   mqttsec.EventSink
	timeout  time.Duration
	ping     time.Duration
	reportIv int64 // ns

	kickChan, policyChan, banChan string

	// subscribed is true while the subscription is established; subGen
	// counts its establishments.
	subscribed atomic.Bool
	subGen     atomic.Uint64

	kicker atomic.Pointer[Kicker]
	seq    atomic.Uint64
	leases sync.Map // token -> *lease

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ready  chan struct{}
	closed atomic.Bool

	mu         sync.Mutex // guards watchers, registries and ps
	ps         *redis.PubSub
	watchers   []*Watcher
	registries []*Registry
	banStores  []*BanStore

	downSince  atomic.Int64 // unix ns of the first failure of an outage, 0 while up
	lastReport atomic.Int64 // unix ns of the last error event
}

// New returns a Node on rdb and starts its subscription. The tests use a
// *redis.Client (standalone or failover); every script touches one key, so
// a *redis.ClusterClient fits the design, but it is not tested. It does not wait for Redis:
// a broker can start while Redis is down, and the node's stores apply their
// documented fault modes until it is reachable; call [Node.Ready] to wait.
// rdb is not closed by [Node.Close].
func New(rdb redis.UniversalClient, cfg Config) (*Node, error) {
	if rdb == nil {
		return nil, errors.New("redisstore: nil redis client")
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("redisstore: node id: %w", err)
	}
	n := &Node{
		rdb:      rdb,
		prefix:   cfg.Prefix,
		id:       hex.EncodeToString(b[:]),
		events:   cfg.Events,
		timeout:  cfg.Timeout,
		ping:     cfg.PingInterval,
		reportIv: int64(cfg.ReportInterval),
		ready:    make(chan struct{}),
	}
	if n.prefix == "" {
		n.prefix = DefaultPrefix
	}
	if n.events == nil {
		n.events = mqttsec.SlogSink(nil)
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	if n.ping <= 0 {
		n.ping = DefaultPingInterval
	}
	if n.reportIv <= 0 {
		n.reportIv = int64(10 * time.Second)
	}
	n.kickChan = n.prefix + "kick"
	n.policyChan = n.prefix + "policy"
	n.banChan = n.prefix + "bans"
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(1)
	go n.listen()
	return n, nil
}

// ID returns the node's identifier: 16 random hex digits, new for every
// Node.
func (n *Node) ID() string { return n.id }

// Prefix returns the key prefix the node uses.
func (n *Node) Prefix() string { return n.prefix }

// Ready waits until the node's subscription is in place (so that it
// receives what other nodes publish from now on), or ctx ends.
func (n *Node) Ready(ctx context.Context) error {
	select {
	case <-n.ready:
		return nil
	case <-n.ctx.Done():
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Attach makes the node apply the cluster's kicks to k, the broker's
// Guard: takeovers of a client ID by another node and [Node.Kick] calls
// of any node. Attach the Guard before it accepts connections. A nil k
// detaches.
func (n *Node) Attach(k Kicker) {
	if k == nil {
		n.kicker.Store(nil)
		return
	}
	n.kicker.Store(&k)
}

func (n *Node) getKicker() Kicker {
	if k := n.kicker.Load(); k != nil {
		return *k
	}
	return nil
}

// Close stops the node's goroutines (the subscription, the lease refresh
// of its registries, the delivery of its watchers' notifications, the
// reloads of its ban lists) and waits for them. Leases still held stay in Redis until they expire; a
// broker that shuts down closes its connections (releasing their leases)
// before it closes the node. Close is safe to call more than once.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.cancel()
	n.mu.Lock()
	ws := append([]*Watcher(nil), n.watchers...)
	if n.ps != nil {
		_ = n.ps.Close() // ends a read in progress
	}
	n.mu.Unlock()
	for _, w := range ws {
		w.Close()
	}
	n.wg.Wait()
	return nil
}

// opContext returns the context of one Redis operation.
func (n *Node) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, n.timeout)
}

func (n *Node) emit(e mqttsec.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	n.events.Event(e)
}

// fail records a failed Redis operation and returns it wrapped in
// ErrUnavailable. The first failure of an outage is reported at once,
// later ones at most every ReportInterval.
func (n *Node) fail(op string, err error) error {
	e := unavailable(op, err)
	now := time.Now().UnixNano()
	n.downSince.CompareAndSwap(0, now)
	last := n.lastReport.Load()
	if now-last >= n.reportIv && n.lastReport.CompareAndSwap(last, now) {
		n.emit(mqttsec.Event{Kind: mqttsec.EventError, Source: "redis", Err: e})
	}
	return e
}

// ok records a successful Redis operation; after an outage it reports the
// recovery.
func (n *Node) ok() {
	if n.downSince.Load() == 0 {
		return
	}
	if since := n.downSince.Swap(0); since != 0 {
		n.lastReport.Store(0)
		d := time.Duration(time.Now().UnixNano() - since).Round(time.Millisecond)
		n.emit(mqttsec.Event{Kind: mqttsec.EventWarning, Source: "redis",
			Err: fmt.Errorf("redisstore: redis reachable again after %s", d)})
		// Write what waited for Redis (releases, unconfirmed claims, bans)
		// now.
		n.mu.Lock()
		rs := append([]*Registry(nil), n.registries...)
		bs := append([]*BanStore(nil), n.banStores...)
		n.mu.Unlock()
		for _, r := range rs {
			r.refreshNow()
		}
		for _, b := range bs {
			b.reload()
		}
	}
}

// Down reports whether the node's last Redis operation failed.
func (n *Node) Down() bool { return n.downSince.Load() != 0 }

// token returns a new lease token: the node's ID, a dot and a counter.
func (n *Node) token() string {
	return n.id + "." + strconv.FormatUint(n.seq.Add(1), 36)
}

// nodeOf returns the node ID of a lease token.
func nodeOf(token string) string {
	if i := strings.IndexByte(token, '.'); i > 0 {
		return token[:i]
	}
	return ""
}

// Messages on the kick channel are "1|kind|code|from|to|value": a version,
// what selects the sessions ("lease", "client", "subject"), the reason
// code in decimal, the publishing node, the target node (empty: every
// node) and the value, which runs to the end of the message and may
// contain anything (client IDs are not necessarily valid UTF-8, so the
// format is not JSON).
const (
	kickLease   = "lease"
	kickClient  = "client"
	kickSubject = "subject"
)

// maxMessage bounds a message the node reads; longer ones are ignored.
const maxMessage = 1 << 17

func (n *Node) kickMessage(kind string, code mqttsec.ReasonCode, to, value string) string {
	return "1|" + kind + "|" + strconv.Itoa(int(code)) + "|" + n.id + "|" + to + "|" + value
}

type kickMsg struct {
	kind, from, to, value string
	code                  mqttsec.ReasonCode
}

func parseKick(s string) (kickMsg, bool) {
	var m kickMsg
	f := strings.SplitN(s, "|", 6)
	if len(f) != 6 || f[0] != "1" {
		return m, false
	}
	c, err := strconv.ParseUint(f[2], 10, 8)
	if err != nil || c < 0x80 {
		return m, false
	}
	m = kickMsg{kind: f[1], code: mqttsec.ReasonCode(c), from: f[3], to: f[4], value: f[5]}
	switch m.kind {
	case kickLease, kickClient, kickSubject:
		return m, true
	}
	return m, false
}

// Target selects the sessions a [Node.Kick] ends.
type Target struct {
	kind  string
	value string
}

// ClientID selects the session of a client ID, live or kept.
func ClientID(id string) Target { return Target{kind: kickClient, value: id} }

// Subject selects every session of an authenticated subject (whatever
// the authentication method), live or kept: a user removed, a credential
// revoked.
func Subject(subject string) Target { return Target{kind: kickSubject, value: subject} }

func (t Target) match() func(*mqttsec.Session) bool {
	switch t.kind {
	case kickClient:
		return mqttsec.MatchClientID(t.value)
	case kickSubject:
		return mqttsec.MatchSubject(t.value)
	}
	return nil
}

// Kick ends the sessions t selects on every node of the cluster, as
// [mqttsec.Guard.Kick] does on one: this node's Guard at once, the other
// nodes' when they receive the kick from Redis (within milliseconds). A
// code below 0x80 is taken as 0x98 (administrative action). It returns the
// number of this node's sessions ended and, when the kick could not be
// published, an error wrapping [ErrUnavailable]: the other nodes did not
// get it.
//
// Redis pub/sub keeps no message: a node whose subscription is broken when
// the kick is published misses it (it reports the outage). A kick is an
// event, not a state; for a lasting refusal, ban (ratelimit) or remove the
// credential as well.
func (n *Node) Kick(ctx context.Context, t Target, code mqttsec.ReasonCode) (int, error) {
	match := t.match()
	if match == nil {
		return 0, errors.New("redisstore: kick: empty target")
	}
	if code < 0x80 {
		code = mqttsec.CodeAdministrativeAction
	}
	if n.closed.Load() {
		return 0, ErrClosed
	}
	cnt := 0
	if k := n.getKicker(); k != nil {
		cnt = k.Kick(match, code)
	}
	ctx, cancel := n.opContext(ctx)
	defer cancel()
	if err := n.rdb.Publish(ctx, n.kickChan, n.kickMessage(t.kind, code, "", t.value)).Err(); err != nil {
		return cnt, n.fail("publish kick", err)
	}
	n.ok()
	return cnt, nil
}

// handleKick applies a kick received from the cluster.
func (n *Node) handleKick(payload string) {
	m, ok := parseKick(payload)
	if !ok {
		n.emit(mqttsec.Event{Kind: mqttsec.EventWarning, Source: "redis",
			Err: fmt.Errorf("redisstore: ignored a malformed message on %q", n.kickChan)})
		return
	}
	if m.from == n.id || (m.to != "" && m.to != n.id) {
		return
	}
	switch m.kind {
	case kickLease:
		if v, ok := n.leases.Load(m.value); ok {
			v.(*lease).kick(m.code, kickRetries)
		}
	default:
		if k := n.getKicker(); k != nil {
			k.Kick(Target{kind: m.kind, value: m.value}.match(), m.code)
		}
	}
}

// listen keeps the node's subscription up: it reconnects after a failure
// and, since messages published meanwhile are lost, resynchronizes.
func (n *Node) listen() {
	defer n.wg.Done()
	backoff := 50 * time.Millisecond
	first := true
	for n.ctx.Err() == nil {
		subscribed := n.subscribe(first)
		if n.ctx.Err() != nil {
			return
		}
		if subscribed {
			first = false
			backoff = 50 * time.Millisecond
		}
		t := time.NewTimer(backoff)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// subscribe runs one subscription until it fails; it reports whether it
// was established. first is true for the node's first subscription,
// which has nothing to catch up.
func (n *Node) subscribe(first bool) bool {
	ps := n.rdb.Subscribe(n.ctx, n.kickChan, n.policyChan, n.banChan)
	n.mu.Lock()
	if n.closed.Load() {
		n.mu.Unlock()
		_ = ps.Close()
		return false
	}
	n.ps = ps
	n.mu.Unlock()
	defer func() {
		n.subscribed.Store(false)
		n.mu.Lock()
		n.ps = nil
		n.mu.Unlock()
		_ = ps.Close()
	}()
	established := false
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(n.ctx, n.ping)
		if n.ctx.Err() != nil {
			return established
		}
		if err != nil {
			if isTimeout(err) && !pinged {
				pinged = true
				pctx, cancel := context.WithTimeout(n.ctx, n.timeout)
				err = ps.Ping(pctx)
				cancel()
				if err == nil {
					continue
				}
			}
			if isTimeout(err) {
				err = fmt.Errorf("no answer to a ping within %s", n.ping)
			}
			n.fail("subscription", err)
			return established
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && !established {
				established = true
				n.subGen.Add(1)
				n.subscribed.Store(true)
				n.ok()
				if first {
					close(n.ready)
				} else {
					n.resync()
				}
			}
		case *redis.Message:
			if len(m.Payload) > maxMessage {
				continue
			}
			switch m.Channel {
			case n.kickChan:
				n.handleKick(m.Payload)
			case n.policyChan:
				n.handlePolicy(m.Payload)
			case n.banChan:
				n.handleBans(m.Payload)
			}
		case *redis.Pong:
		}
	}
}

// resync catches up after the subscription was broken: watchers reload
// the policy, registries re-check their leases now.
func (n *Node) resync() {
	n.mu.Lock()
	ws := append([]*Watcher(nil), n.watchers...)
	rs := append([]*Registry(nil), n.registries...)
	bs := append([]*BanStore(nil), n.banStores...)
	n.mu.Unlock()
	for _, w := range ws {
		w.resync()
	}
	for _, b := range bs {
		b.reload()
	}
	for _, r := range rs {
		r.resync()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
