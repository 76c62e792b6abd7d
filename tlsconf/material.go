package tlsconf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"time"
)

// ParseCertificates parses the PEM CERTIFICATE blocks of data, in order.
// Blocks of other types (a private key in the same file) are skipped; no
// certificate at all is an error wrapping [ErrPEM].
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %w", ErrPEM, len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no CERTIFICATE block", ErrPEM)
	}
	return out, nil
}

// ParsePrivateKey parses the first PEM private key of data: PKCS #8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE
// KEY"). Encrypted keys are refused. The error never contains key bytes.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: no PRIVATE KEY block", ErrPEM)
		}
		var k any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			if _, enc := b.Headers["DEK-Info"]; enc {
				return nil, fmt.Errorf("%w: encrypted private keys are not supported", ErrPEM)
			}
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("%w: encrypted private keys are not supported", ErrPEM)
		default:
			continue
		}
		if err != nil {
			// The parser's message never quotes key material.
			return nil, fmt.Errorf("%w: %s: %w", ErrPEM, b.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: unsupported private key type %T", ErrWeakKey, k)
		}
		return s, nil
	}
}

// ParseKeyPair parses a PEM certificate chain (leaf first) and its private
// key, and refuses weak material: see [CheckCertificate] for the
// certificates; the key must match the leaf ([ErrKeyMismatch]).
func ParseKeyPair(certPEM, keyPEM []byte, now time.Time) (tls.Certificate, error) {
	chain, err := ParseCertificates(certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	for _, c := range chain {
		if err := CheckCertificate(c, now); err != nil {
			return tls.Certificate{}, err
		}
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := checkPublicKey(key.Public()); err != nil {
		return tls.Certificate{}, fmt.Errorf("%w: private key: %w", ErrWeakKey, err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	pub, ok := key.Public().(equaler)
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return tls.Certificate{}, fmt.Errorf("%w: %q", ErrKeyMismatch, chain[0].Subject.String())
	}
	out := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}

// CheckCertificate refuses a certificate with a weak public key
// ([ErrWeakKey]: RSA under 2048 bits, curves under P-256, DSA), a SHA-1 or
// MD5 signature ([ErrWeakSignature]; the self-signature of a root is not
// checked, as it is never verified), or outside its validity period at now
// ([ErrCertificateExpired], [ErrNotYetValid]).
func CheckCertificate(c *x509.Certificate, now time.Time) error {
	subject := c.Subject.String()
	if err := checkPublicKey(c.PublicKey); err != nil {
		return fmt.Errorf("%w: certificate %q: %w", ErrWeakKey, subject, err)
	}
	if !bytes.Equal(c.RawIssuer, c.RawSubject) {
		switch c.SignatureAlgorithm {
		case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
			return fmt.Errorf("%w: certificate %q is signed with %s", ErrWeakSignature, subject, c.SignatureAlgorithm)
		}
	}
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: certificate %q expired at %s", ErrCertificateExpired, subject, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: certificate %q is valid from %s", ErrNotYetValid, subject, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits, want at least 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve == nil || k.Curve.Params().BitSize < 256 {
			return fmt.Errorf("elliptic curve smaller than P-256")
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
	return nil
}

// expiryWarning returns a warning wrapping ErrExpiresSoon, or nil.
func expiryWarning(file string, c *x509.Certificate, now time.Time, window time.Duration) error {
	if window < 0 || c.NotAfter.Sub(now) > window {
		return nil
	}
	return fmt.Errorf("%w: %s: certificate %q expires at %s", ErrExpiresSoon, file, c.Subject.String(), c.NotAfter.UTC().Format(time.RFC3339))
}

// ParseCRLs parses the revocation lists of data: PEM "X509 CRL" blocks,
// or a single DER list when data holds no PEM block.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	var out []*x509.RevocationList
	rest := data
	sawPEM := false
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		sawPEM = true
		if b.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCRL, err)
		}
		out = append(out, l)
	}
	if !sawPEM {
		l, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("%w: neither PEM nor DER: %w", ErrCRL, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no X509 CRL block", ErrCRL)
	}
	return out, nil
}

// revokedKey identifies a certificate by its issuer and serial number.
func revokedKey(rawIssuer []byte, serial *big.Int) string {
	s := serial.Bytes()
	b := make([]byte, 0, 4+len(rawIssuer)+len(s))
	b = binary.BigEndian.AppendUint32(b, uint32(len(rawIssuer)))
	b = append(b, rawIssuer...)
	b = append(b, s...)
	return string(b)
}

// files is the raw content of the configured files and its fingerprint.
type files struct {
	cert, key, ca []byte
	crls          [][]byte
	sum           [32]byte
	each          []fileSum // every file read, in order
}

// fileSum is the fingerprint of one file's content.
type fileSum struct {
	name string
	sum  [32]byte
}

// fileErr annotates an error, whose message already names the file, with
// the file it is about, for the File of a reload event.
type fileErr struct {
	error
	file string
}

func (e fileErr) Unwrap() error { return e.error }

// inFile returns fmt.Errorf("%s: %w", name, err) annotated with file.
func inFile(file, name string, err error) error {
	return fileErr{fmt.Errorf("%s: %w", name, err), file}
}

// fileOf returns the file err is about, or "".
func fileOf(err error) string {
	var fe fileErr
	if errors.As(err, &fe) {
		return fe.file
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Path
	}
	return ""
}

func readFiles(c *Config) (*files, error) {
	f := &files{}
	h := sha256.New()
	read := func(name string) ([]byte, error) {
		if name == "" {
			h.Write([]byte{0, 0, 0, 0})
			return nil, nil
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		f.each = append(f.each, fileSum{name, sha256.Sum256(b)})
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
		return b, nil
	}
	var err error
	if f.cert, err = read(c.CertFile); err != nil {
		return nil, err
	}
	if f.key, err = read(c.KeyFile); err != nil {
		return nil, err
	}
	if f.ca, err = read(c.CAFile); err != nil {
		return nil, err
	}
	for _, name := range c.CRLFiles {
		b, err := read(name)
		if err != nil {
			return nil, err
		}
		f.crls = append(f.crls, b)
	}
	h.Sum(f.sum[:0])
	return f, nil
}

// material is one immutable snapshot of the loaded files.
type material struct {
	sum      [32]byte
	each     []fileSum
	cert     *tls.Certificate // nil without cert_file
	pool     *x509.CertPool   // nil without ca_file
	revoked  map[string]struct{}
	pins     map[[32]byte]struct{}
	names    map[string]struct{}
	certs    []fileCert  // every loaded certificate, for expiry warnings
	warnings []error     // stale revocation lists
	server   *tls.Config // the per-snapshot server config; nil until built
}

// fileCert is a loaded certificate and the file it came from.
type fileCert struct {
	file string
	cert *x509.Certificate
}

// expiring returns the expiry warnings of m at now.
func (m *material) expiring(now time.Time, window time.Duration) []error {
	var out []error
	for _, fc := range m.certs {
		if w := expiryWarning(fc.file, fc.cert, now, window); w != nil {
			out = append(out, w)
		}
	}
	return out
}

// build parses and checks f.
func build(c *Config, f *files) (*material, error) {
	now := c.now()
	m := &material{sum: f.sum, each: f.each}
	var err error
	if m.pins, err = parsePins(c.PinnedSPKI); err != nil {
		return nil, err
	}
	if len(c.AllowedNames) > 0 {
		m.names = make(map[string]struct{}, len(c.AllowedNames))
		for _, n := range c.AllowedNames {
			m.names[n] = struct{}{}
		}
	}
	if c.CertFile != "" {
		kp, err := ParseKeyPair(f.cert, f.key, now)
		if err != nil {
			file := c.CertFile // a bad certificate, or a pair that does not match
			if _, cerr := ParseCertificates(f.cert); cerr == nil {
				if _, kerr := ParsePrivateKey(f.key); kerr != nil {
					file = c.KeyFile
				}
			}
			return nil, inFile(file, c.CertFile+", "+c.KeyFile, err)
		}
		m.cert = &kp
		chain, _ := ParseCertificates(f.cert)
		for _, x := range chain {
			m.certs = append(m.certs, fileCert{c.CertFile, x})
		}
	}
	var cas []*x509.Certificate
	if c.CAFile != "" {
		if cas, err = ParseCertificates(f.ca); err != nil {
			return nil, inFile(c.CAFile, c.CAFile, err)
		}
		m.pool = x509.NewCertPool()
		for _, x := range cas {
			if err := CheckCertificate(x, now); err != nil {
				return nil, inFile(c.CAFile, c.CAFile, err)
			}
			m.certs = append(m.certs, fileCert{c.CAFile, x})
			m.pool.AddCert(x)
		}
	}
	for i, data := range f.crls {
		name := c.CRLFiles[i]
		lists, err := ParseCRLs(data)
		if err != nil {
			return nil, inFile(name, name, err)
		}
		for _, l := range lists {
			if err := checkCRLIssuer(l, cas); err != nil {
				return nil, inFile(name, name, err)
			}
			if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
				m.warnings = append(m.warnings, fileErr{fmt.Errorf("%w: %s: next update was due at %s", ErrCRL, name, l.NextUpdate.UTC().Format(time.RFC3339)), name})
			}
			if m.revoked == nil {
				m.revoked = make(map[string]struct{})
			}
			for _, e := range l.RevokedCertificateEntries {
				m.revoked[revokedKey(l.RawIssuer, e.SerialNumber)] = struct{}{}
			}
		}
	}
	return m, nil
}

func checkCRLIssuer(l *x509.RevocationList, cas []*x509.Certificate) error {
	switch l.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
		// crypto/x509 still accepts SHA-1 on a revocation list.
		return fmt.Errorf("%w: %w: issuer %q signed it with %s", ErrCRL, ErrWeakSignature, l.Issuer.String(), l.SignatureAlgorithm)
	}
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, l.RawIssuer) && l.CheckSignatureFrom(ca) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: issuer %q is not a certificate of ca_file, or the signature is wrong", ErrCRL, l.Issuer.String())
}
