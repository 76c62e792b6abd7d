package tlsconf

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names in a dev CA folder.
const (
	DevCACert     = "ca.pem"
	DevCAKey      = "ca.key"
	DevServerCert = "server.pem"
	DevServerKey  = "server.key"
	DevCRL        = "ca.crl"
)

// DevCA is a development certificate authority kept in a folder: an ECDSA
// P-256 CA ([DevCACert], [DevCAKey]), a server certificate for localhost,
// 127.0.0.1 and ::1 ([DevServerCert], [DevServerKey]) and client
// certificates named client-NAME.pem / client-NAME.key. Keys are written
// with mode 0600, certificates with 0644, and every file is replaced
// atomically (a [Reloader] never reads half a file).
//
// It is meant for tests, local development and the embedded default of
// "mqttsec serve", not for production PKI. A DevCA is not safe for
// concurrent use; set Now and Validity before issuing.
type DevCA struct {
	// Dir is the folder holding the files.
	Dir string
	// Now is the clock used for validity periods. Nil means time.Now.
	Now func() time.Time
	// Validity is the lifetime of issued server and client certificates.
	// Zero means one year.
	Validity time.Duration

	cert *x509.Certificate
	key  crypto.Signer
}

// CreateDevCA creates dir (mode 0700) if needed and writes a new CA and a
// server certificate into it. It fails with an error wrapping
// [fs.ErrExist] when dir already holds a CA.
func CreateDevCA(dir string) (*DevCA, error) {
	if _, err := os.Stat(filepath.Join(dir, DevCACert)); err == nil {
		return nil, fmt.Errorf("tlsconf: dev CA in %s: %w", dir, fs.ErrExist)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsconf: dev CA: %w", err)
	}
	ca := &DevCA{Dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "mqttsec development CA", Organization: []string{"mqttsec"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.key = key
	if err := writeKey(filepath.Join(dir, DevCAKey), key); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, DevCACert), 0o644, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if _, err := ca.IssueServer(); err != nil {
		return nil, err
	}
	return ca, nil
}

// OpenDevCA loads the CA of dir (written by [CreateDevCA]).
func OpenDevCA(dir string) (*DevCA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, DevCACert))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: dev CA: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, DevCAKey))
	if err != nil {
		return nil, fmt.Errorf("tlsconf: dev CA: %w", err)
	}
	certs, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: dev CA %s: %w", DevCACert, err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: dev CA %s: %w", DevCAKey, err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if p, ok := key.Public().(equaler); !ok || !p.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("tlsconf: dev CA: %w", ErrKeyMismatch)
	}
	return &DevCA{Dir: dir, cert: certs[0], key: key}, nil
}

// EnsureDevCA opens the CA of dir, or creates it when dir holds none.
func EnsureDevCA(dir string) (*DevCA, error) {
	ca, err := OpenDevCA(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return ca, err
	}
	return CreateDevCA(dir)
}

// Certificate returns the CA certificate.
func (ca *DevCA) Certificate() *x509.Certificate { return ca.cert }

// CAFile returns the path of the CA certificate.
func (ca *DevCA) CAFile() string { return filepath.Join(ca.Dir, DevCACert) }

// ServerFiles returns the paths of the server certificate and key.
func (ca *DevCA) ServerFiles() (certFile, keyFile string) {
	return filepath.Join(ca.Dir, DevServerCert), filepath.Join(ca.Dir, DevServerKey)
}

// ClientFiles returns the paths of the certificate and key of client name.
func (ca *DevCA) ClientFiles(name string) (certFile, keyFile string) {
	return filepath.Join(ca.Dir, "client-"+name+".pem"), filepath.Join(ca.Dir, "client-"+name+".key")
}

// ServerConfig returns a Config for a broker listener: the server
// certificate, and client certificates of this CA verified when given.
func (ca *DevCA) ServerConfig() Config {
	cert, key := ca.ServerFiles()
	return Config{CertFile: cert, KeyFile: key, CAFile: ca.CAFile(), ClientAuth: ClientAuthVerifyIfGiven}
}

// ClientConfig returns a Config for a client trusting this CA, presenting
// the certificate of client name (issued with IssueClient), or none when
// name is empty.
func (ca *DevCA) ClientConfig(name string) Config {
	c := Config{CAFile: ca.CAFile()}
	if name != "" {
		c.CertFile, c.KeyFile = ca.ClientFiles(name)
	}
	return c
}

// IssueServer (re)issues the server certificate and key for localhost,
// 127.0.0.1, ::1 and the given extra host names or IP addresses, and
// returns the certificate.
func (ca *DevCA) IssueServer(hosts ...string) (*x509.Certificate, error) {
	tmpl := ca.leafTemplate("localhost")
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, key := ca.ServerFiles()
	return ca.issue(tmpl, cert, key)
}

// IssueClient issues a client certificate with subject common name name
// (also its only DNS name when name is a valid host name) and writes it to
// the files [DevCA.ClientFiles] names. name must be a plain file-name-safe
// word: letters, digits, '-', '_' and '.'.
func (ca *DevCA) IssueClient(name string) (*x509.Certificate, error) {
	if !safeName(name) {
		return nil, fmt.Errorf("%w: client name %q: use letters, digits, '-', '_' and '.'", ErrConfig, name)
	}
	tmpl := ca.leafTemplate(name)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if hostName(name) {
		tmpl.DNSNames = []string{name}
	}
	cert, key := ca.ClientFiles(name)
	return ca.issue(tmpl, cert, key)
}

// WriteCRL writes a revocation list of this CA revoking the given
// certificates to [DevCRL] in Dir, and returns its path. An empty list is
// valid. Each call replaces the previous list.
func (ca *DevCA) WriteCRL(revoked ...*x509.Certificate) (string, error) {
	now := ca.now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(now.UnixNano()),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(30 * 24 * time.Hour),
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		return "", fmt.Errorf("tlsconf: dev CA: %w", err)
	}
	path := filepath.Join(ca.Dir, DevCRL)
	return path, writePEM(path, 0o644, "X509 CRL", der)
}

func (ca *DevCA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

func (ca *DevCA) leafTemplate(cn string) *x509.Certificate {
	now := ca.now()
	v := ca.Validity
	if v == 0 {
		v = 365 * 24 * time.Hour
	}
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"mqttsec development"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(v),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func (ca *DevCA) issue(tmpl *x509.Certificate, certFile, keyFile string) (*x509.Certificate, error) {
	if ca.cert == nil || ca.key == nil {
		return nil, fmt.Errorf("%w: DevCA not created with CreateDevCA or OpenDevCA", ErrConfig)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: dev CA: %w", err)
	}
	// Two renames: a watcher that reads between them sees a mismatched
	// pair, reports it and keeps the old pair until the certificate lands.
	if err := writeKey(keyFile, key); err != nil {
		return nil, err
	}
	if err := writePEM(certFile, 0o644, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

// hostName reports whether s is a DNS host name (RFC 1123): dot-separated
// labels of 1 to 63 letters, digits and '-', not starting or ending with
// '-', at most 253 bytes, without a trailing dot.
func hostName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func safeName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 64 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) < 0
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, 0o600, "PRIVATE KEY", der)
}

// writePEM replaces path atomically with one PEM block.
func writePEM(path string, mode os.FileMode, typ string, der []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsconf: %w", err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		err = pem.Encode(f, &pem.Block{Type: typ, Bytes: der})
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("tlsconf: write %s: %w", path, err)
	}
	return nil
}
