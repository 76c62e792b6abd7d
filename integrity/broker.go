package integrity

import (
	"context"
	"fmt"

	"github.com/mqttsec/mqttsec"
)

// Protect returns an [mqttsec.Authorizer] for a broker's [mqttsec.Guard]
// that asks next first and then, for a PUBLISH or will message on a topic
// v's policy protects, requires an envelope ([Envelope]) that v verifies
// with a key bound to the publishing client's authenticated subject
// (Identity.Subject): device A cannot sign as device B, and a message A
// signed cannot be published by B. Subscriptions and deliveries are
// next's decisions alone.
//
// The returned authorizer is also an [mqttsec.MessageAuthorizer] (the
// Guard gives it the whole message), an [mqttsec.SubscriptionAuthorizer]
// (passing next's QoS decision through) and an [mqttsec.ClientBinder]: when
// next binds per client (acl.Casbin), the binding is kept. A denial carries
// reason code 0x99 (payload format invalid) when the message is not in the
// protected form ([ErrUnsigned], [ErrMalformed], [ErrNotEncrypted]) and
// 0x87 (not authorized) otherwise, wrapping the sentinel that says why; see
// [Code]. An MQTT 3.1.1 publisher's message is dropped and the Guard
// reports the denial as an event.
//
// v's replay state then belongs to the broker: give it its own Verifier.
// A nil next denies everything.
func Protect(next mqttsec.Authorizer, v *Verifier) mqttsec.Authorizer {
	return &protector{next: next, v: v}
}

type protector struct {
	next mqttsec.Authorizer
	v    *Verifier
}

var errNoNext = fmt.Errorf("%w: integrity: no authorizer to protect", mqttsec.ErrNotAuthorized)

// Authorize implements [mqttsec.Authorizer]. A publish to a protected topic
// checked by topic alone is refused: its payload must be checked
// (AuthorizeMessage, which a Guard uses).
func (p *protector) Authorize(ctx context.Context, cl *mqttsec.Client, a mqttsec.Access, t string) error {
	if p.next == nil {
		return errNoNext
	}
	if a&mqttsec.Publish != 0 && p.v.policy.lookup(t) != nil {
		return fmt.Errorf("%w: integrity: publish to protected topic %q checked without its payload", mqttsec.ErrNotAuthorized, t)
	}
	return p.next.Authorize(ctx, cl, a, t)
}

// AuthorizeMessage implements [mqttsec.MessageAuthorizer].
func (p *protector) AuthorizeMessage(ctx context.Context, cl *mqttsec.Client, m *mqttsec.Message) error {
	var err error
	switch n := p.next.(type) {
	case nil:
		return errNoNext
	case mqttsec.MessageAuthorizer:
		err = n.AuthorizeMessage(ctx, cl, m)
	default:
		err = n.Authorize(ctx, cl, mqttsec.Publish, m.Topic)
	}
	if err != nil {
		return err
	}
	return p.v.CheckPublish(ctx, cl, m)
}

// AuthorizeSubscription implements [mqttsec.SubscriptionAuthorizer] by
// asking next.
func (p *protector) AuthorizeSubscription(ctx context.Context, cl *mqttsec.Client, sub *mqttsec.Subscription) (byte, error) {
	switch n := p.next.(type) {
	case nil:
		return 0, errNoNext
	case mqttsec.SubscriptionAuthorizer:
		return n.AuthorizeSubscription(ctx, cl, sub)
	default:
		return sub.QoS, n.Authorize(ctx, cl, mqttsec.Subscribe, sub.Filter)
	}
}

// Bind implements [mqttsec.ClientBinder]: it binds next, when next binds.
func (p *protector) Bind(cl *mqttsec.Client) mqttsec.Authorizer {
	if cb, ok := p.next.(mqttsec.ClientBinder); ok {
		if b := cb.Bind(cl); b != nil {
			return &protector{next: b, v: p.v}
		}
	}
	return p
}

var (
	_ mqttsec.MessageAuthorizer      = (*protector)(nil)
	_ mqttsec.SubscriptionAuthorizer = (*protector)(nil)
	_ mqttsec.ClientBinder           = (*protector)(nil)
)

// CheckPublish is the broker check of [Protect] on its own: it returns nil
// when m's topic is not protected, or m verifies with a key bound to cl's
// authenticated subject — an envelope, or a detached signature in the user
// property [PropertyName] (m.UserProperties, which the adapter fills for
// MQTT 5) — and otherwise a denial carrying the reason code of [Code]. An
// anonymous client cannot publish on a protected topic. A verified message
// is recorded in v's replay window. A will message (m.Will) is checked for
// its signature and key binding only: the broker checks it at CONNECT and
// again when it sends it, possibly long after, and its receivers check
// freshness and replay.
func (v *Verifier) CheckPublish(ctx context.Context, cl *mqttsec.Client, m *mqttsec.Message) error {
	r := v.policy.lookup(m.Topic)
	if r == nil {
		return nil
	}
	if cl == nil || cl.Identity == nil || cl.Identity.Subject == "" || cl.Identity.Method == mqttsec.MethodAnonymous {
		return denial(fmt.Errorf("%w: anonymous publisher on %q", ErrKeyNotBound, m.Topic))
	}
	sig := ""
	for _, up := range m.UserProperties {
		if up.Key != PropertyName {
			continue
		}
		if sig != "" {
			return denial(fmt.Errorf("%w: more than one %q property", ErrMalformed, PropertyName))
		}
		if sig = up.Value; sig == "" {
			return denial(errProp)
		}
	}
	mode := modeBroker
	if m.Will {
		mode = modeWill
	}
	if _, err := v.verify(ctx, r, m.Topic, m.Payload, sig, cl.Identity.Subject, mode); err != nil {
		return denial(err)
	}
	return nil
}
