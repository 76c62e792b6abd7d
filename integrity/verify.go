package integrity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
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
	// ([Verifier.Open] returns the plaintext). Unless decrypted, it is a
	// part of the payload given, not a copy.
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
	vd, err := v.verify(ctx, r, t, payload, sig, "", modeReceiver)
	if err != nil {
		return nil, err
	}
	return &vd, nil
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

// sign1 is a COSE_Sign1 of this package's shape, as slices of its input.
type sign1 struct {
	prot    []byte // the protected header as its CBOR byte string, head included
	hdr     []byte // the header map inside it
	payload []byte // the embedded payload (envelope)
	sig     []byte
}

// parseSign1 reads a tagged COSE_Sign1 as this package writes it: a
// protected header of bounded size, an empty unprotected header, a
// byte-string payload (nil when detached), a 64-byte signature, nothing
// after it, every head in its shortest form. It reads heads only and
// allocates nothing; go-cose reads the same bytes the same way (a fuzz
// test compares them).
func parseSign1(b []byte, detached bool) (m sign1, err error) {
	maj, v, rest, err := readHead(b)
	if err != nil || maj != majTag || v != cose.CBORTagSign1Message {
		return m, errShape
	}
	if maj, v, rest, err = readHead(rest); err != nil || maj != majArray || v != 4 {
		return m, errShape
	}
	after := rest
	if m.hdr, rest, err = readBytes(rest, maxProtected); err != nil || len(m.hdr) == 0 {
		return m, errShape
	}
	m.prot = after[:len(after)-len(rest)]
	if len(rest) == 0 || rest[0] != 0xa0 {
		return m, errShape
	}
	rest = rest[1:]
	if detached {
		if len(rest) == 0 || rest[0] != 0xf6 {
			return m, errShape
		}
		rest = rest[1:]
	} else if m.payload, rest, err = readBytes(rest, len(rest)); err != nil {
		return m, errShape
	}
	if m.sig, rest, err = readBytes(rest, sigLen); err != nil || len(m.sig) != sigLen || len(rest) != 0 {
		return m, errShape
	}
	return m, nil
}

// readHeader reads the protected header map exactly as [Signer] writes it:
// alg, crit, the content type when encrypted, kid, epoch, sequence and
// time, in this (deterministic) order and nothing else.
func readHeader(b []byte) (h header, err error) {
	maj, n, b, err := readHead(b)
	if err != nil || maj != majMap || (n != 6 && n != 7) {
		return h, errHeader
	}
	var label, alg int64
	if label, b, err = readInt(b); err != nil || label != cose.HeaderLabelAlgorithm {
		return h, errHeader
	}
	if alg, b, err = readInt(b); err != nil {
		return h, errHeader
	}
	h.alg = cose.Algorithm(alg)
	if label, b, err = readInt(b); err != nil || label != cose.HeaderLabelCritical {
		return h, errHeader
	}
	var n2 uint64
	if maj, n2, b, err = readHead(b); err != nil || maj != majArray || n2 != 3 {
		return h, errHeader
	}
	for _, want := range [...]int64{HeaderLabelEpoch, HeaderLabelSequence, HeaderLabelTime} {
		if label, b, err = readInt(b); err != nil || label != want {
			return h, errHeader
		}
	}
	if label, b, err = readInt(b); err != nil {
		return h, errHeader
	}
	if n == 7 {
		var l uint64
		if label != cose.HeaderLabelContentType {
			return h, errHeader
		}
		if maj, l, b, err = readHead(b); err != nil || maj != majText || l != uint64(len(ContentTypeEncrypt0)) ||
			len(b) < len(ContentTypeEncrypt0) || string(b[:l]) != ContentTypeEncrypt0 {
			return h, errHeader
		}
		b = b[l:]
		h.encrypted = true
		if label, b, err = readInt(b); err != nil {
			return h, errHeader
		}
	}
	if label != cose.HeaderLabelKeyID {
		return h, errHeader
	}
	if h.kid, b, err = readBytes(b, MaxKeyIDLen); err != nil || len(h.kid) == 0 {
		return h, errHeader
	}
	var vals [3]uint64
	for i, want := range [...]int64{HeaderLabelEpoch, HeaderLabelSequence, HeaderLabelTime} {
		if label, b, err = readInt(b); err != nil || label != want {
			return h, errHeader
		}
		if vals[i], b, err = readUint(b); err != nil || vals[i] == 0 {
			return h, errHeader
		}
	}
	if len(b) != 0 {
		return h, errHeader
	}
	h.epoch, h.seq, h.ts = vals[0], vals[1], int64(vals[2])
	return h, nil
}

// tbsPool holds Sig_structure buffers, so that a verification allocates
// none for payloads up to maxPooled bytes.
var tbsPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

const maxPooled = 64 << 10

// appendSigStructure appends the Sig_structure of a COSE_Sign1 (RFC 9052
// section 4.4) with prot (the protected header's byte string), the
// topic-binding external data for t, and payload.
func appendSigStructure(b, prot []byte, t string, payload []byte) []byte {
	b = appendHead(b, majArray, 4)
	b = appendText(b, "Signature1")
	b = append(b, prot...)
	b = appendHead(b, majBytes, uint64(len(aadPrefix)+len(t)))
	b = append(append(b, aadPrefix...), t...)
	return appendBytes(b, payload)
}

// verify runs every check on a message of topic t under rule r. At the
// broker (publisher set), the key must be bound to publisher; the signer
// rules of r apply everywhere.
// verifyMode says who verifies: a receiver, the broker for a PUBLISH, or
// the broker for a will message.
type verifyMode uint8

const (
	modeReceiver verifyMode = iota
	modeBroker
	// modeWill checks the signature and the key's binding, not freshness
	// nor replay: the broker checks a will when the client connects and
	// again when it sends it, possibly much later, and the will's
	// receivers check freshness and replay themselves.
	modeWill
)

func (v *Verifier) verify(ctx context.Context, r *rule, t string, payload []byte, sig, publisher string, mode verifyMode) (Verified, error) {
	atBroker := mode != modeReceiver
	raw := payload
	detached := sig != ""
	switch {
	case detached:
		if len(sig) > maxSignatureProperty {
			return Verified{}, errTooLong
		}
		b, err := base64.RawURLEncoding.Strict().DecodeString(sig)
		if err != nil {
			return Verified{}, errProp
		}
		raw = b
	case !looksLikeEnvelope(payload):
		return Verified{}, fmt.Errorf("%w: on %q", ErrUnsigned, t)
	}
	m, err := parseSign1(raw, detached)
	if err != nil {
		return Verified{}, err
	}
	h, err := readHeader(m.hdr)
	if err != nil {
		return Verified{}, err
	}
	content := m.payload
	if detached {
		content = payload
	}
	// Cheap checks first: a message they refuse costs no signature
	// verification. The replay window is consulted only for a message
	// whose signature verified, so an altered copy of a message already
	// seen is reported as what it is (a bad signature), and forged
	// sequence numbers never touch the window.
	now := v.now()
	ts := time.UnixMilli(h.ts)
	if mode == modeWill {
		// no freshness check, see modeWill
	} else if ts.After(now.Add(v.skew)) {
		return Verified{}, fmt.Errorf("%w: signed at %s, %s ahead", ErrFuture, ts.UTC().Format(time.RFC3339Nano), ts.Sub(now).Round(time.Millisecond))
	}
	if ts.Before(now.Add(-v.maxAge)) {
		return Verified{}, fmt.Errorf("%w: signed at %s, %s ago", ErrExpired, ts.UTC().Format(time.RFC3339Nano), now.Sub(ts).Round(time.Millisecond))
	}
	kid := string(h.kid)
	k, err := v.keys.Key(ctx, kid)
	if err != nil {
		if errors.Is(err, ErrUnknownKey) {
			return Verified{}, err
		}
		return Verified{}, fmt.Errorf("%w %q: key source: %w", ErrUnknownKey, kid, err)
	}
	if k.verifier == nil || k.alg.coseAlg() != h.alg {
		return Verified{}, fmt.Errorf("%w: key %q is %s, message says %v", ErrAlgorithm, kid, k.alg, h.alg)
	}
	if atBroker && (k.subject == "" || k.subject != publisher) {
		return Verified{}, fmt.Errorf("%w: key %q belongs to %q, the publisher is %q", ErrKeyNotBound, kid, k.subject, publisher)
	}
	if !r.allows(t, k.subject) {
		return Verified{}, fmt.Errorf("%w: %q may not sign on %q", ErrSignerNotAllowed, k.subject, t)
	}
	if r.EncryptionKey != "" && !h.encrypted {
		return Verified{}, fmt.Errorf("%w: %q requires encryption", ErrNotEncrypted, t)
	}
	bp := tbsPool.Get().(*[]byte)
	tbs := appendSigStructure((*bp)[:0], m.prot, t, content)
	err = k.verifier.Verify(tbs, m.sig)
	if cap(tbs) <= maxPooled {
		*bp = tbs[:0]
		tbsPool.Put(bp)
	}
	if err != nil {
		return Verified{}, fmt.Errorf("%w: key %q on %q", ErrBadSignature, kid, t)
	}
	if mode == modeWill {
		// no replay window, see modeWill
	} else if err := v.win.commit(h.kid, h.epoch, h.seq, h.ts); err != nil {
		return Verified{}, fmt.Errorf("key %q: %w", kid, err)
	}
	return Verified{
		Payload: content, KeyID: kid, Subject: k.subject,
		Epoch: h.epoch, Sequence: h.seq, Time: ts, Encrypted: h.encrypted,
	}, nil
}
