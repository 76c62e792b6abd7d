package mqttsec

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Access is what a client asks to do with a topic. The values are bits so
// that a [Grant] can name several.
type Access uint8

// The accesses a decision is about.
const (
	// Publish is a PUBLISH from the client (and its will message).
	Publish Access = 1 << iota
	// Subscribe is a SUBSCRIBE with a topic filter.
	Subscribe
	// Receive is the delivery of a published message to a subscriber.
	Receive
)

// String returns "publish", "subscribe", "receive", or a "|"-joined list.
func (a Access) String() string {
	var s string
	for _, v := range [...]struct {
		a    Access
		name string
	}{{Publish, "publish"}, {Subscribe, "subscribe"}, {Receive, "receive"}} {
		if a&v.a != 0 {
			if s != "" {
				s += "|"
			}
			s += v.name
		}
	}
	if s == "" {
		return "none"
	}
	return s
}

// Method names how an [Identity] was authenticated.
type Method string

// The authentication methods of this module.
const (
	MethodPassword  Method = "password"
	MethodJWT       Method = "jwt"
	MethodX509      Method = "x509"
	MethodAnonymous Method = "anonymous"
)

// Identity is who a connection was authenticated as. An Identity is built
// once at CONNECT and must not be modified afterwards; it is read by every
// later decision for the connection.
type Identity struct {
	// Subject is the authenticated principal: a username, a token subject,
	// a certificate name. Two connections with the same Subject and Method
	// are the same principal (client-ID binding relies on it).
	Subject string
	// Method is how the subject was authenticated.
	Method Method
	// Roles are the groups the subject belongs to, if the authenticator
	// knows them (a token claim, say). Authorizers resolve further roles
	// on their own side (see [ClientBinder]); they must not modify an
	// Identity, which authenticators may share between connections.
	Roles []string
	// Expiry is when the credential stops being valid; zero means never.
	// The Guard asks the broker to disconnect the client with 0xA0 then.
	Expiry time.Time
	// Attributes carries authenticator-specific facts (certificate serial,
	// token issuer, ...). Never a secret.
	Attributes map[string]string
	// Grants are permissions carried by the credential itself (a JWT "acl"
	// claim). Nil means the credential carries none; how grants combine with
	// the broker's policy is the authorizer's documented choice.
	Grants []Grant
}

// Grant is one permission carried by a credential, in the shape of EMQX's
// JWT "acl" claim.
type Grant struct {
	// Allow is true for "allow", false for "deny".
	Allow bool
	// Access is the set of accesses the grant applies to. Subscribe grants
	// also cover Receive.
	Access Access
	// Topic is a topic filter; it may contain placeholders (see topic.Expand).
	Topic string
	// QoS, when non-empty, limits the grant to these QoS levels.
	QoS []byte
	// Retain, when non-nil, limits the grant to publishes with this flag.
	Retain *bool
}

// Client is what a decision knows about one connection. The adapter fills
// it at CONNECT; the Guard adds the Identity.
type Client struct {
	// ID is the MQTT client identifier (after the broker assigned one, if
	// the client sent none).
	ID string
	// Username is the user name field of CONNECT, possibly empty. After
	// authentication the Guard replaces it with Identity.Subject (empty for
	// an anonymous identity), so authorizers, %u placeholders and events
	// of a connection see the authenticated principal, never a name the
	// client merely claimed (as Mosquitto's use_identity_as_username).
	Username string
	// RemoteAddr is the peer address as "ip:port".
	RemoteAddr string
	// Listener names the listener the connection arrived on.
	Listener string
	// TLS is the state of the TLS connection, nil for plaintext.
	TLS *tls.ConnectionState
	// Protocol is the MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5.
	Protocol byte
	// CleanStart is the clean start (clean session) flag.
	CleanStart bool
	// Assigned is true when the client sent no client ID and the broker
	// assigned ID: an ID the client did not choose (a client-ID binding
	// does not apply to it).
	Assigned bool
	// SessionExpiry is how long the broker will keep the session after the
	// connection ends, as the client asked and the broker allows: the MQTT
	// v5 session expiry interval, the broker's expiry for a 3.1.1 client
	// without clean session, zero when the session ends with the
	// connection. A CONNECT with SessionExpiry > 0 takes a persistent
	// session of the subject's [Quotas].
	SessionExpiry time.Duration
	// Identity is set by the Guard after authentication.
	Identity *Identity
}

// IP returns the host part of RemoteAddr, or RemoteAddr itself when it has
// no port.
func (c *Client) IP() string {
	host, _, err := net.SplitHostPort(c.RemoteAddr)
	if err != nil {
		return c.RemoteAddr
	}
	return host
}

// Credentials are the secrets of a CONNECT. They are passed to
// authenticators and never stored by the Guard.
type Credentials struct {
	// Password is the password field (a password or a token).
	Password []byte
	// AuthMethod and AuthData are MQTT v5 enhanced authentication.
	AuthMethod string
	AuthData   []byte
}

// Message is a PUBLISH (or a will message) as far as a decision needs it.
// Payload and UserProperties must not be retained or modified by a decision.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// UserProperties are the MQTT 5 user properties of the message, in
	// order (nil for MQTT 3.1.1 and when the adapter does not pass them).
	UserProperties []UserProperty
	// Will is true for a will message, checked at CONNECT and again when
	// it is sent ([Guard.Will]).
	Will bool
	// PropertyBytes is the size of the message's MQTT v5 properties (user
	// properties, correlation data, ...), which a broker keeps with a
	// retained message: the retained quotas count it (see [Quotas]).
	PropertyBytes int
}

// UserProperty is one MQTT 5 user property.
type UserProperty struct {
	Key, Value string
}

// Subscription is one topic filter of a SUBSCRIBE with its options, as far
// as a decision needs them.
type Subscription struct {
	// Filter is the topic filter. [Guard.Subscribe] takes it as sent
	// ("$share/group/f" included); an [Authorizer] is shown the filter with
	// any $share prefix removed.
	Filter string
	// QoS is the maximum QoS the client asks for.
	QoS byte
	// NoLocal, RetainAsPublished and RetainHandling are the MQTT v5
	// subscription options (zero for MQTT 3.1.1).
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
}

// Authenticator verifies the credentials of a CONNECT. It returns the
// Identity on success, [ErrAbstain] when it does not apply, or a denial
// (wrapping [ErrBadCredentials] or another sentinel).
type Authenticator interface {
	Authenticate(ctx context.Context, cl *Client, cred Credentials) (*Identity, error)
}

// AuthenticatorFunc adapts a function to an Authenticator.
type AuthenticatorFunc func(ctx context.Context, cl *Client, cred Credentials) (*Identity, error)

// Authenticate calls f(ctx, cl, cred).
func (f AuthenticatorFunc) Authenticate(ctx context.Context, cl *Client, cred Credentials) (*Identity, error) {
	return f(ctx, cl, cred)
}

// Authorizer decides whether a client may publish to, subscribe to or
// receive from a topic. It returns nil to allow, or a denial (wrapping
// [ErrNotAuthorized]). For Subscribe, topic is a filter (with any $share
// prefix removed); for Publish and Receive it is a topic name.
type Authorizer interface {
	Authorize(ctx context.Context, cl *Client, a Access, topic string) error
}

// AuthorizerFunc adapts a function to an Authorizer.
type AuthorizerFunc func(ctx context.Context, cl *Client, a Access, topic string) error

// Authorize calls f(ctx, cl, a, topic).
func (f AuthorizerFunc) Authorize(ctx context.Context, cl *Client, a Access, topic string) error {
	return f(ctx, cl, a, topic)
}

// SubscriptionAuthorizer is implemented by an Authorizer that also looks at
// the QoS and options of a subscription (a credential grant limited to some
// QoS levels, say). When present, the Guard calls AuthorizeSubscription
// instead of Authorize for subscriptions. It returns the highest QoS it
// grants, at most sub.QoS (MQTT lets a server grant less than asked, and
// every delivery of the subscription is then at most that QoS), or a
// denial. sub.Filter has any $share prefix removed; sub must not be
// retained.
type SubscriptionAuthorizer interface {
	AuthorizeSubscription(ctx context.Context, cl *Client, sub *Subscription) (qos byte, err error)
}

// ClientBinder is implemented by an Authorizer that can do its per-client
// work (resolving roles, expanding placeholders) once at CONNECT. The Guard
// calls Bind after authentication and uses the returned Authorizer for every
// later check of that connection; it calls Bind again after the Guard's
// parts are swapped. The bound Authorizer must itself notice policy changes
// (a generation number) so that no decision uses a stale policy.
type ClientBinder interface {
	Bind(cl *Client) Authorizer
}

// MessageAuthorizer is implemented by an Authorizer that also looks at the
// QoS and retain flag of a PUBLISH. When present, the Guard calls
// AuthorizeMessage instead of Authorize for publishes and will messages.
type MessageAuthorizer interface {
	AuthorizeMessage(ctx context.Context, cl *Client, m *Message) error
}

// ClientIDPolicy validates a client identifier before authentication.
type ClientIDPolicy interface {
	ValidateClientID(cl *Client) error
}

// ClientIDPolicyFunc adapts a function to a ClientIDPolicy.
type ClientIDPolicyFunc func(cl *Client) error

// ValidateClientID calls f(cl).
func (f ClientIDPolicyFunc) ValidateClientID(cl *Client) error { return f(cl) }

// Revalidator is implemented by an [Authenticator] whose credentials can be
// withdrawn while a connection lives: a user removed from a password file
// or given a new password, a certificate revoked by a new CRL, a signing key
// removed from a JWKS. [Guard.Revalidate] asks it about every live and kept
// session (cl.Identity is set); it returns nil when it issued cl.Identity
// and still stands by it, a denial carrying a reason code (wrapping
// [ErrBadCredentials] or [ErrNotAuthorized], say) when the credentials no
// longer hold, and [ErrAbstain] when the identity is not one it issued. An
// error without a reason code, or with 0x88/0x89 (a backend that cannot be
// reached), is no verdict and keeps the session. A session whose
// authenticator denies is ended (see [Guard.Revalidate]); an abstention
// keeps it.
type Revalidator interface {
	Revalidate(ctx context.Context, cl *Client) error
}

// Registry tracks which identity holds which client ID, so that no
// connection or kept session is handed to another identity. Claim is
// called after authentication; it returns a denial when the connection may
// not take the ID (another identity holds it, live or for a kept session),
// or a [Lease].
//
// cl is the session's own client ([Session.Client] returns the same
// pointer), so a registry may keep it to find the session later (to kick it
// when another node takes its ID over, say).
type Registry interface {
	Claim(ctx context.Context, cl *Client) (Lease, error)
}

// Lease is a connection's hold on its client ID, returned by
// [Registry.Claim].
type Lease struct {
	// Resume is true when the ID was held, by a live connection or a kept
	// session, by the same identity: only then may the connection resume a
	// session the broker kept for the ID. An adapter discards a kept
	// session it is not told to resume, whoever it belonged to.
	Resume bool
	// Release gives the ID back when the connection ends; the Guard calls
	// it exactly once. keep is how long the broker keeps the session (its
	// subscriptions, queued messages and delayed will) after the
	// connection; the ID stays bound to the identity for that long, so no
	// other identity can take over, cancel or discard the kept session.
	// Nil means nothing to release.
	Release func(keep time.Duration)
}

// Limit names what a [Limiter] is asked about.
type Limit uint8

// The limits a Guard asks about.
const (
	// LimitConnect is a connection attempt, before authentication (n = 1).
	LimitConnect Limit = iota + 1
	// LimitAuthFailure records a failed authentication (n = 1); the result
	// is ignored.
	LimitAuthFailure
	// LimitPublish is a PUBLISH of n payload bytes.
	LimitPublish
	// LimitSubscribe is a SUBSCRIBE of n topic filters.
	LimitSubscribe
)

// Limiter enforces rates and quotas. It returns nil to allow or a denial
// (wrapping [ErrRateTooHigh], [ErrConnectionRate], [ErrQuotaExceeded] or
// [ErrBanned]).
type Limiter interface {
	Allow(cl *Client, l Limit, n int) error
}

// LimiterFunc adapts a function to a Limiter.
type LimiterFunc func(cl *Client, l Limit, n int) error

// Allow calls f(cl, l, n).
func (f LimiterFunc) Allow(cl *Client, l Limit, n int) error { return f(cl, l, n) }

// Disconnector is implemented by a broker adapter: it closes the connection
// of a session with a reason code (0xA0 when credentials expire, 0x87 when
// they are revoked, 0x98 for an administrator's kick or a ban), mapped with
// [ReasonCode.ForDisconnect] for a v5 DISCONNECT. For a session the broker
// keeps after its connection ended ([Session.Kept]), it discards the kept
// session (its subscriptions, queued messages and delayed will) and may end
// it with Guard.Disconnect(s, 0) from within Disconnect. It must not block
// and is a no-op for a session that already ended.
type Disconnector interface {
	Disconnect(s *Session, code ReasonCode)
}

// EventKind names a security event.
type EventKind uint8

// The security events a Guard reports.
const (
	EventConnectDenied EventKind = iota + 1
	EventConnected
	EventPublishDenied
	EventSubscribeDenied
	EventReceiveDenied
	EventExpired
	EventDisconnected
	EventReload
	EventError
	// EventWarning is a condition that needs attention before it becomes
	// an error: a certificate that expires soon, a stale CRL.
	EventWarning
	// EventReloadFailed is a reload that failed (a file that does not
	// parse, say); the previous state stays in force. Err says why.
	EventReloadFailed
	// EventRevoked is a live or kept session ended because a right it
	// relied on was withdrawn: credentials that no longer verify, an
	// administrator's kick, a ban.
	EventRevoked
	// EventWillDenied is a will message refused when it was due to be
	// sent: not published, not retained.
	EventWillDenied
	// EventDropped is a broker adapter dropping messages to bound its
	// memory: messages for a subscriber that does not read them fast
	// enough (a slow consumer, which may be disconnected, Code 0x97), for
	// a kept session whose queue is full, or beyond the broker's outbound
	// budget. Adapters report the first drop of a series, not each one.
	EventDropped
	// EventBanned is a ban added automatically (failed logins, flapping)
	// or by an administrator; Err says what is banned, until when and why.
	EventBanned
)

// String returns the event kind in snake case.
func (k EventKind) String() string {
	switch k {
	case EventConnectDenied:
		return "connect_denied"
	case EventConnected:
		return "connected"
	case EventPublishDenied:
		return "publish_denied"
	case EventSubscribeDenied:
		return "subscribe_denied"
	case EventReceiveDenied:
		return "receive_denied"
	case EventExpired:
		return "expired"
	case EventDisconnected:
		return "disconnected"
	case EventReload:
		return "reload"
	case EventError:
		return "error"
	case EventWarning:
		return "warning"
	case EventReloadFailed:
		return "reload_failed"
	case EventRevoked:
		return "revoked"
	case EventWillDenied:
		return "will_denied"
	case EventDropped:
		return "dropped"
	case EventBanned:
		return "banned"
	}
	return "unknown"
}

// Event is a security event. It never carries a password or token.
type Event struct {
	Time       time.Time
	Kind       EventKind
	ClientID   string
	Username   string
	RemoteAddr string
	// Listener is the listener the client connected through
	// ([Client.Listener]), when the event is about a client.
	Listener string
	Topic    string
	Code     ReasonCode
	Err      error
	// Source names the part that reported the event when it is not a
	// decision of the Guard: "passwords", "acl", "tls", "jwks", ...
	Source string
	// File is the file a reload event is about, if any.
	File string
}

// EventSink receives security events. Event is called synchronously on the
// decision path and must not block; it may be called concurrently.
type EventSink interface {
	Event(e Event)
}

// EventSinkFunc adapts a function to an EventSink.
type EventSinkFunc func(e Event)

// Event calls f(e).
func (f EventSinkFunc) Event(e Event) { f(e) }

// SlogSink returns an EventSink that writes events to l: denials at Warn,
// receive denials (one per message per subscriber) at Debug, the rest at
// Info. A nil l means slog.Default().
//
// Denials of one client's messages (publish, subscribe, receive, drops)
// are written at most once per second per client and kind (see
// [EventSampler]): a flooding client, or a subscriber of a topic it may not
// read, does not flood the log. The events left out are counted, and the
// count is written (at Warn, "mqttsec events suppressed") once a second
// while there are any.
func SlogSink(l *slog.Logger) EventSink {
	return &slogSink{l: l}
}

// EventSampler decides which events a log writes when one client keeps
// being denied: denials of its messages (publish, subscribe, receive) and
// drops are passed at most once per second per client and kind; the rest
// are counted. Other events always pass. A log sink calls Sample for each
// event, writes it when Sample says so, and writes the count of the events
// left out that Sample returns (once a second while there are any). It
// remembers at most 10,000 clients a second: past that, every further
// denial of the second is counted, not passed. The zero value is ready to
// use; an EventSampler is safe for concurrent use and must not be copied.
type EventSampler struct {
	mu         sync.Mutex
	window     int64 // the second the sample is about (Unix)
	seen       map[sampleKey]struct{}
	suppressed int
}

// eventSampleCap bounds the clients an EventSampler remembers per second.
const eventSampleCap = 10000

type sampleKey struct {
	kind     EventKind
	clientID string
}

// Sample reports whether e is to be written, and the number of events left
// out in the second that just ended (to be reported first).
func (s *EventSampler) Sample(e Event) (write bool, suppressed int) {
	switch e.Kind {
	case EventPublishDenied, EventSubscribeDenied, EventReceiveDenied, EventDropped:
	default:
		return true, 0
	}
	sec := e.Time.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[sampleKey]struct{})
	}
	if sec != s.window {
		suppressed, s.suppressed, s.window = s.suppressed, 0, sec
		clear(s.seen)
	}
	k := sampleKey{e.Kind, e.ClientID}
	if _, ok := s.seen[k]; ok || len(s.seen) >= eventSampleCap {
		s.suppressed++
		return false, suppressed
	}
	s.seen[k] = struct{}{}
	return true, suppressed
}

type slogSink struct {
	l *slog.Logger
	s EventSampler
}

func (s *slogSink) Event(e Event) {
	l := s.l
	if l == nil {
		l = slog.Default()
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	write, dropped := s.s.Sample(e)
	if dropped > 0 {
		l.LogAttrs(context.Background(), slog.LevelWarn, "mqttsec events suppressed",
			slog.Int("count", dropped), slog.String("reason", "more than one denial per client and kind in a second"))
	}
	if !write {
		return
	}
	level := slog.LevelInfo
	switch e.Kind {
	case EventConnectDenied, EventPublishDenied, EventSubscribeDenied, EventExpired, EventError,
		EventWarning, EventReloadFailed, EventRevoked, EventWillDenied, EventDropped, EventBanned:
		level = slog.LevelWarn
	case EventReceiveDenied, EventDisconnected:
		level = slog.LevelDebug
	}
	ctx := context.Background()
	if !l.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 8)
	if e.ClientID != "" {
		attrs = append(attrs, slog.String("client_id", e.ClientID))
	}
	if e.Username != "" {
		attrs = append(attrs, slog.String("username", e.Username))
	}
	if e.RemoteAddr != "" {
		attrs = append(attrs, slog.String("remote", e.RemoteAddr))
	}
	if e.Listener != "" {
		attrs = append(attrs, slog.String("listener", e.Listener))
	}
	if e.Topic != "" {
		attrs = append(attrs, slog.String("topic", e.Topic))
	}
	if e.Code != CodeSuccess {
		attrs = append(attrs, slog.String("code", e.Code.String()))
	}
	if e.Source != "" {
		attrs = append(attrs, slog.String("source", e.Source))
	}
	if e.File != "" {
		attrs = append(attrs, slog.String("file", e.File))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
	}
	r := slog.NewRecord(e.Time, level, "mqttsec "+e.Kind.String(), 0)
	r.AddAttrs(attrs...)
	_ = l.Handler().Handle(ctx, r)
}
