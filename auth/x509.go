package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/mqttsec/mqttsec"
)

// CertField selects which part of a client certificate names the client.
type CertField uint8

// The certificate fields an identity can come from.
const (
	// CommonName is the subject CN (the default).
	CommonName CertField = iota
	// DNSName is the first DNS subject alternative name.
	DNSName
	// EmailAddress is the first email subject alternative name.
	EmailAddress
	// URI is the first URI subject alternative name (with
	// X509Config.URIPrefix, the first one with that prefix), such as a
	// SPIFFE ID "spiffe://example.org/device/42".
	URI
	// Fingerprint is the certificate's SHA-256 fingerprint in lower-case hex.
	Fingerprint
)

// X509Config configures an [X509] authenticator. The zero value names
// clients by their certificate's common name. It must not be modified after
// it is passed to [NewX509].
type X509Config struct {
	// Field is the certificate field that becomes Identity.Subject.
	Field CertField `yaml:"field"`
	// URIPrefix restricts Field URI to URIs with this prefix.
	URIPrefix string `yaml:"uri_prefix"`
	// Pins, when non-empty, is the set of accepted leaf certificate SHA-256
	// fingerprints (hex, colons and case ignored); any other certificate is
	// denied even if its chain verifies.
	Pins []string `yaml:"pins"`
	// MatchUsername requires a non-empty CONNECT user name to equal the
	// certificate identity.
	MatchUsername bool `yaml:"match_username"`
	// Verifier, when set, checks a connected client's certificate chain
	// again when the Guard revalidates sessions (see [X509.Revalidate]):
	// give the *tlsconf.Reloader that serves the listener, and the Guard
	// as that Reloader's Events, and a client whose certificate a reloaded
	// CRL revokes, or that no longer chains to a reloaded CA bundle, is
	// disconnected. Nil checks only pins and validity again.
	Verifier ClientCertVerifier `yaml:"-"`
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time `yaml:"-"`
}

// ClientCertVerifier checks a client's certificate chain, as the client
// sent it (leaf first), against the current trust material: CA bundle,
// revocation lists. It returns nil when the chain would be accepted by a
// new handshake, and otherwise an error that carries a denial's reason
// code ([mqttsec.ErrNotAuthorized]) when the chain is refused; an error
// without one is no verdict. *tlsconf.Reloader implements it. It must be
// safe for concurrent use.
type ClientCertVerifier interface {
	VerifyClientCertificate(chain []*x509.Certificate) error
}

// X509 authenticates a client by the certificate it presented in the TLS
// handshake. It abstains when the connection is not TLS or the client sent
// no certificate, and denies (0x86) when the TLS layer did not verify the
// certificate chain (tls.Config.ClientAuth must be VerifyClientCertIfGiven
// or RequireAndVerifyClientCert), when the certificate is outside its
// validity period, or when it is not pinned. The Identity expires at the
// earliest notAfter of the verified chain. It is an [mqttsec.Revalidator]
// (see [X509.Revalidate]).
//
// An X509 is safe for concurrent use.
type X509 struct {
	cfg  X509Config
	pins map[string]bool
	now  func() time.Time
}

// NewX509 returns an X509 authenticator.
func NewX509(cfg X509Config) (*X509, error) {
	if cfg.Field > Fingerprint {
		return nil, fmt.Errorf("%w: x509: unknown field %d", ErrConfig, cfg.Field)
	}
	x := &X509{cfg: cfg, now: cfg.Clock}
	if x.now == nil {
		x.now = time.Now
	}
	if len(cfg.Pins) > 0 {
		x.pins = make(map[string]bool, len(cfg.Pins))
		for _, p := range cfg.Pins {
			n := strings.ToLower(strings.ReplaceAll(p, ":", ""))
			if b, err := hex.DecodeString(n); err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("%w: x509: pin %q is not a SHA-256 fingerprint", ErrConfig, p)
			}
			x.pins[n] = true
		}
	}
	return x, nil
}

// CertFingerprint returns the SHA-256 fingerprint of c in lower-case hex.
func CertFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Authenticate derives the identity from cl.TLS.
func (x *X509) Authenticate(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
	if cl.TLS == nil || len(cl.TLS.PeerCertificates) == 0 {
		return nil, mqttsec.ErrAbstain
	}
	if len(cl.TLS.VerifiedChains) == 0 || len(cl.TLS.VerifiedChains[0]) == 0 {
		return nil, deny("client certificate not verified by the TLS layer")
	}
	chain := cl.TLS.VerifiedChains[0]
	leaf := chain[0]
	now := x.now()
	expiry := leaf.NotAfter
	for _, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return nil, deny("certificate outside its validity period")
		}
		if c.NotAfter.Before(expiry) {
			expiry = c.NotAfter
		}
	}
	fp := CertFingerprint(leaf)
	if x.pins != nil && !x.pins[fp] {
		return nil, deny(fmt.Sprintf("certificate %s is not pinned", fp))
	}
	subject := x.subjectOf(leaf, fp)
	if subject == "" {
		return nil, deny("certificate has no identity in the configured field")
	}
	if x.cfg.MatchUsername && cl.Username != "" && cl.Username != subject {
		return nil, deny(fmt.Sprintf("user name %q does not match certificate identity %q", cl.Username, subject))
	}
	return &mqttsec.Identity{
		Subject: subject,
		Method:  mqttsec.MethodX509,
		Expiry:  expiry,
		Attributes: map[string]string{
			"fingerprint": fp,
			"serial":      leaf.SerialNumber.String(),
			"issuer":      leaf.Issuer.String(),
		},
	}, nil
}

// subjectOf returns the identity the configured field of leaf gives, or "".
func (x *X509) subjectOf(leaf *x509.Certificate, fp string) string {
	var subject string
	switch x.cfg.Field {
	case CommonName:
		subject = leaf.Subject.CommonName
	case DNSName:
		if len(leaf.DNSNames) > 0 {
			subject = leaf.DNSNames[0]
		}
	case EmailAddress:
		if len(leaf.EmailAddresses) > 0 {
			subject = leaf.EmailAddresses[0]
		}
	case URI:
		for _, u := range leaf.URIs {
			if s := u.String(); strings.HasPrefix(s, x.cfg.URIPrefix) {
				subject = s
				break
			}
		}
	case Fingerprint:
		subject = fp
	}
	return subject
}

// Revalidate implements [mqttsec.Revalidator] for a session authenticated
// by the certificate of its connection (cl.TLS): it denies (0x86, or the
// Verifier's code) when the certificate is no longer pinned, names another
// subject under this configuration, is outside its validity period, or is
// refused by X509Config.Verifier (revoked by a reloaded CRL, no longer
// chaining to the current CA bundle); it returns nil otherwise, and
// abstains for an identity that is not the certificate's of this
// connection.
func (x *X509) Revalidate(_ context.Context, cl *mqttsec.Client) error {
	id := cl.Identity
	if id == nil || id.Method != mqttsec.MethodX509 || cl.TLS == nil || len(cl.TLS.PeerCertificates) == 0 {
		return mqttsec.ErrAbstain
	}
	leaf := cl.TLS.PeerCertificates[0]
	fp := CertFingerprint(leaf)
	if id.Attributes["fingerprint"] != fp {
		return mqttsec.ErrAbstain
	}
	if x.pins != nil && !x.pins[fp] {
		return deny(fmt.Sprintf("certificate %s is no longer pinned", fp))
	}
	if x.subjectOf(leaf, fp) != id.Subject {
		return deny("certificate names another identity under the current configuration")
	}
	now := x.now()
	chain := cl.TLS.PeerCertificates
	if len(cl.TLS.VerifiedChains) > 0 {
		chain = cl.TLS.VerifiedChains[0]
	}
	for _, c := range chain {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			return deny("certificate outside its validity period")
		}
	}
	if x.cfg.Verifier != nil {
		if err := x.cfg.Verifier.VerifyClientCertificate(cl.TLS.PeerCertificates); err != nil {
			return fmt.Errorf("auth: client certificate: %w", err)
		}
	}
	return nil
}
