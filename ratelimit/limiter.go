package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttsec/mqttsec"
)

// Config configures a [Limiter]. Every zero field has the documented
// default, which limits: a limit is turned off only explicitly, with
// [Unlimited] for a Rate or a negative number for a count. A Config is
// copied by [New]; the *Bans and the functions it holds are shared.
type Config struct {
	// ConnectPerAddr limits CONNECT attempts per client address (per
	// IPv6Prefix for IPv6), before authentication; excess is refused with
	// 0x9F (connection rate exceeded). Zero means 5 per second, bursts of
	// 20.
	ConnectPerAddr Rate
	// Connect limits the CONNECT attempts of all clients together; excess
	// is refused with 0x9F. Zero means 1000 per second, bursts of 1000.
	Connect Rate
	// Messages limits the PUBLISH packets of one connection; excess is
	// refused with 0x96 (message rate too high: a v5 QoS 1 or 2 PUBLISH is
	// answered 0x97, quota exceeded, the only rate code a PUBACK may carry;
	// QoS 0 and MQTT 3.1.1 messages are dropped). Zero means 1000 per
	// second, bursts of 1000.
	Messages Rate
	// Bytes limits the payload bytes of one connection; excess is refused
	// with 0x97 (quota exceeded). A message larger than the burst is
	// allowed when the bucket is full and empties it for as long as the
	// message needs. Zero means 1 MiB per second, bursts of 4 MiB.
	Bytes Rate
	// Subscriptions limits the topic filters one connection subscribes;
	// excess filters are refused with 0x97. Zero means 10 per second,
	// bursts of 100.
	Subscriptions Rate
	// Flood limits the PUBLISH packets refused by Messages or Bytes on one
	// connection: a client that exceeds it is disconnected with 0x96
	// (message rate too high), whatever its protocol version and QoS.
	// Zero means the Messages rate: a client that keeps sending more than
	// twice its rate is disconnected. Unlimited never disconnects.
	Flood Rate
	// MaxConnsPerAddr caps the live connections of one address (per
	// IPv6Prefix); one more is refused with 0x97 after authentication.
	// Zero means 1024; negative means no cap.
	MaxConnsPerAddr int
	// MaxConnsPerUser caps the live connections of one authenticated
	// subject; one more is refused with 0x97. Zero means 1024; negative
	// means no cap.
	MaxConnsPerUser int
	// AddrFailures throttles failed logins per client address. Zero
	// fields mean: slowed after 5 failures to one attempt per 5 s, banned
	// after 10 for 1 minute, doubling for each new ban up to 24 hours, one
	// failure forgotten per minute.
	AddrFailures Throttle
	// UserFailures throttles failed logins per user name, from any
	// address: the defence against guessing from many addresses. Its
	// thresholds are above AddrFailures' ban, so that a guesser on one
	// address is banned before the user name is slowed and the real user
	// still connects from elsewhere; a guess from many addresses slows and
	// then bans the user name, which keeps the real user out as well for
	// that time. Zero fields mean: slowed after 20 failures to one attempt
	// per 5 s, banned after 100 for 1 minute, doubling up to 1 hour, one
	// failure forgotten per minute.
	UserFailures Throttle
	// Flapping bans a client ID whose connections end too often. Zero
	// fields mean: more than 15 connections ending within a minute ban the
	// client ID for 5 minutes, doubling up to 1 hour.
	Flapping Flapping
	// IPv6Prefix is the prefix length that keys an IPv6 client, since one
	// host usually has a whole /64. Zero means 64.
	IPv6Prefix int
	// Bans is the ban list checked at every CONNECT and extended by
	// automatic bans. Nil means a new in-memory list ([Limiter.Bans]).
	Bans *Bans
	// NewStore returns the store of one limit, named "connect_addr",
	// "connect", "addr_failures", "addr_slow", "user_failures",
	// "user_slow", "flapping", "messages", "bytes" or "subscriptions". Nil
	// means a new [MemoryStore] with MaxKeys DefaultMaxKeys for each, which
	// bounds the Limiter's rate state at 10 × 16 MiB; the per-connection
	// buckets take 80 bytes per live connection, and the caps one map entry
	// per address and subject with live connections.
	NewStore func(name string) Store
	// Events receives a warning (Source "ratelimit", Code 0x8A) for every
	// automatic ban. Nil means mqttsec.SlogSink(nil).
	Events mqttsec.EventSink
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time
}

// Throttle slows, then bans, a key (an address or a user name) whose logins
// fail. Failures are counted in a bucket that forgets one per Forget. From
// Free failures on, the key is slowed: it gets one CONNECT attempt per Slow,
// and every other attempt is refused at once with 0x9F (connection rate
// exceeded), before any verification. At BanAfter failures the key is
// banned for Ban, for twice as long at each new ban while the previous one
// is remembered (for MaxBan after it ended), at most MaxBan.
//
// Every zero field has the default of the Config field it is in.
type Throttle struct {
	// Free is the number of failures before the key is slowed; negative
	// turns the throttle off (neither slowed nor banned).
	Free int
	// Slow is the time between the attempts of a slowed key.
	Slow time.Duration
	// BanAfter is the number of failures that bans the key; negative
	// never bans. It must be above Free.
	BanAfter int
	// Forget is the time in which one failure is forgotten.
	Forget time.Duration
	// Ban is the duration of the first ban; MaxBan the longest.
	Ban, MaxBan time.Duration
}

// Flapping bans a client ID whose authenticated connections end more than
// Max times within Window, for Ban, doubling at each new ban while the
// previous one is remembered, at most MaxBan. Every zero field has its
// default (see [Config.Flapping]); a negative Max turns the detection off.
type Flapping struct {
	Max         int
	Window      time.Duration
	Ban, MaxBan time.Duration
}

// Limiter is an [mqttsec.Limiter] and [mqttsec.ConnectionLimiter] for a
// Guard: it bans, throttles failed logins, limits the CONNECT rate per
// address and overall, caps connections per address and per user, limits
// messages, bytes and subscriptions per connection, disconnects flooders and
// bans flapping clients. Give it as [mqttsec.Config.Limiter], and the Guard
// to [Bans.Attach].
//
// At CONNECT, before authentication ([mqttsec.LimitConnect]), it refuses in
// this order: a ban of the client ID, the claimed user name or the address
// (0x8A); an address or user name slowed for failed logins (0x9F); the
// address's and then the global CONNECT rate (0x9F). After authentication
// ([mqttsec.ConnectionLimiter.Open]): a ban of the subject (0x8A), then the
// connection caps (0x97). Each connection then has its own buckets, so a
// PUBLISH touches no shared map and takes no lock.
//
// A Limiter is safe for concurrent use. Allowing a PUBLISH allocates
// nothing. The zero Limiter refuses everything with 0x88 (server
// unavailable): create one with [New].
type Limiter struct {
	rules  atomic.Pointer[rules]
	bans   *Bans
	now    func() time.Time
	epoch  time.Time
	events mqttsec.EventSink

	connectAddr, connect, addrFail, addrSlow, userFail, userSlow, flap,
	msgs, bytes, subs Store

	addrConns, userConns counter
}

// rules are a Config resolved: defaults applied, rates in GCRA form.
type rules struct {
	connectAddr, connect          Rate
	msgs, bytes, subs, flood      gcra
	msgsRate, bytesRate, subsRate Rate
	maxPerAddr, maxPerUser        int
	addr, user                    throttle
	flapOn                        bool
	flapRate                      Rate
	flapBan, flapMaxBan           time.Duration
	v6bits                        int
}

type throttle struct {
	on          bool
	free, banAt int
	capacity    int
	fail        Rate // one token per failure, refilled one per Forget
	slow        Rate
	ban, maxBan time.Duration
}

var errZeroLimiter = fmt.Errorf("%w: ratelimit: a Limiter not created with New", mqttsec.ErrServerUnavailable)

// ErrConfig is returned by [New] and [Limiter.Reload] for an invalid
// configuration.
var ErrConfig = errors.New("ratelimit: invalid configuration")

// New returns a Limiter for cfg.
func New(cfg Config) (*Limiter, error) {
	r, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	l := &Limiter{bans: cfg.Bans, now: cfg.Clock, events: cfg.Events}
	if l.now == nil {
		l.now = time.Now
	}
	l.epoch = l.now()
	if l.bans == nil {
		l.bans = NewBans(BansConfig{Clock: l.now})
	}
	if l.events == nil {
		l.events = mqttsec.SlogSink(nil)
	}
	newStore := cfg.NewStore
	if newStore == nil {
		newStore = func(string) Store { return NewMemoryStore(MemoryConfig{}) }
	}
	for _, s := range []struct {
		name string
		p    *Store
	}{{"connect_addr", &l.connectAddr}, {"connect", &l.connect}, {"addr_failures", &l.addrFail},
		{"addr_slow", &l.addrSlow}, {"user_failures", &l.userFail}, {"user_slow", &l.userSlow},
		{"flapping", &l.flap}, {"messages", &l.msgs}, {"bytes", &l.bytes}, {"subscriptions", &l.subs}} {
		if *s.p = newStore(s.name); *s.p == nil {
			return nil, fmt.Errorf("%w: NewStore returned nil for %q", ErrConfig, s.name)
		}
	}
	l.rules.Store(r)
	return l, nil
}

// Reload applies the rates, caps and throttles of cfg, to open connections
// too; its Bans, NewStore, Events and Clock are ignored. The state (buckets,
// failure counts, bans, connection counts) is kept. On error nothing
// changes.
func (l *Limiter) Reload(cfg Config) error {
	r, err := resolve(cfg)
	if err != nil {
		return err
	}
	l.rules.Store(r)
	return nil
}

// Bans returns the Limiter's ban list.
func (l *Limiter) Bans() *Bans { return l.bans }

func orRate(r, def Rate, name string) (Rate, error) {
	if r.IsZero() {
		return def, nil
	}
	if !r.Valid() {
		return r, fmt.Errorf("%w: %s: a Rate needs a positive Interval and Burst (or Unlimited)", ErrConfig, name)
	}
	return r, nil
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

func resolve(cfg Config) (*rules, error) {
	r := &rules{}
	var err error
	if r.connectAddr, err = orRate(cfg.ConnectPerAddr, Every(200*time.Millisecond, 20), "ConnectPerAddr"); err != nil {
		return nil, err
	}
	if r.connect, err = orRate(cfg.Connect, PerSecond(1000, 1000), "Connect"); err != nil {
		return nil, err
	}
	if r.msgsRate, err = orRate(cfg.Messages, PerSecond(1000, 1000), "Messages"); err != nil {
		return nil, err
	}
	if r.bytesRate, err = orRate(cfg.Bytes, PerSecond(1<<20, 4<<20), "Bytes"); err != nil {
		return nil, err
	}
	if r.subsRate, err = orRate(cfg.Subscriptions, PerSecond(10, 100), "Subscriptions"); err != nil {
		return nil, err
	}
	flood, err := orRate(cfg.Flood, r.msgsRate, "Flood")
	if err != nil {
		return nil, err
	}
	r.msgs, r.bytes, r.subs, r.flood = r.msgsRate.gcra(), r.bytesRate.gcra(), r.subsRate.gcra(), flood.gcra()
	r.maxPerAddr = orInt(cfg.MaxConnsPerAddr, 1024)
	r.maxPerUser = orInt(cfg.MaxConnsPerUser, 1024)
	if r.addr, err = resolveThrottle(cfg.AddrFailures, Throttle{Free: 5, Slow: 5 * time.Second, BanAfter: 10,
		Forget: time.Minute, Ban: time.Minute, MaxBan: 24 * time.Hour}, "AddrFailures"); err != nil {
		return nil, err
	}
	if r.user, err = resolveThrottle(cfg.UserFailures, Throttle{Free: 20, Slow: 5 * time.Second, BanAfter: 100,
		Forget: time.Minute, Ban: time.Minute, MaxBan: time.Hour}, "UserFailures"); err != nil {
		return nil, err
	}
	f := cfg.Flapping
	maxFlaps := orInt(f.Max, 15)
	window := orDur(f.Window, time.Minute)
	r.flapBan = orDur(f.Ban, 5*time.Minute)
	r.flapMaxBan = orDur(f.MaxBan, time.Hour)
	if maxFlaps > 0 {
		if window < 0 || r.flapBan < 0 || r.flapMaxBan < r.flapBan {
			return nil, fmt.Errorf("%w: Flapping: durations must be positive and MaxBan at least Ban", ErrConfig)
		}
		r.flapOn = true
		r.flapRate = Every(max(window/time.Duration(maxFlaps), 1), maxFlaps)
	}
	r.v6bits = orInt(cfg.IPv6Prefix, 64)
	if r.v6bits < 1 || r.v6bits > 128 {
		return nil, fmt.Errorf("%w: IPv6Prefix %d not in 1..128", ErrConfig, r.v6bits)
	}
	return r, nil
}

func resolveThrottle(t, def Throttle, name string) (throttle, error) {
	free := orInt(t.Free, def.Free)
	if free < 0 {
		return throttle{}, nil
	}
	th := throttle{on: true, free: free, banAt: orInt(t.BanAfter, def.BanAfter),
		slow: Every(orDur(t.Slow, def.Slow), 1), ban: orDur(t.Ban, def.Ban), maxBan: orDur(t.MaxBan, def.MaxBan)}
	forget := orDur(t.Forget, def.Forget)
	if forget <= 0 || th.slow.Interval <= 0 || th.ban <= 0 || th.maxBan < th.ban {
		return th, fmt.Errorf("%w: %s: durations must be positive and MaxBan at least Ban", ErrConfig, name)
	}
	th.capacity = free + 1
	if th.banAt > 0 {
		if th.banAt <= free {
			return th, fmt.Errorf("%w: %s: BanAfter (%d) must be above Free (%d)", ErrConfig, name, th.banAt, free)
		}
		th.capacity = th.banAt
	}
	th.fail = Every(forget, th.capacity)
	return th, nil
}

// Allow implements [mqttsec.Limiter]. [mqttsec.LimitConnect] and
// [mqttsec.LimitAuthFailure] are handled as the type's documentation says.
// [mqttsec.LimitPublish] and [mqttsec.LimitSubscribe] are asked of the
// connection's own limiter by a Guard; asked here (by a Guard that did not
// open the connection with this Limiter, after a reload, say), they use
// shared buckets keyed by client ID. Unknown limits are allowed.
func (l *Limiter) Allow(cl *mqttsec.Client, lim mqttsec.Limit, n int) error {
	if l.rules.Load() == nil {
		return errZeroLimiter
	}
	ctx := context.Background()
	switch lim {
	case mqttsec.LimitConnect:
		return l.connectAttempt(ctx, cl)
	case mqttsec.LimitAuthFailure:
		l.failure(ctx, cl)
		return nil
	case mqttsec.LimitPublish:
		r := l.rules.Load()
		now := l.now()
		if err := l.take(ctx, l.msgs, cl.ID, r.msgsRate, 1, now, mqttsec.ErrRateTooHigh); err != nil {
			return err
		}
		return l.take(ctx, l.bytes, cl.ID, r.bytesRate, n, now, mqttsec.ErrQuotaExceeded)
	case mqttsec.LimitSubscribe:
		return l.take(ctx, l.subs, cl.ID, l.rules.Load().subsRate, n, l.now(), mqttsec.ErrQuotaExceeded)
	}
	return nil
}

func (l *Limiter) take(ctx context.Context, s Store, key string, r Rate, n int, now time.Time, deny error) error {
	res, err := s.AllowN(ctx, key, r, n, now)
	if err != nil {
		return fmt.Errorf("%w: rate limit store: %w", mqttsec.ErrServerUnavailable, err)
	}
	if !res.Allowed {
		return deny
	}
	return nil
}

// addrKey returns the key of the client's address: the IPv4 address, or
// the IPv6 prefix of length bits; the transport's address when it is not an
// IP address.
func addrKey(cl *mqttsec.Client, bits int) string {
	a, ok := clientAddr(cl)
	if !ok {
		return cl.IP()
	}
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

func (l *Limiter) connectAttempt(ctx context.Context, cl *mqttsec.Client) error {
	if err := l.bans.Check(cl); err != nil {
		return err
	}
	r := l.rules.Load()
	now := l.now()
	addr := addrKey(cl, r.v6bits)
	if err := l.slowed(ctx, r.addr, l.addrFail, l.addrSlow, addr, now, "address"); err != nil {
		return err
	}
	if cl.Username != "" {
		if err := l.slowed(ctx, r.user, l.userFail, l.userSlow, cl.Username, now, "user"); err != nil {
			return err
		}
	}
	if err := l.take(ctx, l.connectAddr, addr, r.connectAddr, 1, now, mqttsec.ErrConnectionRate); err != nil {
		return err
	}
	return l.take(ctx, l.connect, "*", r.connect, 1, now, mqttsec.ErrConnectionRate)
}

// slowed refuses an attempt of a key slowed by its failed logins, unless it
// is the key's one attempt per Slow.
func (l *Limiter) slowed(ctx context.Context, th throttle, fail, slow Store, key string, now time.Time, what string) error {
	if !th.on {
		return nil
	}
	res, err := fail.AllowN(ctx, key, th.fail, 0, now)
	if err != nil {
		return fmt.Errorf("%w: rate limit store: %w", mqttsec.ErrServerUnavailable, err)
	}
	failures := th.capacity - res.Remaining
	if failures < th.free {
		return nil
	}
	res, err = slow.AllowN(ctx, key, th.slow, 1, now)
	if err != nil {
		return fmt.Errorf("%w: rate limit store: %w", mqttsec.ErrServerUnavailable, err)
	}
	if !res.Allowed {
		return fmt.Errorf("%w: %s %q slowed after %d failed logins", mqttsec.ErrConnectionRate, what, key, failures)
	}
	return nil
}

// failure counts a failed login of the client's address and user name,
// and bans a key that reached its throttle's BanAfter.
func (l *Limiter) failure(ctx context.Context, cl *mqttsec.Client) {
	r := l.rules.Load()
	now := l.now()
	l.fail(ctx, r.addr, l.addrFail, BanAddr, addrKey(cl, r.v6bits), now, cl)
	if cl.Username != "" {
		l.fail(ctx, r.user, l.userFail, BanSubject, cl.Username, now, cl)
	}
}

func (l *Limiter) fail(ctx context.Context, th throttle, fail Store, kind BanKind, key string, now time.Time, cl *mqttsec.Client) {
	if !th.on {
		return
	}
	res, err := fail.AllowN(ctx, key, th.fail, 1, now)
	if err != nil || th.banAt <= 0 || (res.Allowed && res.Remaining > 0) {
		return
	}
	reason := fmt.Sprintf("%d failed logins", th.banAt)
	if b, ok := l.bans.autoBan(kind, key, reason, th.ban, th.maxBan); ok {
		l.reportBan(b, cl, now)
	}
}

func (l *Limiter) reportBan(b Ban, cl *mqttsec.Client, now time.Time) {
	l.events.Event(mqttsec.Event{Time: now, Kind: mqttsec.EventBanned, Source: "ratelimit",
		ClientID: cl.ID, Username: cl.Username, RemoteAddr: cl.RemoteAddr, Code: mqttsec.CodeBanned,
		Err: fmt.Errorf("%w: %s %q until %s: %s", mqttsec.ErrBanned, b.Kind, b.Value,
			b.Until.UTC().Format(time.RFC3339), b.Reason)})
}

// Open implements [mqttsec.ConnectionLimiter]: it refuses a banned subject
// (0x8A) and a connection over a cap (0x97), and returns the connection's
// own limiter.
func (l *Limiter) Open(s *mqttsec.Session) (mqttsec.ConnLimiter, error) {
	if l.rules.Load() == nil {
		return nil, errZeroLimiter
	}
	cl := s.Client()
	if err := l.bans.Check(cl); err != nil {
		return nil, err
	}
	r := l.rules.Load()
	c := &conn{l: l, s: s, addr: addrKey(cl, r.v6bits), user: cl.Username, id: cl.ID}
	if !l.addrConns.acquire(c.addr, r.maxPerAddr) {
		return nil, fmt.Errorf("%w: %d connections from address %s", mqttsec.ErrQuotaExceeded, r.maxPerAddr, c.addr)
	}
	if c.user != "" && !l.userConns.acquire(c.user, r.maxPerUser) {
		l.addrConns.release(c.addr)
		return nil, fmt.Errorf("%w: %d connections of user %q", mqttsec.ErrQuotaExceeded, r.maxPerUser, c.user)
	}
	return c, nil
}

// nanos returns the Limiter's clock in nanoseconds since its epoch
// (monotonic with the default clock).
func (l *Limiter) nanos() int64 { return int64(l.now().Sub(l.epoch)) }

// conn is a connection's own limiter.
type conn struct {
	l                 *Limiter
	s                 *mqttsec.Session
	addr, user, id    string
	msgs, bytes, subs bucket
	flood             bucket
	closed            atomic.Bool
}

// bucket is a GCRA bucket updated lock-free.
type bucket struct{ tat atomic.Int64 }

func (b *bucket) take(g gcra, now, n int64) bool {
	for {
		old := b.tat.Load()
		tat, ok, _, _ := g.take(old, now, n)
		if !ok {
			return false
		}
		if tat == old || b.tat.CompareAndSwap(old, tat) {
			return true
		}
	}
}

// Allow implements [mqttsec.Limiter] for the connection's PUBLISH and
// SUBSCRIBE. It allocates nothing.
func (c *conn) Allow(_ *mqttsec.Client, lim mqttsec.Limit, n int) error {
	switch lim {
	case mqttsec.LimitPublish:
		r := c.l.rules.Load()
		now := c.l.nanos()
		if !c.msgs.take(r.msgs, now, 1) {
			return c.excess(r, now, mqttsec.ErrRateTooHigh)
		}
		if !c.bytes.take(r.bytes, now, int64(n)) {
			return c.excess(r, now, mqttsec.ErrQuotaExceeded)
		}
	case mqttsec.LimitSubscribe:
		r := c.l.rules.Load()
		if !c.subs.take(r.subs, c.l.nanos(), int64(n)) {
			return mqttsec.ErrQuotaExceeded
		}
	default:
		return c.l.Allow(c.s.Client(), lim, n)
	}
	return nil
}

// excess counts a refused PUBLISH and disconnects a flooder.
func (c *conn) excess(r *rules, now int64, err error) error {
	if !c.flood.take(r.flood, now, 1) {
		c.s.Kick(mqttsec.CodeMessageRateTooHigh)
	}
	return err
}

// Close implements [mqttsec.ConnLimiter]: it releases the connection's
// caps and counts a flap of its client ID.
func (c *conn) Close() {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	c.l.addrConns.release(c.addr)
	if c.user != "" {
		c.l.userConns.release(c.user)
	}
	r := c.l.rules.Load()
	if !r.flapOn || c.id == "" {
		return
	}
	now := c.l.now()
	res, err := c.l.flap.AllowN(context.Background(), c.id, r.flapRate, 1, now)
	if err != nil || res.Allowed {
		return
	}
	if b, ok := c.l.bans.autoBan(BanClientID, c.id, "flapping", r.flapBan, r.flapMaxBan); ok {
		c.l.reportBan(b, c.s.Client(), now)
	}
}

// counter counts live connections per key.
type counter struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counter) acquire(key string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit > 0 && c.m[key] >= limit {
		return false
	}
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[key]++
	return true
}

func (c *counter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.m[key]; n <= 1 {
		delete(c.m, key)
	} else {
		c.m[key] = n - 1
	}
}

var (
	_ mqttsec.ConnectionLimiter = (*Limiter)(nil)
	_ mqttsec.ConnLimiter       = (*conn)(nil)
)
