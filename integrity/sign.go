package integrity

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/veraison/go-cose"
)

// The private-use COSE header labels (RFC 9052 section 16.2: labels below
// -65536) of the protected header. All three are listed as critical.
const (
	// HeaderLabelEpoch is the sender's run: the Unix time in microseconds
	// at which its [Signer] was created.
	HeaderLabelEpoch int64 = -65537
	// HeaderLabelSequence is the message's sequence number in its run,
	// from 1.
	HeaderLabelSequence int64 = -65538
	// HeaderLabelTime is when the message was signed, in Unix
	// milliseconds.
	HeaderLabelTime int64 = -65539
)

// PropertyName is the MQTT v5 user property that carries a detached
// signature: the COSE_Sign1 without its payload, base64url without padding.
const PropertyName = "cose-sign1"

// ContentTypeEncrypt0 is the content type (protected header label 3) of a
// signed payload that is a COSE_Encrypt0.
const ContentTypeEncrypt0 = `application/cose; cose-type="cose-encrypt0"`

// aadPrefix starts the external additional authenticated data of every
// signature and encryption; the topic name follows it.
const aadPrefix = "mqttsec-integrity-v1\x00"

func appendAAD(b []byte, t string) []byte {
	return append(append(b, aadPrefix...), t...)
}

// emptyMap is the CBOR empty map: the unprotected header of a COSE_Sign1
// this package writes.
var emptyMap = []byte{0xa0}

// Carrier says how a signature travels with its message.
type Carrier uint8

// The carriers.
const (
	// Envelope replaces the payload with a tagged COSE_Sign1 that embeds
	// it. It works with MQTT 3.1.1 and 5 and with [Protect] at the broker.
	Envelope Carrier = iota
	// Detached leaves the payload byte for byte as it is (unless it is
	// encrypted) and sends the COSE_Sign1, without its payload, in the
	// MQTT v5 user property [PropertyName]. Consumers that do not verify
	// see the message unchanged.
	Detached
)

// String returns "envelope" or "detached".
func (c Carrier) String() string {
	switch c {
	case Envelope:
		return "envelope"
	case Detached:
		return "detached"
	}
	return fmt.Sprintf("Carrier(%d)", uint8(c))
}

// SignerConfig configures a [Signer]. The zero value is the default.
type SignerConfig struct {
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time
}

// Signer signs the messages of one sender with its [PrivateKey]. Every
// message carries the sender's run (epoch), a sequence number and a
// timestamp in its protected header, and is bound to its topic, so that it
// can be neither replayed nor moved to another topic.
//
// # Restarts
//
// A Signer's epoch is the time it was created, in microseconds, and its
// sequence numbers count from 1. A restarted sender gets a later epoch, and
// a verifier that sees it forgets the previous run: messages of the
// earlier run are refused from then on ([ErrReplay]). Nothing has to be
// stored across restarts, but the sender's clock must not go back, and two
// processes must never sign with the same key at once (the older run's
// messages would be refused).
//
// A Signer is safe for concurrent use.
type Signer struct {
	key   *PrivateKey
	epoch uint64
	seq   atomic.Uint64
	now   func() time.Time
}

// NewSigner returns a Signer for key.
func NewSigner(key *PrivateKey, cfg SignerConfig) *Signer {
	s := &Signer{key: key, now: cfg.Clock}
	if s.now == nil {
		s.now = time.Now
	}
	s.epoch = uint64(max(s.now().UnixMicro(), 1))
	return s
}

// Key returns the signing key.
func (s *Signer) Key() *PrivateKey { return s.key }

// Epoch returns the signer's run: its creation time in Unix microseconds.
func (s *Signer) Epoch() uint64 { return s.epoch }

// Sealed is a message protected by [Signer.Seal].
type Sealed struct {
	// Payload is the payload to publish: the COSE_Sign1 (Envelope), or
	// the payload itself or its COSE_Encrypt0 (Detached).
	Payload []byte
	// Signature is, for the Detached carrier, the value of the user
	// property [PropertyName]; empty for an Envelope.
	Signature string
}

// Seal signs payload for the topic name t with carrier c. With a non-nil
// enc (a secret key, see [NewSecretKey]) the payload is first encrypted as
// a COSE_Encrypt0, and the signature covers the ciphertext, so a broker can
// check it without the content key. Each call uses the next sequence number.
func (s *Signer) Seal(t string, payload []byte, c Carrier, enc *Key) (Sealed, error) {
	if c != Envelope && c != Detached {
		return Sealed{}, fmt.Errorf("%w: unknown carrier %v", ErrConfig, c)
	}
	content := payload
	aad := appendAAD(make([]byte, 0, len(aadPrefix)+len(t)), t)
	if enc != nil {
		var err error
		if content, err = encrypt0(enc, aad, payload); err != nil {
			return Sealed{}, err
		}
	}
	if content == nil {
		content = []byte{}
	}
	prot := s.protected(s.key.pub, enc != nil)
	// The Sig_structure (RFC 9052 section 4.4) and the COSE_Sign1 are
	// written directly: the same bytes go-cose's Sign1Message.Sign and
	// MarshalCBOR produce (a test compares them), without their
	// reflection-based encoding; the signature is go-cose's Signer.
	tbs := make([]byte, 0, 24+len(prot)+len(aad)+len(content))
	tbs = appendHead(tbs, majArray, 4)
	tbs = appendText(tbs, "Signature1")
	tbs = append(tbs, prot...)
	tbs = appendBytes(tbs, aad)
	tbs = appendBytes(tbs, content)
	sig, err := s.key.signer.Sign(rand.Reader, tbs)
	if err != nil {
		return Sealed{}, fmt.Errorf("integrity: sign: %w", err)
	}
	n := 16 + len(prot) + len(sig)
	if c == Envelope {
		n += len(content)
	}
	out := make([]byte, 0, n)
	out = appendHead(out, majTag, cose.CBORTagSign1Message)
	out = appendHead(out, majArray, 4)
	out = append(out, prot...)
	out = append(out, emptyMap...)
	if c == Envelope {
		out = appendBytes(out, content)
	} else {
		out = append(out, 0xf6) // nil: detached payload
	}
	out = appendBytes(out, sig)
	if c == Detached {
		return Sealed{Payload: content, Signature: base64.RawURLEncoding.EncodeToString(out)}, nil
	}
	return Sealed{Payload: out}, nil
}

// protected returns the protected header, as the CBOR byte string that
// wraps the header map, for the next message.
func (s *Signer) protected(k *Key, encrypted bool) []byte {
	seq := s.seq.Add(1)
	ts := max(s.now().UnixMilli(), 0)
	n := uint64(6)
	if encrypted {
		n++
	}
	m := make([]byte, 0, 96+len(k.id))
	m = appendHead(m, majMap, n)
	m = appendInt(m, cose.HeaderLabelAlgorithm)
	m = appendInt(m, int64(k.alg.coseAlg()))
	m = appendInt(m, cose.HeaderLabelCritical)
	m = appendHead(m, majArray, 3)
	m = appendInt(m, HeaderLabelEpoch)
	m = appendInt(m, HeaderLabelSequence)
	m = appendInt(m, HeaderLabelTime)
	if encrypted {
		m = appendInt(m, cose.HeaderLabelContentType)
		m = appendText(m, ContentTypeEncrypt0)
	}
	m = appendInt(m, cose.HeaderLabelKeyID)
	m = appendBytes(m, []byte(k.id))
	m = appendInt(m, HeaderLabelEpoch)
	m = appendHead(m, majUint, s.epoch)
	m = appendInt(m, HeaderLabelSequence)
	m = appendHead(m, majUint, seq)
	m = appendInt(m, HeaderLabelTime)
	m = appendHead(m, majUint, uint64(ts))
	return appendBytes(make([]byte, 0, len(m)+3), m)
}
