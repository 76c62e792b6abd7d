package mqttsec

import "context"

// ConnectionLimiter is implemented by a [Limiter] that keeps state for the
// life of a connection: caps on the connections of a user or an address,
// rate buckets built once at CONNECT (so that a PUBLISH touches no shared
// map), flapping detection (which needs to know when connections end).
//
// The Guard calls Open once a CONNECT is authenticated — the session's
// client has its Identity, and its Username is the identity's subject — and
// before the client ID is claimed. A denial refuses the CONNECT with its
// reason code (0x97 quota exceeded for a cap, 0x8A for a ban). Otherwise the
// Guard asks the returned [ConnLimiter], instead of the Limiter, about every
// PUBLISH and SUBSCRIBE of the connection, and calls its Close exactly once
// when the connection ends: in [Guard.Disconnect] (whether or not the broker
// keeps the session), or at once when a later step of the CONNECT refuses
// it. The ConnLimiter serves the connection for its whole life, across
// [Guard.Reload]: a limiter whose rates change applies them to the
// connections it opened itself.
type ConnectionLimiter interface {
	Limiter
	Open(s *Session) (ConnLimiter, error)
}

// ConnLimiter is the per-connection part of a [ConnectionLimiter]. Its Allow
// is called for the connection's [LimitPublish] and [LimitSubscribe], and
// must be safe for concurrent use; Close tells it the connection ended (the
// signal of a disconnect).
type ConnLimiter interface {
	Limiter
	Close()
}

// CachedAuthenticator is implemented by an [Authenticator] that can answer
// some CONNECTs at once, without the costly work (a password hash
// verification) that a bound on concurrent verifications in front of it is
// meant for: a cache of recent successes, say. AuthenticateCached returns
// the Identity and true when it knows at once that Authenticate would allow
// the CONNECT (the same user name and password verified a moment ago), and
// false when it does not know: then nothing was decided and Authenticate
// must be called. It must not block. A wrapper that bounds verifications
// calls it first, so that a returning client is not queued behind a storm of
// first logins.
type CachedAuthenticator interface {
	AuthenticateCached(ctx context.Context, cl *Client, cred Credentials) (*Identity, bool)
}

// Kick ends this session as [Guard.Kick] ends the sessions it selects: later
// decisions of the session fail with a denial carrying code, an
// [EventRevoked] is reported, and the adapter's [Disconnector] closes the
// connection with code (mapped with [ReasonCode.ForDisconnect]) or discards
// the kept session. A limiter uses it to disconnect a client that keeps
// flooding (0x96). It reports whether this call ended the session; it does
// nothing for a nil session, a session that already ended, or one that was
// already stopped.
func (s *Session) Kick(code ReasonCode) bool {
	if s == nil || s.g == nil || s.ended.Load() {
		return false
	}
	err := error(ErrKicked)
	if code != CodeAdministrativeAction {
		err = NewReasonError(code, "mqttsec: disconnected: "+code.String())
	}
	return s.g.stopSession(s, err, EventRevoked)
}

// openLimiter opens the session's per-connection limiter when the Guard's
// Limiter is a [ConnectionLimiter].
func openLimiter(p *parts, s *Session) error {
	cl, ok := p.Limiter.(ConnectionLimiter)
	if !ok {
		return nil
	}
	lim, err := cl.Open(s)
	if err != nil {
		return reasoned(err, ErrQuotaExceeded)
	}
	s.lim = lim
	return nil
}

// closeLimiter closes the session's per-connection limiter. The Guard
// calls it once: when the connection ends, or when the CONNECT is refused
// after openLimiter.
func (s *Session) closeLimiter() {
	if s.lim != nil {
		s.lim.Close()
	}
}

// limiter returns the limiter for the session's PUBLISH and SUBSCRIBE: its
// own per-connection limiter, or the Guard's Limiter (nil for none).
func (s *Session) limiter(p *parts) Limiter {
	if s.lim != nil {
		return s.lim
	}
	return p.Limiter
}
