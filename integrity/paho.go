package integrity

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/eclipse/paho.golang/paho"
)

// Publisher sends a PUBLISH: *autopaho.ConnectionManager and *paho.Client
// implement it.
type Publisher interface {
	Publish(ctx context.Context, p *paho.Publish) (*paho.PublishResponse, error)
}

// SenderConfig configures a [Sender]. The zero value signs every message
// with the [Envelope] carrier.
type SenderConfig struct {
	// Carrier is how signatures travel. Detached needs MQTT v5 (paho.golang
	// speaks only v5) and a broker check that sees user properties.
	Carrier Carrier
	// Policy, when set, limits signing to the topics it protects, and
	// encrypts the topics of rules with an EncryptionKey. Nil signs every
	// message and encrypts none.
	Policy *Policy
	// Keys finds the content keys named by the policy's EncryptionKey.
	Keys KeySource
}

// Sender signs (and, by policy, encrypts) the messages a paho.golang
// client publishes. It is safe for concurrent use.
type Sender struct {
	signer *Signer
	cfg    SenderConfig
}

// NewSender returns a Sender that signs with s.
func NewSender(s *Signer, cfg SenderConfig) *Sender {
	return &Sender{signer: s, cfg: cfg}
}

// Seal returns a copy of p protected as the configuration says: its payload
// replaced by the envelope, or the signature added as the user property
// [PropertyName] (any such property p had is dropped). p is not modified.
// A topic the policy does not protect is returned unchanged.
func (s *Sender) Seal(ctx context.Context, p *paho.Publish) (*paho.Publish, error) {
	var enc *Key
	if s.cfg.Policy != nil {
		r := s.cfg.Policy.lookup(p.Topic)
		if r == nil {
			return p, nil
		}
		if r.EncryptionKey != "" {
			if s.cfg.Keys == nil {
				return nil, fmt.Errorf("%w: sender: topic %q needs content key %q and no key source is set", ErrConfig, p.Topic, r.EncryptionKey)
			}
			k, err := s.cfg.Keys.Key(ctx, r.EncryptionKey)
			if err != nil {
				return nil, fmt.Errorf("integrity: sender: content key for %q: %w", p.Topic, err)
			}
			enc = k
		}
	}
	sealed, err := s.signer.Seal(p.Topic, p.Payload, s.cfg.Carrier, enc)
	if err != nil {
		return nil, err
	}
	out := *p
	out.Payload = sealed.Payload
	if s.cfg.Carrier == Detached {
		var props paho.PublishProperties
		if p.Properties != nil {
			props = *p.Properties
		}
		props.User = slices.DeleteFunc(slices.Clone(props.User), func(u paho.UserProperty) bool { return u.Key == PropertyName })
		props.User = append(props.User, paho.UserProperty{Key: PropertyName, Value: sealed.Signature})
		out.Properties = &props
	}
	return &out, nil
}

// Publish seals p and publishes it through pub.
func (s *Sender) Publish(ctx context.Context, pub Publisher, p *paho.Publish) (*paho.PublishResponse, error) {
	sp, err := s.Seal(ctx, p)
	if err != nil {
		return nil, err
	}
	return pub.Publish(ctx, sp)
}

// Received is a message a [Receiver] hands to the application.
type Received struct {
	// Publish is a copy of the received PUBLISH whose Payload is the
	// verified (and decrypted) application payload.
	Publish *paho.Publish
	// Verified describes the verified signature; nil when the message was
	// not verified: an unsigned message on a topic the policy does not
	// protect, or (with ReceiverConfig.DeliverRefused) a refused message.
	Verified *Verified
	// Err is why the message was refused (DeliverRefused only).
	Err error
}

// ReceiverConfig configures a [Receiver]. The zero value hands the
// application verified messages only.
type ReceiverConfig struct {
	// DeliverRefused hands refused messages to the handler too, with
	// Verified nil and Err saying why. Off by default.
	DeliverRefused bool
	// OnRefused, when set, is called with every refused message and the
	// reason. It must not block.
	OnRefused func(p *paho.Publish, err error)
}

// Receiver verifies the messages a paho.golang client receives and hands
// the application those that verify, decrypted. Register
// [Receiver.OnPublishReceived] as the client's only handler
// (ClientConfig.OnPublishReceived): a handler after it would see refused
// messages. Messages on topics the verifier's policy does not protect are
// handed over as they are when unsigned (Received.Verified is nil) and
// verified like any other when signed.
//
// A Receiver is safe for concurrent use.
type Receiver struct {
	v      *Verifier
	handle func(Received)
	cfg    ReceiverConfig
}

// NewReceiver returns a Receiver that verifies with v and calls handle for
// each message it accepts.
func NewReceiver(v *Verifier, handle func(Received), cfg ReceiverConfig) *Receiver {
	return &Receiver{v: v, handle: handle, cfg: cfg}
}

// OnPublishReceived verifies pr.Packet and calls the handler. It returns
// true (the message was dealt with) and, for a refused message, the reason.
func (r *Receiver) OnPublishReceived(pr paho.PublishReceived) (bool, error) {
	rc, err := r.Receive(context.Background(), pr.Packet)
	if err != nil {
		if r.cfg.OnRefused != nil {
			r.cfg.OnRefused(pr.Packet, err)
		}
		if !r.cfg.DeliverRefused {
			return true, err
		}
	}
	if r.handle != nil {
		r.handle(rc)
	}
	return true, err
}

// Receive verifies and decrypts p as OnPublishReceived does, without
// calling the handler. On error Received holds p and the error.
func (r *Receiver) Receive(ctx context.Context, p *paho.Publish) (Received, error) {
	var sig string
	if p.Properties != nil {
		switch sigs := p.Properties.User.GetAll(PropertyName); len(sigs) {
		case 0:
		case 1:
			sig = sigs[0]
			if sig == "" {
				return Received{Publish: p, Err: errProp}, errProp
			}
		default:
			err := fmt.Errorf("%w: %d %q properties", ErrMalformed, len(sigs), PropertyName)
			return Received{Publish: p, Err: err}, err
		}
	}
	vd, err := r.v.Open(ctx, p.Topic, p.Payload, sig)
	if err != nil {
		if errors.Is(err, ErrUnsigned) && !r.v.policy.Protects(p.Topic) {
			return Received{Publish: p}, nil
		}
		return Received{Publish: p, Err: err}, err
	}
	cp := *p
	cp.Payload = vd.Payload
	return Received{Publish: &cp, Verified: vd}, nil
}
