package integrity

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/MicahParks/jwkset"
	"github.com/veraison/go-cose"
)

// Algorithm is a JOSE algorithm name, as in a JWK's "alg" member.
type Algorithm string

// The algorithms this package signs, verifies and encrypts with.
const (
	// EdDSA is Ed25519 (COSE algorithm -8); keys are OKP keys on curve
	// Ed25519.
	EdDSA Algorithm = "EdDSA"
	// ES256 is ECDSA on P-256 with SHA-256 (COSE algorithm -7); keys are EC
	// keys on curve P-256.
	ES256 Algorithm = "ES256"
	// A256GCM is AES-256-GCM with a 128-bit tag (COSE algorithm 3); keys
	// are 32-byte "oct" keys.
	A256GCM Algorithm = "A256GCM"
)

// coseAlg returns the COSE algorithm identifier of a.
func (a Algorithm) coseAlg() cose.Algorithm {
	switch a {
	case EdDSA:
		return cose.AlgorithmEdDSA
	case ES256:
		return cose.AlgorithmES256
	case A256GCM:
		return 3
	}
	return cose.AlgorithmReserved
}

// MaxKeyIDLen is the longest key ID accepted, in bytes.
const MaxKeyIDLen = 128

// maxSubjectLen bounds a key's "sub" member.
const maxSubjectLen = 1024

// Key is a public verification key (EdDSA or ES256) bound to a subject, or a
// secret content-encryption key (A256GCM). Build one with [NewKey],
// [NewSecretKey], [GenerateSecretKey] or [ParseKey]. A Key is immutable and
// safe for concurrent use.
type Key struct {
	id       string
	subject  string
	alg      Algorithm
	pub      crypto.PublicKey
	verifier cose.Verifier
	secret   []byte
	aead     cipher.AEAD
}

// ID returns the key ID ("kid").
func (k *Key) ID() string { return k.id }

// Subject returns the identity the key is bound to ("sub"): the
// authenticated subject of the only client that may publish messages
// signed with it. It is empty for a secret key.
func (k *Key) Subject() string { return k.subject }

// Algorithm returns the key's algorithm.
func (k *Key) Algorithm() Algorithm { return k.alg }

// Public returns the public key (ed25519.PublicKey or *ecdsa.PublicKey), or
// nil for a secret key.
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Secret reports whether k is a secret content-encryption key.
func (k *Key) Secret() bool { return k.secret != nil }

// Equal reports whether k and o are the same key: same ID, subject,
// algorithm and key material.
func (k *Key) Equal(o *Key) bool {
	if k == nil || o == nil {
		return k == o
	}
	if k.id != o.id || k.subject != o.subject || k.alg != o.alg {
		return false
	}
	if k.secret != nil {
		return subtle.ConstantTimeCompare(k.secret, o.secret) == 1
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := k.pub.(equaler)
	return ok && e.Equal(o.pub)
}

// NewKey returns the verification key id for pub (ed25519.PublicKey, or
// *ecdsa.PublicKey on P-256), bound to subject. id must be 1 to
// [MaxKeyIDLen] bytes of printable UTF-8; subject must not be empty.
func NewKey(id, subject string, pub crypto.PublicKey) (*Key, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := checkSubject(id, subject); err != nil {
		return nil, err
	}
	var alg Algorithm
	switch p := pub.(type) {
	case ed25519.PublicKey:
		if len(p) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: key %q: Ed25519 public key of %d bytes", ErrConfig, id, len(p))
		}
		pub = ed25519.PublicKey(bytes.Clone(p))
		alg = EdDSA
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: key %q: ECDSA keys must be on P-256", ErrConfig, id)
		}
		alg = ES256
	default:
		return nil, fmt.Errorf("%w: key %q: unsupported public key type %T", ErrConfig, id, pub)
	}
	v, err := cose.NewVerifier(alg.coseAlg(), pub)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrConfig, id, err)
	}
	return &Key{id: id, subject: subject, alg: alg, pub: pub, verifier: v}, nil
}

// NewSecretKey returns the A256GCM content-encryption key id with the
// 32-byte secret (copied).
func NewSecretKey(id string, secret []byte) (*Key, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if len(secret) != 32 {
		return nil, fmt.Errorf("%w: key %q: A256GCM needs a 32-byte key, got %d bytes", ErrConfig, id, len(secret))
	}
	secret = bytes.Clone(secret)
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrConfig, id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrConfig, id, err)
	}
	return &Key{id: id, alg: A256GCM, secret: secret, aead: aead}, nil
}

// GenerateSecretKey returns a new random A256GCM key.
func GenerateSecretKey(id string) (*Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return NewSecretKey(id, secret)
}

func checkID(id string) error {
	if id == "" || len(id) > MaxKeyIDLen || !printable(id) {
		return fmt.Errorf("%w: key ID %q: want 1 to %d bytes of printable UTF-8", ErrConfig, id, MaxKeyIDLen)
	}
	return nil
}

func checkSubject(id, subject string) error {
	if subject == "" || len(subject) > maxSubjectLen || !printable(subject) {
		return fmt.Errorf("%w: key %q: the subject (\"sub\") must be 1 to %d bytes of printable UTF-8", ErrConfig, id, maxSubjectLen)
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// PrivateKey is a device's signing key: an Ed25519 or P-256 private key,
// its key ID and the subject it is bound to. Its secret never appears in
// an error, a String or a JSON encoding; [PrivateKey.PrivateJWK] writes it
// out explicitly. A PrivateKey is immutable and safe for concurrent use.
type PrivateKey struct {
	pub    *Key
	priv   crypto.Signer
	signer cose.Signer
}

// GenerateKey returns a new key pair for alg (EdDSA or ES256) with key ID id,
// bound to subject.
func GenerateKey(alg Algorithm, id, subject string) (*PrivateKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("%w: cannot generate a signing key for %q (want EdDSA or ES256)", ErrConfig, alg)
	}
	if err != nil {
		return nil, err
	}
	return NewPrivateKey(id, subject, priv)
}

// NewPrivateKey returns the signing key id for priv (ed25519.PrivateKey or
// *ecdsa.PrivateKey on P-256), bound to subject.
func NewPrivateKey(id, subject string, priv crypto.Signer) (*PrivateKey, error) {
	switch priv.(type) {
	case ed25519.PrivateKey, *ecdsa.PrivateKey:
	default:
		return nil, fmt.Errorf("%w: key %q: unsupported private key type %T", ErrConfig, id, priv)
	}
	pub, err := NewKey(id, subject, priv.Public())
	if err != nil {
		return nil, err
	}
	s, err := cose.NewSigner(pub.alg.coseAlg(), priv)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrConfig, id, err)
	}
	return &PrivateKey{pub: pub, priv: priv, signer: s}, nil
}

// Public returns the verification key of k.
func (k *PrivateKey) Public() *Key { return k.pub }

// ID returns the key ID.
func (k *PrivateKey) ID() string { return k.pub.id }

// Subject returns the subject the key is bound to.
func (k *PrivateKey) Subject() string { return k.pub.subject }

// String returns the key ID and algorithm, never key material.
func (k *PrivateKey) String() string {
	return fmt.Sprintf("%s private key %q", k.pub.alg, k.pub.id)
}

// jwkJSON is a JWK with the "sub" member this package binds keys with.
type jwkJSON struct {
	jwkset.JWKMarshal
	Sub string `json:"sub,omitempty"`
}

// MarshalJSON returns k as a JWK (RFC 7517): the public key with "kid",
// "alg", "use" ("sig") and "sub", or for a secret key an error (use
// [Key.SecretJWK]).
func (k *Key) MarshalJSON() ([]byte, error) {
	if k.secret != nil {
		return nil, fmt.Errorf("%w: key %q is secret; use SecretJWK to write it", ErrConfig, k.id)
	}
	return marshalJWK(k.pub, k, false)
}

// SecretJWK returns a secret key as an "oct" JWK, key material included.
// Store it where only its owner can read it.
func (k *Key) SecretJWK() ([]byte, error) {
	if k.secret == nil {
		return nil, fmt.Errorf("%w: key %q is not a secret key", ErrConfig, k.id)
	}
	return marshalJWK(k.secret, k, true)
}

// PrivateJWK returns k as a JWK with its private member "d". Store it
// where only the device can read it.
func (k *PrivateKey) PrivateJWK() ([]byte, error) {
	return marshalJWK(k.priv, k.pub, true)
}

func marshalJWK(material any, k *Key, private bool) ([]byte, error) {
	use := jwkset.UseSig
	if k.secret != nil {
		use = jwkset.UseEnc
	}
	j, err := jwkset.NewJWKFromKey(material, jwkset.JWKOptions{
		Marshal:  jwkset.JWKMarshalOptions{Private: private},
		Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.ALG(k.alg), KID: k.id, USE: use},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %w", ErrConfig, k.id, err)
	}
	return json.Marshal(jwkJSON{JWKMarshal: j.Marshal(), Sub: k.subject})
}

// maxJWKSize bounds one JWK; maxKeyringSize a keyring file or JWK Set.
const (
	maxJWKSize     = 16 << 10
	maxKeyringSize = 4 << 20
)

// ParseKey parses a JWK holding a public verification key (OKP Ed25519 or
// EC P-256, with "kid" and "sub") or a secret "oct" key of 32 bytes
// ("kid"; "alg" A256GCM if present). A JWK with a private member ("d") is
// refused: a verifier gets only public keys. An "alg" or "use" member, when
// present, must fit the key; "x5u" is refused (no key is fetched from a
// URL named by a key).
func ParseKey(data []byte) (*Key, error) {
	k, _, err := parseJWK(data, false)
	return k, err
}

// ParsePrivateKey parses a JWK holding a signing key (OKP Ed25519 or EC
// P-256) with its private member "d", a "kid" and a "sub". The public
// members must match the private key.
func ParsePrivateKey(data []byte) (*PrivateKey, error) {
	_, pk, err := parseJWK(data, true)
	if err != nil {
		return nil, err
	}
	if pk == nil {
		return nil, fmt.Errorf("%w: JWK has no private key", ErrConfig)
	}
	return pk, nil
}

// LoadPrivateKey reads a [ParsePrivateKey] JWK from a file.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	b, err := readLimited(path, maxJWKSize)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("integrity: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("integrity: %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrConfig, path, limit)
	}
	return b, nil
}

// parseJWK parses one JWK. With private, a signing key must carry "d" and
// is returned as a PrivateKey; without, "d" is refused.
func parseJWK(data []byte, private bool) (*Key, *PrivateKey, error) {
	if len(data) > maxJWKSize {
		return nil, nil, fmt.Errorf("%w: JWK larger than %d bytes", ErrConfig, maxJWKSize)
	}
	var j jwkJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, nil, fmt.Errorf("%w: JWK: %w", ErrConfig, err)
	}
	m := j.JWKMarshal
	id := m.KID
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	if m.X5U != "" {
		return nil, nil, fmt.Errorf("%w: key %q: \"x5u\" is not supported", ErrConfig, id)
	}
	var want Algorithm
	switch {
	case m.KTY == jwkset.KtyOKP && m.CRV == jwkset.CrvEd25519:
		want = EdDSA
	case m.KTY == jwkset.KtyEC && m.CRV == jwkset.CrvP256:
		want = ES256
	case m.KTY == jwkset.KtyOct:
		want = A256GCM
	default:
		return nil, nil, fmt.Errorf("%w: key %q: unsupported key type %q/%q (want OKP Ed25519, EC P-256 or oct)", ErrConfig, id, m.KTY, m.CRV)
	}
	if m.ALG != "" && Algorithm(m.ALG) != want {
		return nil, nil, fmt.Errorf("%w: key %q: \"alg\" %q does not fit a %s key", ErrConfig, id, m.ALG, want)
	}
	wantUse := jwkset.UseSig
	if want == A256GCM {
		wantUse = jwkset.UseEnc
	}
	if m.USE != "" && m.USE != wantUse {
		return nil, nil, fmt.Errorf("%w: key %q: \"use\" %q does not fit a %s key", ErrConfig, id, m.USE, want)
	}
	if want == A256GCM {
		if j.Sub != "" {
			return nil, nil, fmt.Errorf("%w: key %q: a secret key has no \"sub\"", ErrConfig, id)
		}
		jk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("%w: key %q: %w", ErrConfig, id, err)
		}
		secret, ok := jk.Key().([]byte)
		if !ok {
			return nil, nil, fmt.Errorf("%w: key %q: no secret", ErrConfig, id)
		}
		k, err := NewSecretKey(id, secret)
		return k, nil, err
	}
	if m.D != "" && !private {
		return nil, nil, fmt.Errorf("%w: key %q holds a private key (\"d\"); give the public key only", ErrConfig, id)
	}
	if m.D == "" && private {
		return nil, nil, fmt.Errorf("%w: key %q has no private member \"d\"", ErrConfig, id)
	}
	if err := checkSubject(id, j.Sub); err != nil {
		return nil, nil, err
	}
	jk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{Private: private}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: key %q: %w", ErrConfig, id, err)
	}
	switch key := jk.Key().(type) {
	case ed25519.PublicKey, *ecdsa.PublicKey:
		k, err := NewKey(id, j.Sub, key)
		return k, nil, err
	case ed25519.PrivateKey:
		// jwkset joins the seed "d" with "x" without checking that they
		// belong together: derive the key from the seed and compare.
		derived := ed25519.NewKeyFromSeed(key.Seed())
		if !derived.Public().(ed25519.PublicKey).Equal(key.Public()) {
			return nil, nil, fmt.Errorf("%w: key %q: \"x\" is not the public key of \"d\"", ErrConfig, id)
		}
		pk, err := NewPrivateKey(id, j.Sub, derived)
		return nil, pk, err
	case *ecdsa.PrivateKey:
		e, err := key.ECDH()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: key %q: %w", ErrConfig, id, err)
		}
		pub, err := key.PublicKey.ECDH()
		if err != nil || !e.PublicKey().Equal(pub) {
			return nil, nil, fmt.Errorf("%w: key %q: \"x\", \"y\" are not the public key of \"d\"", ErrConfig, id)
		}
		pk, err := NewPrivateKey(id, j.Sub, key)
		return nil, pk, err
	}
	return nil, nil, fmt.Errorf("%w: key %q: unsupported key", ErrConfig, id)
}
