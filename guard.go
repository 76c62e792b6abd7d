package mqttsec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// with 0x86: there is no implicit anonymous access. When it is a
	// [Revalidator], [Guard.Revalidate] ends sessions whose credentials
	// were withdrawn.
	Authenticator Authenticator
	// Authorizer decides publish, subscribe and receive. Nil denies all of
	// them with 0x87.
	Authorizer Authorizer
	// ClientIDs validates client identifiers before authentication. Nil
	// means [DefaultClientIDPolicy].
	ClientIDs ClientIDPolicy
	// Registry binds client IDs to identities. Nil means an in-memory
	// registry, kept across reloads, that refuses (0x85) a client ID held
	// by a live connection or a kept session of another identity, so an
	// authenticated user can neither take over nor discard another
	// device's session.
	Registry Registry
	// Limiter enforces rates and quotas. Nil applies no limits.
	Limiter Limiter
	// MaxPayload is the largest PUBLISH or will message payload allowed, in
	// bytes. Zero leaves the limit to the broker.
	MaxPayload int
	// MaxTopicLevels is the most levels a topic name or filter may have.
	// MQTT sets no limit, but a broker's topic tree can spend CPU that grows
	// with the square of the depth on every publish (Mosquitto refuses deep
	// topics since CVE-2019-11779): a deeper name is refused with 0x90, a
	// deeper filter with 0x8F. Zero means [DefaultMaxTopicLevels]; negative
	// means no limit.
	MaxTopicLevels int
	// Quotas bounds the retained messages and persistent sessions of each
	// subject (see [Quotas]). The zero value applies the defaults.
	Quotas Quotas
	// Events receives security events. Nil means SlogSink(Logger).
	Events EventSink
	// Logger is used by the default event sink. Nil means slog.Default().
	Logger *slog.Logger
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time
}

// Guard composes authentication, client-ID policy, rate limits and
// authorization into the decisions a broker needs. Each decision answers
// one packet, and an adapter maps a denial's reason code ([CodeOf]) through
// the method for that packet:
//
//	CONNECT     Guard.Connect     CONNACK        ReasonCode.ForConnack, V3Connack
//	PUBLISH     Guard.Publish     PUBACK/PUBREC  ReasonCode.ForPuback, or DISCONNECT when ReasonCode.Disconnects
//	SUBSCRIBE   Guard.Subscribe   SUBACK         ReasonCode.ForSuback, V3Suback (one call per filter)
//	delivery    Guard.Deliver     (not sent)     a denied message is skipped for that subscriber
//	will        Guard.Will        (not sent)     a denied will is neither published nor retained
//	connection  Guard.Disconnect  —              ends the connection; keeps the session's ID bound while the broker keeps it
//	(any time)  Disconnector      DISCONNECT     ReasonCode.ForDisconnect
//
// Deny wins: each step can only refuse, and a missing part denies where
// skipping it would be insecure. The zero Guard denies every CONNECT until
// [Guard.Reload] gives it its parts: a program can hand new(mqttsec.Guard)
// to the file watchers as their event sink first, then build the
// authenticator and authorizer with those watchers, then Reload.
//
// A Guard is safe for concurrent use. [Guard.Reload] swaps its parts
// atomically: a check runs entirely on the old parts or entirely on the new.
// A Guard is also an [EventSink]: give it to the file watchers of the other
// packages, and a credential reload revalidates live sessions.
type Guard struct {
	parts  atomic.Pointer[parts]
	disc   atomic.Pointer[Disconnector]
	memReg memRegistry

	// sessions holds every Session not yet ended (connected or kept).
	sessions sync.Map // *Session -> struct{}
	// kept maps a client ID to the Session whose session the broker
	// keeps after its connection ended.
	kept sync.Map // string -> *Session

	revalMu      sync.Mutex
	revalRunning bool
	revalAgain   bool

	quota quotaState // retained messages and persistent sessions (quota.go)
}

// DefaultMaxTopicLevels is the default of [Config.MaxTopicLevels].
const DefaultMaxTopicLevels = 64

type parts struct {
	Config
	maxLevels int // -1: no limit
	authn     Authenticator
	authz     Authorizer
	ids       ClientIDPolicy
	registry  Registry
	events    EventSink
	now       func() time.Time
}

// New returns a Guard with the given parts.
func New(cfg Config) *Guard {
	g := &Guard{}
	g.parts.Store(g.resolve(cfg))
	return g
}

// Reload replaces the Guard's parts. Connections keep their identities;
// their authorizers are re-bound on their next check, and live sessions
// are revalidated with the new authenticator (see [Guard.Revalidate]).
func (g *Guard) Reload(cfg Config) {
	p := g.resolve(cfg)
	g.parts.Store(p)
	p.emit(Event{Kind: EventReload, Source: "guard"})
	g.scheduleRevalidate()
}

// zeroParts are the parts of a zero Guard: they deny every CONNECT.
var zeroParts = func() *parts {
	p := (&Guard{}).resolve(Config{})
	p.registry = RegistryFunc(func(context.Context, *Client) (Lease, error) {
		return Lease{}, ErrServerUnavailable
	})
	return p
}()

func (g *Guard) load() *parts {
	if p := g.parts.Load(); p != nil {
		return p
	}
	return zeroParts
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
		p.ids = DefaultClientIDPolicy()
	}
	if p.registry == nil {
		g.memReg.g = g
		p.registry = &g.memReg
	}
	if p.events == nil {
		p.events = SlogSink(cfg.Logger)
	}
	if p.now == nil {
		p.now = time.Now
	}
	switch {
	case cfg.MaxTopicLevels == 0:
		p.maxLevels = DefaultMaxTopicLevels
	case cfg.MaxTopicLevels < 0:
		p.maxLevels = -1
	default:
		p.maxLevels = cfg.MaxTopicLevels
	}
	return p
}

// tooDeep reports whether t has more levels than the Guard allows. It
// does not allocate.
func (p *parts) tooDeep(t string) bool {
	return p.maxLevels >= 0 && len(t) >= p.maxLevels && strings.Count(t, "/")+1 > p.maxLevels
}

func (p *parts) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	p.events.Event(e)
}

// Event implements [EventSink]: it passes e to the Guard's event sink, and
// after an [EventReload] of credentials (a password file, a CRL or a key
// set reloaded: any Source but "acl") it revalidates every live and kept
// session in the background (see
// [Guard.Revalidate]). Give the Guard as the event sink of every file
// watcher, so that a withdrawn credential ends the sessions that used it.
func (g *Guard) Event(e Event) {
	g.load().emit(e)
	if e.Kind == EventReload && e.Source != "acl" {
		// A policy reload needs no revalidation: every check of every
		// session reads the current policy.
		g.scheduleRevalidate()
	}
}

// SetDisconnector installs the broker adapter's Disconnector, used to close
// connections whose credentials expire or are revoked.
func (g *Guard) SetDisconnector(d Disconnector) {
	g.disc.Store(&d)
}

func (g *Guard) disconnector() Disconnector {
	if d := g.disc.Load(); d != nil {
		return *d
	}
	return nil
}

// Session is the per-connection state a Guard builds at CONNECT: the
// client, its identity, and its bound authorizer. Later checks take it, so
// a per-message check does no global lookup and takes no lock. A Session
// outlives its connection while the broker keeps the session
// ([Guard.Disconnect] with keep > 0): messages queued for it and its
// delayed will are still checked against it.
//
// A Session is safe for concurrent use.
type Session struct {
	g      *Guard
	client Client
	bound  atomic.Pointer[binding]
	// stop is set when the session may do nothing more: its credentials
	// expired or were revoked, or an administrator ended it.
	stop    atomic.Pointer[error]
	kept    atomic.Bool
	ended   atomic.Bool
	resume  bool
	release func(keep time.Duration)
	lim     ConnLimiter // see ConnectionLimiter; nil for none

	quotaSlot bool // holds a persistent-session slot; guarded by g.quota.smu (quota.go)

	mu        sync.Mutex // guards the timers and closed
	closed    bool       // the connection ended (Disconnect ran once)
	timer     *time.Timer
	keepTimer *time.Timer
}

type binding struct {
	p     *parts
	authz Authorizer
	msg   MessageAuthorizer
	sub   SubscriptionAuthorizer
}

// Client returns the connection's client, with its Identity. It must not be
// modified.
func (s *Session) Client() *Client { return &s.client }

// Identity returns the authenticated identity.
func (s *Session) Identity() *Identity { return s.client.Identity }

// Expired reports whether the session's credentials have expired.
func (s *Session) Expired() bool {
	err := s.stop.Load()
	return err != nil && errors.Is(*err, ErrExpired)
}

// Err returns why the session may do nothing more (expired, revoked,
// kicked), or nil while it may.
func (s *Session) Err() error {
	if err := s.stop.Load(); err != nil {
		return *err
	}
	return nil
}

// Kept reports whether the session's connection ended and the broker keeps
// the session (see [Guard.Disconnect]).
func (s *Session) Kept() bool { return s.kept.Load() && !s.ended.Load() }

// Resume reports whether the connection may resume a session the broker
// kept for its client ID: the ID was last held by the same identity (see
// [Lease]). An adapter discards a kept session when Resume is false.
func (s *Session) Resume() bool { return s.resume }

func (s *Session) binding() *binding {
	p := s.g.load()
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
	b.sub, _ = a.(SubscriptionAuthorizer)
	return b
}

// check returns the error that stops every decision of s: s is nil or
// belongs to another Guard (an adapter bug must deny, not panic), or its
// credentials expired or were revoked. It allocates nothing.
func (g *Guard) check(s *Session) error {
	if s == nil || s.g != g {
		return ErrForeignSession
	}
	if err := s.stop.Load(); err != nil {
		return *err
	}
	if s.ended.Load() {
		return ErrForeignSession
	}
	return nil
}

// Connect decides a CONNECT: limits, client-ID policy, authentication,
// credential expiry, the will message, the persistent-session quota (see
// [Quotas]) and the client-ID registry, in that order. It returns the
// Session for later checks, or a denial whose reason code [CodeOf] gives; a
// CONNACK carries [ReasonCode.ForConnack] of it (v5) or
// [ReasonCode.V3Connack] (3.1.1). cred is not retained.
//
// When the broker keeps a session for cl.ID, the adapter resumes it only
// if [Session.Resume] is true, and discards it otherwise: a kept session is
// never handed to another identity. Either way the adapter then ends the
// kept session's Session with Disconnect(old, 0); until it does, messages
// queued for the kept session are still checked against it.
//
// The expiry timer starts before Connect returns, so it can fire before the
// adapter has registered the session with its [Disconnector]: an adapter
// registers the session, then refuses the connection if [Session.Err] is
// not nil.
func (g *Guard) Connect(ctx context.Context, cl Client, cred Credentials, will *Message) (*Session, error) {
	p := g.load()
	cl.Identity = nil
	// A broker may hand over strings that point into the CONNECT packet,
	// password included: a session must not keep that buffer alive.
	cl.ID, cl.Username = strings.Clone(cl.ID), strings.Clone(cl.Username)
	s, err := g.connect(ctx, p, &cl, cred, will)
	if err != nil {
		p.emit(Event{Kind: EventConnectDenied, ClientID: cl.ID, Username: cl.Username,
			RemoteAddr: cl.RemoteAddr, Listener: cl.Listener, Code: CodeOf(err), Err: err})
		return nil, err
	}
	p.emit(Event{Kind: EventConnected, ClientID: cl.ID, Username: cl.Username, RemoteAddr: cl.RemoteAddr, Listener: cl.Listener})
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
		w := *will
		w.Will = true
		will = &w
		if p.MaxPayload > 0 && len(will.Payload) > p.MaxPayload {
			return nil, fmt.Errorf("will message: %w", ErrPacketTooLarge)
		}
		if err := checkPublish(ctx, b, &s.client, will); err != nil {
			return nil, fmt.Errorf("will message: %w", err)
		}
	}
	if err := openLimiter(p, s); err != nil {
		return nil, err
	}
	if err := g.quota.admitSession(p, s); err != nil {
		s.closeLimiter()
		return nil, err
	}
	lease, err := p.registry.Claim(ctx, &s.client)
	if err != nil {
		g.quota.endSession(s)
		s.closeLimiter()
		return nil, reasoned(err, ErrClientIDTaken)
	}
	s.resume = lease.Resume
	s.release = lease.Release
	g.sessions.Store(s, struct{}{})
	if !id.Expiry.IsZero() {
		s.mu.Lock()
		s.timer = time.AfterFunc(id.Expiry.Sub(now), s.expire)
		s.mu.Unlock()
	}
	return s, nil
}

func (s *Session) expire() {
	if s.ended.Load() {
		return
	}
	s.g.stopSession(s, ErrExpired, EventExpired)
}

// stopSession makes every later decision of s fail with err, reports kind
// and asks the adapter to close the connection (or discard the kept
// session). It reports whether s was stopped by this call.
func (g *Guard) stopSession(s *Session, err error, kind EventKind) bool {
	if !s.stop.CompareAndSwap(nil, &err) {
		return false
	}
	code := CodeOf(err)
	g.load().emit(Event{Kind: kind, ClientID: s.client.ID, Username: s.client.Username,
		RemoteAddr: s.client.RemoteAddr, Listener: s.client.Listener, Code: code, Err: err})
	if d := g.disconnector(); d != nil {
		d.Disconnect(s, code)
	}
	return true
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
// limits, authorization, then for a retained message the subject's retained
// quota (see [Quotas]). A denied message must be neither delivered nor
// retained; the adapter answers with a PUBACK (QoS 1) or PUBREC (QoS 2)
// carrying [ReasonCode.ForPuback] for a v5 client, or ends the connection
// when [ReasonCode.Disconnects]. It allocates nothing when it allows (a
// retained message on a topic without one adds an entry to the quota's
// ledger).
func (g *Guard) Publish(ctx context.Context, s *Session, m *Message) error {
	if err := g.check(s); err != nil {
		return err
	}
	b := s.binding()
	if err := topic.ValidateName(m.Topic); err != nil {
		return g.deny(b.p, s, EventPublishDenied, m.Topic, fmt.Errorf("%w: %w", ErrTopicNameInvalid, err))
	}
	if b.p.tooDeep(m.Topic) {
		return g.deny(b.p, s, EventPublishDenied, m.Topic, fmt.Errorf("%w: more than %d levels", ErrTopicNameInvalid, b.p.maxLevels))
	}
	if b.p.MaxPayload > 0 && len(m.Payload) > b.p.MaxPayload {
		return g.deny(b.p, s, EventPublishDenied, m.Topic, ErrPacketTooLarge)
	}
	if lim := s.limiter(b.p); lim != nil {
		if err := lim.Allow(&s.client, LimitPublish, len(m.Payload)); err != nil {
			return g.deny(b.p, s, EventPublishDenied, m.Topic, reasoned(err, ErrRateTooHigh))
		}
	}
	if err := checkPublish(ctx, b, &s.client, m); err != nil {
		return g.deny(b.p, s, EventPublishDenied, m.Topic, err)
	}
	if m.Retain {
		if err := g.quota.retain(b.p, &s.client, m); err != nil {
			return g.deny(b.p, s, EventPublishDenied, m.Topic, err)
		}
	}
	return nil
}

func checkPublish(ctx context.Context, b *binding, cl *Client, m *Message) error {
	if err := topic.ValidateName(m.Topic); err != nil {
		return fmt.Errorf("%w: %w", ErrTopicNameInvalid, err)
	}
	if b.p.tooDeep(m.Topic) {
		return fmt.Errorf("%w: more than %d levels", ErrTopicNameInvalid, b.p.maxLevels)
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

// Will decides, when the broker is about to send the will message m of s,
// whether it may: the session's credentials must not have expired or been
// revoked, the current policy must allow the publish, and a retained will
// must fit the subject's retained quota (see [Quotas]). The will was
// checked at CONNECT too, but a right can be withdrawn in between (a delayed
// will is sent long after). A denied will is neither published nor
// retained. Will may be called after [Guard.Disconnect] while the session is
// kept, and not after it ended.
func (g *Guard) Will(ctx context.Context, s *Session, m *Message) error {
	if !m.Will {
		w := *m
		w.Will = true
		m = &w
	}
	err := g.check(s)
	if err == nil && s.kept.Load() {
		err = s.expiredNow(s.g.load())
	}
	p := g.load()
	if err == nil {
		b := s.binding()
		p = b.p
		if b.p.MaxPayload > 0 && len(m.Payload) > b.p.MaxPayload {
			err = ErrPacketTooLarge
		} else {
			err = checkPublish(ctx, b, &s.client, m)
		}
		if err == nil && m.Retain {
			err = g.quota.retain(b.p, &s.client, m)
		}
	}
	if err != nil {
		cl := &Client{}
		if s != nil {
			cl = &s.client
		}
		p.emit(Event{Kind: EventWillDenied, ClientID: cl.ID, Username: cl.Username,
			RemoteAddr: cl.RemoteAddr, Listener: cl.Listener, Topic: m.Topic, Code: CodeOf(err), Err: err})
	}
	return err
}

// expiredNow checks the identity's expiry against the Guard's clock. Live
// sessions rely on their timer; a kept session checks the clock too, so an
// injected clock governs what is delivered to it.
func (s *Session) expiredNow(p *parts) error {
	if exp := s.client.Identity.Expiry; !exp.IsZero() && !p.now().Before(exp) {
		return ErrExpired
	}
	return nil
}

// Subscribe decides one topic filter of a SUBSCRIBE: filter validation, a
// rate limit, then authorization of the filter (without any $share
// prefix) and its QoS. It returns the QoS granted, at most sub.QoS (an
// authorizer may grant less, see [SubscriptionAuthorizer]), for the SUBACK;
// a denied filter is answered with [ReasonCode.ForSuback] (v5) or
// [ReasonCode.V3Suback] (3.1.1).
func (g *Guard) Subscribe(ctx context.Context, s *Session, sub Subscription) (qos byte, err error) {
	if err := g.check(s); err != nil {
		return 0, err
	}
	b := s.binding()
	if err := topic.ValidateFilter(sub.Filter); err != nil {
		return 0, g.deny(b.p, s, EventSubscribeDenied, sub.Filter, fmt.Errorf("%w: %w", ErrTopicFilterInvalid, err))
	}
	if sub.QoS > 2 {
		return 0, g.deny(b.p, s, EventSubscribeDenied, sub.Filter, fmt.Errorf("%w: QoS %d", ErrTopicFilterInvalid, sub.QoS))
	}
	if lim := s.limiter(b.p); lim != nil {
		if err := lim.Allow(&s.client, LimitSubscribe, 1); err != nil {
			return 0, g.deny(b.p, s, EventSubscribeDenied, sub.Filter, reasoned(err, ErrQuotaExceeded))
		}
	}
	inner, _ := topic.Unshare(sub.Filter)
	if b.p.tooDeep(inner) {
		return 0, g.deny(b.p, s, EventSubscribeDenied, sub.Filter, fmt.Errorf("%w: more than %d levels", ErrTopicFilterInvalid, b.p.maxLevels))
	}
	qos = sub.QoS
	if b.sub != nil {
		in := sub
		in.Filter = inner
		qos, err = b.sub.AuthorizeSubscription(ctx, &s.client, &in)
		qos = min(qos, sub.QoS)
	} else {
		err = b.authz.Authorize(ctx, &s.client, Subscribe, inner)
	}
	if err := authzErr(err); err != nil {
		return 0, g.deny(b.p, s, EventSubscribeDenied, sub.Filter, err)
	}
	return qos, nil
}

// Deliver decides whether a message published on topic may be delivered to
// the session's client. It runs once per message per subscriber, retained
// messages and messages queued for a kept session included, and allocates
// nothing when it allows. A denied message is skipped for this subscriber.
func (g *Guard) Deliver(ctx context.Context, s *Session, topic string) error {
	if err := g.check(s); err != nil {
		return err
	}
	b := s.binding()
	if s.kept.Load() {
		if err := s.expiredNow(b.p); err != nil {
			return err
		}
	}
	if err := authzErr(b.authz.Authorize(ctx, &s.client, Receive, topic)); err != nil {
		return g.deny(b.p, s, EventReceiveDenied, topic, err)
	}
	return nil
}

func (g *Guard) deny(p *parts, s *Session, kind EventKind, topic string, err error) error {
	p.emit(Event{Kind: kind, ClientID: s.client.ID, Username: s.client.Username,
		RemoteAddr: s.client.RemoteAddr, Listener: s.client.Listener, Topic: topic, Code: CodeOf(err), Err: err})
	return err
}

// Disconnect is called by the adapter when the session's connection ends.
// keep is how long the broker keeps the session afterwards: its
// subscriptions, queued messages and delayed will (for MQTT v5 the session
// expiry interval, or the will delay when that is longer; for a 3.1.1
// clean-session-0 client the broker's own expiry; zero for a clean
// session). The client ID stays bound to the identity for keep (and a
// grace of two seconds, so that a will the broker sends as the session
// expires is still checked against it), the session's messages and will are
// still checked, and [Guard.Revalidate] and [Guard.Kick] still reach it. A
// revoked or expired session is never kept.
//
// Disconnect with keep = 0 on a kept session ends it (the broker resumed,
// discarded or expired it); it also ends by itself after keep, or when
// another kept session of the same client ID replaces it. Disconnect is safe
// to call more than once and with a nil or foreign session.
func (g *Guard) Disconnect(s *Session, keep time.Duration) {
	if s == nil || s.g != g || s.ended.Load() {
		return
	}
	if s.stop.Load() != nil {
		keep = 0
	}
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	s.mu.Unlock()
	if keep > 0 {
		// The broker expires the session on its own clock, and may send
		// the will at that moment: the Guard keeps it, and the ID bound,
		// a little longer.
		keep += keepGrace
	}
	if first {
		s.closeLimiter()
		if s.release != nil {
			s.release(keep)
		}
		g.load().emit(Event{Kind: EventDisconnected, ClientID: s.client.ID, Username: s.client.Username,
			RemoteAddr: s.client.RemoteAddr, Listener: s.client.Listener})
		if keep > 0 {
			s.mu.Lock()
			s.keepTimer = time.AfterFunc(keep, func() { g.end(s) })
			s.mu.Unlock()
			s.kept.Store(true)
			if prev, ok := g.kept.Swap(s.client.ID, s); ok && prev.(*Session) != s {
				g.end(prev.(*Session))
			}
			return
		}
	}
	g.end(s)
}

// keepGrace is added to the time a kept session is kept: see Disconnect.
const keepGrace = 2 * time.Second

// end ends s for good: no decision of it succeeds any more.
func (g *Guard) end(s *Session) {
	if !s.ended.CompareAndSwap(false, true) {
		return
	}
	s.mu.Lock()
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.keepTimer != nil {
		s.keepTimer.Stop()
	}
	s.mu.Unlock()
	g.sessions.Delete(s)
	g.kept.CompareAndDelete(s.client.ID, s)
	g.quota.endSession(s)
}

// Sessions returns the sessions the Guard knows: live connections and
// sessions the broker keeps ([Session.Kept]).
func (g *Guard) Sessions() []*Session {
	var out []*Session
	g.sessions.Range(func(k, _ any) bool {
		out = append(out, k.(*Session))
		return true
	})
	return out
}

// MatchClientID returns a matcher for [Guard.Kick] that selects the session
// of one client ID.
func MatchClientID(id string) func(*Session) bool {
	return func(s *Session) bool { return s.client.ID == id }
}

// MatchSubject returns a matcher for [Guard.Kick] that selects every
// session of one authenticated subject (whatever the method).
func MatchSubject(subject string) func(*Session) bool {
	return func(s *Session) bool { return s.client.Identity != nil && s.client.Identity.Subject == subject }
}

// Kick ends every session match selects, live or kept: later decisions of
// the session fail, an [EventRevoked] is reported, and the adapter's
// [Disconnector] closes the connection with code (mapped with
// [ReasonCode.ForDisconnect]; 0x98 administrative action is the usual one)
// or discards the kept session. It returns the number of sessions ended.
func (g *Guard) Kick(match func(*Session) bool, code ReasonCode) int {
	if match == nil {
		return 0
	}
	err := error(ErrKicked)
	if code != CodeAdministrativeAction {
		err = NewReasonError(code, "mqttsec: disconnected: "+code.String())
	}
	n := 0
	for _, s := range g.Sessions() {
		if !s.ended.Load() && match(s) && g.stopSession(s, err, EventRevoked) {
			n++
		}
	}
	return n
}

// Revalidate asks the authenticator, when it is a [Revalidator], whether
// the credentials of every live and kept session still hold. A session it
// denies is ended as by [Guard.Kick] with 0x87 (not authorized): a user
// removed from the password file or given a new password, a revoked
// certificate, a withdrawn signing key. An abstention or an error without
// a denial's code (a backend that is down) keeps the session. It returns
// the number of sessions ended.
//
// The Guard revalidates by itself after [Guard.Reload] and after an
// [EventReload] reaches [Guard.Event]; call Revalidate after changing
// credentials in a way no watcher reports.
func (g *Guard) Revalidate(ctx context.Context) int {
	rv, ok := g.load().authn.(Revalidator)
	if !ok {
		return 0
	}
	n := 0
	for _, s := range g.Sessions() {
		if ctx.Err() != nil {
			break
		}
		if s.ended.Load() || s.stop.Load() != nil {
			continue
		}
		err := rv.Revalidate(ctx, &s.client)
		if err == nil || errors.Is(err, ErrAbstain) {
			continue
		}
		switch CodeOf(err) {
		case CodeServerBusy, CodeServerUnavailable, CodeUnspecified:
			continue // not a verdict on the credentials
		}
		if g.stopSession(s, fmt.Errorf("%w: %w", ErrRevoked, err), EventRevoked) {
			n++
		}
	}
	return n
}

// revalidateTimeout bounds one background revalidation pass.
const revalidateTimeout = time.Minute

// scheduleRevalidate runs Revalidate in the background; requests that
// arrive while a pass runs are coalesced into one more pass.
func (g *Guard) scheduleRevalidate() {
	if _, ok := g.load().authn.(Revalidator); !ok {
		return
	}
	g.revalMu.Lock()
	if g.revalRunning {
		g.revalAgain = true
		g.revalMu.Unlock()
		return
	}
	g.revalRunning = true
	g.revalMu.Unlock()
	go func() {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), revalidateTimeout)
			g.Revalidate(ctx)
			cancel()
			g.revalMu.Lock()
			if !g.revalAgain {
				g.revalRunning = false
				g.revalMu.Unlock()
				return
			}
			g.revalAgain = false
			g.revalMu.Unlock()
		}
	}()
}

type denyAll struct{}

func (denyAll) Authorize(context.Context, *Client, Access, string) error {
	return ErrNotAuthorized
}

// RegistryFunc adapts a function to a Registry.
type RegistryFunc func(ctx context.Context, cl *Client) (Lease, error)

// Claim calls f(ctx, cl).
func (f RegistryFunc) Claim(ctx context.Context, cl *Client) (Lease, error) { return f(ctx, cl) }

// MaxClientIDLen is the longest client ID [DefaultClientIDPolicy] accepts.
const MaxClientIDLen = 256

// DefaultClientIDPolicy returns the policy a Guard uses when
// [Config.ClientIDs] is nil: client IDs of 1 to [MaxClientIDLen] bytes of
// valid UTF-8 without control characters, '+' or '#', and not starting with
// '$' (all have a meaning in topic rules: with a "%c/#" rule a client named
// "$SYS" would reach broker topics). It denies with [ErrClientIDInvalid].
func DefaultClientIDPolicy() ClientIDPolicy { return defaultClientIDPolicy }

var defaultClientIDPolicy = ClientIDPolicyFunc(func(cl *Client) error {
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
// connections of the same identity; it stays bound to that identity while
// any of its claims is live (a takeover whose new connection ends first
// does not free the ID of the old one) and, after the last one, for as long
// as the broker keeps the session.
type memRegistry struct {
	g       *Guard
	mu      sync.Mutex
	m       map[string]*regEntry
	sweepAt int
}

type regEntry struct {
	subject string
	method  Method
	claims  int
	until   time.Time // with claims == 0: bound until then (a kept session)
}

func (r *memRegistry) Claim(_ context.Context, cl *Client) (Lease, error) {
	id := cl.Identity
	now := r.g.load().now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*regEntry)
	}
	r.sweep(now)
	e, ok := r.m[cl.ID]
	if ok && e.claims == 0 && !now.Before(e.until) {
		delete(r.m, cl.ID)
		ok = false
	}
	if ok && (e.subject != id.Subject || e.method != id.Method) {
		if e.claims == 0 {
			return Lease{}, fmt.Errorf("%w: %q", ErrSessionOwned, cl.ID)
		}
		return Lease{}, fmt.Errorf("%w: %q", ErrClientIDTaken, cl.ID)
	}
	if !ok {
		e = &regEntry{subject: id.Subject, method: id.Method}
		r.m[cl.ID] = e
	}
	// The session is now this connection's: how long it is kept is decided
	// by the releases from here on, not by an earlier connection's.
	e.until = time.Time{}
	e.claims++
	clientID := cl.ID
	var once sync.Once
	return Lease{Resume: ok, Release: func(keep time.Duration) {
		once.Do(func() {
			now := r.g.load().now()
			r.mu.Lock()
			defer r.mu.Unlock()
			e.claims--
			if keep > 0 {
				e.until = later(e.until, now.Add(keep))
			}
			if e.claims == 0 && !now.Before(e.until) && r.m[clientID] == e {
				delete(r.m, clientID)
			}
		})
	}}, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sweep drops expired kept entries once the map has doubled since the
// last sweep, so IDs of sessions nobody resumes do not accumulate. The
// caller holds r.mu.
func (r *memRegistry) sweep(now time.Time) {
	if len(r.m) < r.sweepAt {
		return
	}
	for id, e := range r.m {
		if e.claims == 0 && !now.Before(e.until) {
			delete(r.m, id)
		}
	}
	r.sweepAt = 2*len(r.m) + 1024
}
