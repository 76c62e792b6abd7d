package integrity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/veraison/go-cose"
)

// Defaults of [VerifierConfig].
const (
	DefaultMaxAge = 5 * time.Minute
	DefaultSkew   = 30 * time.Second
)

// Bounds of what a verifier parses.
const (
	// maxProtected bounds the protected header of a COSE_Sign1.
	maxProtected = 128 + MaxKeyIDLen
	// sigLen is the signature length of both EdDSA and ES256.
	sigLen = 64
	// maxSignatureProperty bounds a detached signature property.
	maxSignatureProperty = 1024
)

// VerifierConfig configures a [Verifier]. Keys is required; every other
// zero value is the documented default.
type VerifierConfig struct {
	// Keys finds verification keys by key ID, and content keys for
	// [Verifier.Open].
	Keys KeySource
	// Policy says which topics are protected. Nil protects every topic.
	Policy *Policy
	// MaxAge is how old a message's timestamp may be; zero means
	// DefaultMaxAge. Older messages are refused with [ErrExpired].
	MaxAge time.Duration
	// Skew is how far ahead of the verifier's clock a timestamp may be;
	// zero means DefaultSkew. Messages further ahead are refused with
	// [ErrFuture].
	Skew time.Duration
	// MaxSenders bounds the number of senders (key IDs) whose replay
	// state is kept; zero means DefaultMaxSenders. Set it at least to the
	// number of signing keys, see the package documentation.
	MaxSenders int
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time
}

// Verifier checks signed messages: the signature over the payload, the
// topic and the protected header, the key and its binding, the policy's
// signer and encryption rules, the timestamp and the replay window. The
// same Verifier serves a receiving client ([Receiver]) or a broker
// ([Protect]); each keeps its own replay state, so give each its own.
//
// A Verifier is safe for concurrent use.
type Verifier struct {
	keys   KeySource
	policy *Policy
	maxAge time.Duration
	skew   time.Duration
	now    func() time.Time
	win    *window
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Keys == nil {
		return nil, fmt.Errorf("%w: verifier: no key source", ErrConfig)
	}
	if cfg.MaxAge < 0 || cfg.Skew < 0 || cfg.MaxSenders < 0 {
		return nil, fmt.Errorf("%w: verifier: negative MaxAge, Skew or MaxSenders", ErrConfig)
	}
	v := &Verifier{keys: cfg.Keys, policy: cfg.Policy, maxAge: cfg.MaxAge, skew: cfg.Skew, now: cfg.Clock}
	if v.maxAge == 0 {
		v.maxAge = DefaultMaxAge
	}
	if v.skew == 0 {
		v.skew = DefaultSkew
	}
	if v.now == nil {
		v.now = time.Now
	}
	n := cfg.MaxSenders
	if n == 0 {
		n = DefaultMaxSenders
	}
	v.win = newWindow(n)
	return v, nil
}

// Policy returns the verifier's policy (nil: every topic is protected).
func (v *Verifier) Policy() *Policy { return v.policy }

// Senders returns the number of senders whose replay state is kept.
func (v *Verifier) Senders() int { return v.win.len() }

// Verified is what a successful verification learned about a message.
type Verified struct {
	// Payload is the signed content: the application payload, or its
	// COSE_Encrypt0 when Encrypted and returned by [Verifier.Verify]
	// ([Verifier.Open] returns the plaintext). For a detached signature
	// it is the payload given, not a copy.
	Payload []byte
	// KeyID is the signing key's ID, Subject the identity it is bound to.
	KeyID, Subject string
	// Epoch and Sequence identify the message in its sender's runs.
	Epoch, Sequence uint64
	// Time is when the message was signed, by the sender's clock.
	Time time.Time
	// Encrypted reports whether the signed content is a COSE_Encrypt0.
	Encrypted bool
	// ContentKeyID is the content key a [Verifier.Open] decrypted with.
	ContentKeyID string
}

// Verify checks a message received on the topic name t: payload is the
// MQTT payload, and sig the value of the user property [PropertyName]
// (empty when there is none, in which case the payload must be an
// envelope). It returns what it verified, or an error wrapping one of the
// package's sentinels ([ErrUnsigned], [ErrBadSignature], [ErrReplay], ...).
// On a topic the policy does not protect, an unsigned message yields
// [ErrUnsigned] too; [Policy.Protects] tells the cases apart. A verified
// message is recorded in the replay window: verifying it again fails.
//
// An encrypted message is verified but not decrypted; see [Verifier.Open].
func (v *Verifier) Verify(ctx context.Context, t string, payload []byte, sig string) (*Verified, error) {
	r := v.policy.lookup(t)
	if r == nil {
		r = unprotected
	}
	return v.verify(ctx, r, t, payload, sig, "", false)
}

// Open is [Verifier.Verify] followed, for an encrypted message, by its
// decryption with the content key it names (found in the key source):
// Verified.Payload is then the plaintext. A message that does not decrypt
// is refused with [ErrDecrypt] (and was recorded as seen).
func (v *Verifier) Open(ctx context.Context, t string, payload []byte, sig string) (*Verified, error) {
	vd, err := v.Verify(ctx, t, payload, sig)
	if err != nil || !vd.Encrypted {
		return vd, err
	}
	aad := appendAAD(make([]byte, 0, len(aadPrefix)+len(t)), t)
	pt, kid, err := decrypt0(ctx, v.keys, aad, vd.Payload)
	if err != nil {
		return nil, err
	}
	vd.Payload, vd.ContentKeyID = pt, kid
	return vd, nil
}

// unprotected is the rule a signed message on an unprotected topic is
// verified under: no signer or encryption constraint.
var unprotected = &rule{level: -1}

// header is what a protected header says.
type header struct {
	alg       cose.Algorithm
	kid       []byte
	epoch     uint64
	seq       uint64
	ts        int64
	encrypted bool
}

var (
	errShape   = fmt.Errorf("%w: not a COSE_Sign1 of this package's shape", ErrMalformed)
	errHeader  = fmt.Errorf("%w: protected header", ErrMalformed)
	errProp    = fmt.Errorf("%w: signature property", ErrMalformed)
	errTooLong = fmt.Errorf("%w: signature property longer than %d bytes", ErrMalformed, maxSignatureProperty)
)

// looksLikeEnvelope reports whether b starts like a tagged COSE_Sign1.
func looksLikeEnvelope(b []byte) bool {
	return len(b) >= 2 && b[0] == 0xd2 && b[1] == 0x84
}

// checkShape checks, before any decoding, that b is a tagged COSE_Sign1 as
// this package writes it: a protected header of bounded size, an empty
// unprotected header, a byte-string payload (nil when detached) and a
// 64-byte signature, nothing after it.
func checkShape(b []byte, detached bool) error {
	maj, v, rest, err := readHead(b)
	if err != nil || maj != majTag || v != cose.CBORTagSign1Message {
		return errShape
	}
	if maj, v, rest, err = readHead(rest); err != nil || maj != majArray || v != 4 {
		return errShape
	}
	if _, rest, err = readBytes(rest, maxProtected); err != nil {
		return errShape
	}
	if len(rest) == 0 || rest[0] != 0xa0 {
		return errShape
	}
	rest = rest[1:]
	if detached {
		if len(rest) == 0 || rest[0] != 0xf6 {
			return errShape
		}
		rest = rest[1:]
	} else if _, rest, err = readBytes(rest, len(rest)); err != nil {
		return errShape
	}
	sig, rest, err := readBytes(rest, sigLen)
	if err != nil || len(sig) != sigLen || len(rest) != 0 {
		return errShape
	}
	return nil
}

// readHeader extracts the fields of a protected header decoded by go-cose,
// refusing labels this package does not write.
func readHeader(h cose.ProtectedHeader) (header, error) {
	var out header
	var have int
	for label, val := range h {
		l, ok := label.(int64)
		if !ok {
			return out, errHeader
		}
		switch l {
		case cose.HeaderLabelAlgorithm:
			a, ok := val.(cose.Algorithm)
			if !ok {
				return out, errHeader
			}
			out.alg = a
			have |= 1
		case cose.HeaderLabelCritical:
			c, ok := val.([]any)
			if !ok || len(c) != 3 || c[0] != HeaderLabelEpoch || c[1] != HeaderLabelSequence || c[2] != HeaderLabelTime {
				return out, errHeader
			}
			have |= 2
		case cose.HeaderLabelContentType:
			if s, ok := val.(string); !ok || s != ContentTypeEncrypt0 {
				return out, errHeader
			}
			out.encrypted = true
		case cose.HeaderLabelKeyID:
			k, ok := val.([]byte)
			if !ok || len(k) == 0 || len(k) > MaxKeyIDLen {
				return out, errHeader
			}
			out.kid = k
			have |= 4
		case HeaderLabelEpoch, HeaderLabelSequence, HeaderLabelTime:
			n, ok := val.(int64)
			if !ok || n <= 0 {
				return out, errHeader
			}
			switch l {
			case HeaderLabelEpoch:
				out.epoch = uint64(n)
				have |= 8
			case HeaderLabelSequence:
				out.seq = uint64(n)
				have |= 16
			default:
				out.ts = n
				have |= 32
			}
		default:
			return out, errHeader
		}
	}
	if have != 63 {
		return out, errHeader
	}
	return out, nil
}

// verify runs every check on a message of topic t under rule r. At the
// broker (publisher set), the key must be bound to publisher; the signer
// rules of r apply everywhere.
func (v *Verifier) verify(ctx context.Context, r *rule, t string, payload []byte, sig, publisher string, atBroker bool) (*Verified, error) {
	var raw []byte
	detached := sig != ""
	switch {
	case detached:
		if len(sig) > maxSignatureProperty {
			return nil, errTooLong
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(sig)
		if err != nil {
			return nil, errProp
		}
		raw = b
	case looksLikeEnvelope(payload):
		raw = payload
	default:
		return nil, fmt.Errorf("%w: on %q", ErrUnsigned, t)
	}
	if err := checkShape(raw, detached); err != nil {
		return nil, err
	}
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	h, err := readHeader(msg.Headers.Protected)
	if err != nil {
		return nil, err
	}
	if detached {
		msg.Payload = payload
		if msg.Payload == nil {
			msg.Payload = []byte{}
		}
	}
	// Cheap checks first: a message they refuse costs no signature
	// verification. The replay window is consulted only for a message
	// whose signature verified, so an altered copy of a message already
	// seen is reported as what it is (a bad signature), and forged
	// sequence numbers never touch the window.
	now := v.now()
	ts := time.UnixMilli(h.ts)
	if ts.After(now.Add(v.skew)) {
		return nil, fmt.Errorf("%w: signed at %s, %s ahead", ErrFuture, ts.UTC().Format(time.RFC3339Nano), ts.Sub(now).Round(time.Millisecond))
	}
	if ts.Before(now.Add(-v.maxAge)) {
		return nil, fmt.Errorf("%w: signed at %s, %s ago", ErrExpired, ts.UTC().Format(time.RFC3339Nano), now.Sub(ts).Round(time.Millisecond))
	}
	kid := string(h.kid)
	k, err := v.keys.Key(ctx, kid)
	if err != nil {
		if errors.Is(err, ErrUnknownKey) {
			return nil, err
		}
		return nil, fmt.Errorf("%w %q: key source: %w", ErrUnknownKey, kid, err)
	}
	if k.verifier == nil || k.alg.coseAlg() != h.alg {
		return nil, fmt.Errorf("%w: key %q is %s, message says %v", ErrAlgorithm, kid, k.alg, h.alg)
	}
	if atBroker && (k.subject == "" || k.subject != publisher) {
		return nil, fmt.Errorf("%w: key %q belongs to %q, the publisher is %q", ErrKeyNotBound, kid, k.subject, publisher)
	}
	if !r.allows(t, k.subject) {
		return nil, fmt.Errorf("%w: %q may not sign on %q", ErrSignerNotAllowed, k.subject, t)
	}
	if r.EncryptionKey != "" && !h.encrypted {
		return nil, fmt.Errorf("%w: %q requires encryption", ErrNotEncrypted, t)
	}
	aad := appendAAD(make([]byte, 0, len(aadPrefix)+len(t)), t)
	if err := msg.Verify(aad, k.verifier); err != nil {
		return nil, fmt.Errorf("%w: key %q on %q", ErrBadSignature, kid, t)
	}
	if err := v.win.commit(h.kid, h.epoch, h.seq, h.ts); err != nil {
		return nil, fmt.Errorf("key %q: %w", kid, err)
	}
	return &Verified{
		Payload: msg.Payload, KeyID: kid, Subject: k.subject,
		Epoch: h.epoch, Sequence: h.seq, Time: ts, Encrypted: h.encrypted,
	}, nil
}
