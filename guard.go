package mqttsec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mqttsec/mqttsec/topic"
)

// Config holds the parts a [Guard] composes. A nil field has the documented
// default; every default either denies or is the secure choice.
type Config struct {
	// Authenticator verifies CONNECT credentials. Nil denies every CONNECT
	// with 0x86: there is no implicit anonymous access.
	Authenticator Authenticator
	// Authorizer decides publish, subscribe and receive. Nil denies all of
	// them with 0x87.
	Authorizer Authorizer
	// ClientIDs validates client identifiers before authentication. Nil
	// means [DefaultClientIDPolicy].
	ClientIDs ClientIDPolicy
	// Registry binds client IDs to identities. Nil means an in-memory
	// registry, kept across reloads, that refuses (0x85) a client ID held by
	// a live connection of another identity, so an authenticated user cannot
	// take over another device's session.
	Registry Registry
	// Limiter enforces rates and quotas. Nil applies no limits.
	Limiter Limiter
	// MaxPayload is the largest PUBLISH or will message payload allowed, in
	// bytes. Zero leaves the limit to the broker.
	MaxPayload int
	// Events receives security events. Nil means SlogSink(Logger).
	Events EventSink
	// Logger is used by the default event sink. Nil means slog.Default().
	Logger *slog.Logger
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time
}

// Guard composes authentication, client-ID policy, rate limits and
// authorization into the decisions a broker needs: [Guard.Connect],
// [Guard.Publish], [Guard.Subscribe], [Guard.Deliver] and [Guard.Disconnect].
// Deny wins: each step can only refuse, and a missing part denies where
// skipping it would be insecure.
//
// A Guard is safe for concurrent use. [Guard.Reload] swaps its parts
// atomically: a check runs entirely on the old parts or entirely on the new.
type Guard struct {
	parts  atomic.Pointer[parts]
	disc   atomic.Pointer[Disconnector]
	memReg *memRegistry
}

type parts struct {
	Config
	authn    Authenticator
	authz    Authorizer
	ids      ClientIDPolicy
	registry Registry
	events   EventSink
	now      func() time.Time
}

// New returns a Guard with the given parts.
func New(cfg Config) *Guard {
	g := &Guard{memReg: &memRegistry{m: make(map[string]*regEntry)}}
	g.parts.Store(g.resolve(cfg))
	return g
}

// Reload replaces the Guard's parts. Connections keep their identities;
// their authorizers are re-bound on their next check.
func (g *Guard) Reload(cfg Config) {
	p := g.resolve(cfg)
	g.parts.Store(p)
	p.emit(Event{Kind: EventReload})
}

func (g *Guard) resolve(cfg Config) *parts {
	p := &parts{Config: cfg, authn: cfg.Authenticator, authz: cfg.Authorizer,
		ids: cfg.ClientIDs, registry: cfg.Registry, events: cfg.Events, now: cfg.Clock}
	if p.authn == nil {
		p.authn = AuthenticatorFunc(func(context.Context, *Client, Credentials) (*Identity, error) {
			return nil, fmt.Errorf("%w: no authenticator configured", ErrBadCredentials)
		})
	}
	if p.authz == nil {
		p.authz = denyAll{}
	}
	if p.ids == nil {
		p.ids = DefaultClientIDPolicy
	}
	if p.registry == nil {
		p.registry = g.memReg
	}
	if p.events == nil {
		p.events = SlogSink(cfg.Logger)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p
}

func (p *parts) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	p.events.Event(e)
}

// SetDisconnector installs the broker adapter's Disconnector, used to close
// connections whose credentials expire.
func (g *Guard) SetDisconnector(d Disconnector) {
	g.disc.Store(&d)
}

// Session is the per-connection state a Guard builds at CONNECT: the
// client, its identity, and its bound authorizer. Later checks take it, so
// a per-message check does no global lookup and takes no lock.
// A Session is safe for concurrent use.
type Session struct {
	g       *Guard
	client  Client
	bound   atomic.Pointer[binding]
	expired atomic.Bool
	ended   atomic.Bool
	release func()
	timer   *time.Timer
}

type binding struct {
	p     *parts
	authz Authorizer
	msg   MessageAuthorizer
}

// Client returns the connection's client, with its Identity. It must not be
// modified.
func (s *Session) Client() *Client { return &s.client }

// Identity returns the authenticated identity.
func (s *Session) Identity() *Identity { return s.client.Identity }

// Expired reports whether the session's credentials have expired.
func (s *Session) Expired() bool { return s.expired.Load() }

func (s *Session) binding() *binding {
	p := s.g.parts.Load()
	if b := s.bound.Load(); b != nil && b.p == p {
		return b
	}
	b := bind(p, &s.client)
	s.bound.Store(b)
	return b
}

func bind(p *parts, cl *Client) *binding {
	a := p.authz
	if cb, ok := a.(ClientBinder); ok {
		if bound := cb.Bind(cl); bound != nil {
			a = bound
		}
	}
	b := &binding{p: p, authz: a}
	b.msg, _ = a.(MessageAuthorizer)
	return b
}

// Connect decides a CONNECT: limits, client-ID policy, authentication,
// credential expiry, the will message, and the client-ID registry, in that
// order. It returns the Session for later checks, or a denial whose reason
// code [CodeOf] gives. cred is not retained.
//
// The expiry timer starts before Connect returns, so it can fire before the
// adapter has registered the session with its [Disconnector]: an adapter
// registers the session, then refuses the connection if [Session.Expired].
func (g *Guard) Connect(ctx context.Context, cl Client, cred Credentials, will *Message) (*Session, error) {
	p := g.parts.Load()
	cl.Identity = nil
	s, err := g.connect(ctx, p, &cl, cred, will)
	if err != nil {
		p.emit(Event{Kind: EventConnectDenied, ClientID: cl.ID, Username: cl.Username,
			RemoteAddr: cl.RemoteAddr, Code: CodeOf(err), Err: err})
		return nil, err
	}
	p.emit(Event{Kind: EventConnected, ClientID: cl.ID, Username: cl.Username, RemoteAddr: cl.RemoteAddr})
	return s, nil
}

func (g *Guard) connect(ctx context.Context, p *parts, cl *Client, cred Credentials, will *Message) (*Session, error) {
	if p.Limiter != nil {
		if err := p.Limiter.Allow(cl, LimitConnect, 1); err != nil {
			return nil, reasoned(err, ErrConnectionRate)
		}
	}
	if err := p.ids.ValidateClientID(cl); err != nil {
		return nil, reasoned(err, ErrClientIDInvalid)
	}
	id, err := p.authn.Authenticate(ctx, cl, cred)
	if err == nil && id == nil {
		err = fmt.Errorf("%w: authenticator returned no identity", ErrBadCredentials)
	}
	if err != nil {
		// Server overload (a full verification queue, a backend down) is
		// not the client's failed login.
		if c := CodeOf(err); p.Limiter != nil && c != CodeServerBusy && c != CodeServerUnavailable {
			_ = p.Limiter.Allow(cl, LimitAuthFailure, 1)
		}
		if errors.Is(err, ErrAbstain) {
			return nil, fmt.Errorf("%w: no authenticator accepted the credentials", ErrBadCredentials)
		}
		return nil, reasoned(err, ErrBadCredentials)
	}
	now := p.now()
	if !id.Expiry.IsZero() && !now.Before(id.Expiry) {
		return nil, fmt.Errorf("%w: credentials expired at %s", ErrBadCredentials, id.Expiry.UTC().Format(time.RFC3339))
	}
	// Decisions after CONNECT key on the authenticated principal, never on
	// a user name the client merely claimed (a certificate-authenticated
	// client could otherwise send "admin" and get admin's rules).
	if id.Method != MethodAnonymous {
		if id.Subject == "" {
			return nil, fmt.Errorf("%w: authenticator returned an identity without a subject", ErrBadCredentials)
		}
		cl.Username = id.Subject
	} else {
		cl.Username = ""
	}
	cl.Identity = id
	s := &Session{g: g, client: *cl}
	b := bind(p, &s.client)
	s.bound.Store(b)
	if will != nil {
		if p.MaxPayload > 0 && len(will.Payload) > p.MaxPayload {
			return nil, fmt.Errorf("will message: %w", ErrPacketTooLarge)
		}
		if err := checkPublish(ctx, b, &s.client, will); err != nil {
			return nil, fmt.Errorf("will message: %w", err)
		}
	}
	release, err := p.registry.Claim(ctx, &s.client)
	if err != nil {
		return nil, reasoned(err, ErrClientIDTaken)
	}
	if release == nil {
		release = func() {}
	}
	s.release = release
	if !id.Expiry.IsZero() {
		s.timer = time.AfterFunc(id.Expiry.Sub(now), s.expire)
	}
	return s, nil
}

func (s *Session) expire() {
	if s.ended.Load() {
		return
	}
	s.expired.Store(true)
	p := s.g.parts.Load()
	p.emit(Event{Kind: EventExpired, ClientID: s.client.ID, Username: s.client.Username,
		RemoteAddr: s.client.RemoteAddr, Code: CodeMaximumConnectTime, Err: ErrExpired})
	if d := s.g.disc.Load(); d != nil && *d != nil {
		(*d).Disconnect(s, CodeMaximumConnectTime)
	}
}

// reasoned makes sure err carries a reason code: errors without one are
// wrapped in def.
func reasoned(err error, def *ReasonError) error {
	var re *ReasonError
	if errors.As(err, &re) {
		return err
	}
	if errors.Is(err, ErrAbstain) {
		return def
	}
	return fmt.Errorf("%w: %w", def, err)
}

// Publish decides a PUBLISH: topic-name validation, payload size, rate
// limits, then authorization. It allocates nothing when it allows.
func (g *Guard) Publish(ctx context.Context, s *Session, m *Message) error {
	if s.expired.Load() {
		return ErrExpired
	}
	b := s.binding()
	if err := topic.ValidateName(m.Topic); err != nil {
		return g.deny(b.p, s, EventPublishDenied, m.Topic, fmt.Errorf("%w: %w", ErrTopicNameInvalid, err))
	}
	if b.p.MaxPayload > 0 && len(m.Payload) > b.p.MaxPayload {
		return g.deny(b.p, s, EventPublishDenied, m.Topic, ErrPacketTooLarge)
	}
	if b.p.Limiter != nil {
		if err := b.p.Limiter.Allow(&s.client, LimitPublish, len(m.Payload)); err != nil {
			return g.deny(b.p, s, EventPublishDenied, m.Topic, reasoned(err, ErrRateTooHigh))
		}
	}
	if err := checkPublish(ctx, b, &s.client, m); err != nil {
		return g.deny(b.p, s, EventPublishDenied, m.Topic, err)
	}
	return nil
}

func checkPublish(ctx context.Context, b *binding, cl *Client, m *Message) error {
	if err := topic.ValidateName(m.Topic); err != nil {
		return fmt.Errorf("%w: %w", ErrTopicNameInvalid, err)
	}
	var err error
	if b.msg != nil {
		err = b.msg.AuthorizeMessage(ctx, cl, m)
	} else {
		err = b.authz.Authorize(ctx, cl, Publish, m.Topic)
	}
	return authzErr(err)
}

// authzErr turns an abstention into a denial; it does not allocate.
func authzErr(err error) error {
	if err != nil && errors.Is(err, ErrAbstain) {
		return ErrNotAuthorized
	}
	return err
}

// Subscribe decides one topic filter of a SUBSCRIBE: filter validation,
// then authorization of the filter (without any $share prefix).
func (g *Guard) Subscribe(ctx context.Context, s *Session, filter string) error {
	if s.expired.Load() {
		return ErrExpired
	}
	b := s.binding()
	if err := topic.ValidateFilter(filter); err != nil {
		return g.deny(b.p, s, EventSubscribeDenied, filter, fmt.Errorf("%w: %w", ErrTopicFilterInvalid, err))
	}
	inner, _ := topic.Unshare(filter)
	if err := authzErr(b.authz.Authorize(ctx, &s.client, Subscribe, inner)); err != nil {
		return g.deny(b.p, s, EventSubscribeDenied, filter, err)
	}
	return nil
}

// Deliver decides whether a message published on topic may be delivered to
// the session's client. It runs once per message per subscriber, retained
// messages included, and allocates nothing when it allows.
func (g *Guard) Deliver(ctx context.Context, s *Session, topic string) error {
	if s.expired.Load() {
		return ErrExpired
	}
	b := s.binding()
	if err := authzErr(b.authz.Authorize(ctx, &s.client, Receive, topic)); err != nil {
		return g.deny(b.p, s, EventReceiveDenied, topic, err)
	}
	return nil
}

func (g *Guard) deny(p *parts, s *Session, kind EventKind, topic string, err error) error {
	p.emit(Event{Kind: kind, ClientID: s.client.ID, Username: s.client.Username,
		RemoteAddr: s.client.RemoteAddr, Topic: topic, Code: CodeOf(err), Err: err})
	return err
}

// Disconnect ends a session: it stops the expiry timer and releases the
// client ID. It is safe to call more than once; only the first call acts.
func (g *Guard) Disconnect(s *Session) {
	if s == nil || !s.ended.CompareAndSwap(false, true) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.release()
	p := g.parts.Load()
	p.emit(Event{Kind: EventDisconnected, ClientID: s.client.ID, Username: s.client.Username,
		RemoteAddr: s.client.RemoteAddr})
}

type denyAll struct{}

func (denyAll) Authorize(context.Context, *Client, Access, string) error {
	return ErrNotAuthorized
}

// MaxClientIDLen is the longest client ID [DefaultClientIDPolicy] accepts.
const MaxClientIDLen = 256

// DefaultClientIDPolicy accepts client IDs of 1 to [MaxClientIDLen] bytes of
// valid UTF-8 without control characters, '+' or '#', and not starting with
// '$' (all have a meaning in topic rules: with a "%c/#" rule a client named
// "$SYS" would reach broker topics). It denies with [ErrClientIDInvalid].
var DefaultClientIDPolicy ClientIDPolicy = ClientIDPolicyFunc(func(cl *Client) error {
	id := cl.ID
	if id == "" || len(id) > MaxClientIDLen {
		return fmt.Errorf("%w: length %d not in 1..%d", ErrClientIDInvalid, len(id), MaxClientIDLen)
	}
	if id[0] == '$' {
		return fmt.Errorf("%w: %q starts with '$'", ErrClientIDInvalid, id)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: invalid UTF-8", ErrClientIDInvalid)
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '+' || r == '#' {
			return fmt.Errorf("%w: %q contains a control or wildcard character", ErrClientIDInvalid, id)
		}
	}
	return nil
})

// memRegistry is the default Registry: a client ID moves only between
// connections of the same identity, and it stays bound to that identity
// while any of its claims is live (a takeover whose new connection ends
// first does not free the ID of the old one).
type memRegistry struct {
	mu sync.Mutex
	m  map[string]*regEntry
}

type regEntry struct {
	subject string
	method  Method
	claims  int
}

func (r *memRegistry) Claim(_ context.Context, cl *Client) (func(), error) {
	id := cl.Identity
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.m[cl.ID]
	if ok && (e.subject != id.Subject || e.method != id.Method) {
		return nil, fmt.Errorf("%w: %q", ErrClientIDTaken, cl.ID)
	}
	if !ok {
		e = &regEntry{subject: id.Subject, method: id.Method}
		r.m[cl.ID] = e
	}
	e.claims++
	clientID := cl.ID
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if e.claims--; e.claims == 0 && r.m[clientID] == e {
				delete(r.m, clientID)
			}
			r.mu.Unlock()
		})
	}, nil
}
