package scan_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/scan"
	"github.com/mqttsec/mqttsec/tlsconf"
)

var tlsChecks = []string{"tls-version", "tls-cipher", "tls-certificate", "tls-certificate-expiry", "tls-client-certificate", "plaintext-listener"}

// weakCert returns an expired, self-signed certificate with a 1024-bit RSA
// key for a name the scanner does not dial.
func weakCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "wrong.example"},
		DNSNames:     []string{"wrong.example"},
		NotBefore:    time.Now().Add(-2 * 365 * 24 * time.Hour),
		NotAfter:     time.Now().Add(-24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func anonymousGuard() *mqttsec.Guard {
	return mqttsec.New(mqttsec.Config{Authenticator: auth.Anonymous()})
}

// TestTLSWeak scans a TLS listener configured as badly as crypto/tls
// allows: TLS 1.0, CBC and RSA key exchange, an expired self-signed
// 1024-bit certificate for another name, no client certificates, and a
// plaintext listener next to it.
func TestTLSWeak(t *testing.T) {
	t.Parallel()
	cfg := &tls.Config{
		Certificates: []tls.Certificate{weakCert(t)},
		MinVersion:   tls.VersionTLS10,
		CipherSuites: []uint16{
			tls.TLS_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		},
	}
	b := testbroker.Start(t, anonymousGuard(), testbroker.Options{TLS: cfg})
	plain := testbroker.Start(t, anonymousGuard(), testbroker.Options{})
	rep, err := scan.Run(context.Background(), "mqtts://"+b.Addr, scan.Options{
		Checks:         tlsChecks,
		PlaintextAddrs: []string{plain.Addr},
	})
	require.NoError(t, err)
	requireStatus(t, rep, map[string]scan.Status{
		"tls-version":            scan.Fail,
		"tls-cipher":             scan.Fail,
		"tls-certificate":        scan.Fail,
		"tls-certificate-expiry": scan.Fail,
		"tls-client-certificate": scan.Fail,
		"plaintext-listener":     scan.Fail,
	})
	f := byID(t, rep)
	require.Contains(t, f["tls-version"].Evidence, "TLS 1.0")
	require.Contains(t, f["tls-version"].Evidence, "TLS 1.1")
	require.Contains(t, f["tls-cipher"].Evidence, "TLS_RSA_WITH_AES_128_CBC_SHA")
	require.Contains(t, f["tls-cipher"].Evidence, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")
	require.NotContains(t, f["tls-cipher"].Evidence, "GCM")
	for _, want := range []string{"expired on", `not valid for "127.0.0.1"`, "trusted CA", "RSA key of 1024 bits"} {
		require.Contains(t, f["tls-certificate"].Evidence, want)
	}
	require.Contains(t, f["plaintext-listener"].Evidence, plain.Addr)
}

// TestTLSStrong scans a listener built by tlsconf that requires client
// certificates, as a principal holding one: every TLS check passes.
func TestTLSStrong(t *testing.T) {
	t.Parallel()
	ca, err := tlsconf.EnsureDevCA(filepath.Join(t.TempDir(), "ca"))
	require.NoError(t, err)
	sc := ca.ServerConfig()
	sc.ClientAuth = tlsconf.ClientAuthRequire
	serverTLS, err := sc.Server()
	require.NoError(t, err)
	_, err = ca.IssueClient("alice")
	require.NoError(t, err)
	certFile, keyFile := ca.ClientFiles("alice")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())

	b := testbroker.Start(t, mqttsec.New(mqttsec.Config{}), testbroker.Options{TLS: serverTLS})
	rep, err := scan.Run(context.Background(), "mqtts://"+b.Addr, scan.Options{
		Principal:      scan.Credentials{Certificate: &cert},
		TLS:            &tls.Config{RootCAs: pool},
		Checks:         tlsChecks,
		PlaintextAddrs: []string{"127.0.0.1:" + itoa(testenv.FreePort(t))},
	})
	require.NoError(t, err)
	requireStatus(t, rep, map[string]scan.Status{
		"tls-version":            scan.Pass,
		"tls-cipher":             scan.Pass,
		"tls-certificate":        scan.Pass,
		"tls-certificate-expiry": scan.Pass,
		"tls-client-certificate": scan.Pass,
		"plaintext-listener":     scan.Pass,
	})

	// Without the CA the chain does not verify, and the scan says so.
	rep, err = scan.Run(context.Background(), "mqtts://"+b.Addr, scan.Options{Checks: []string{"tls-certificate"}})
	require.NoError(t, err)
	f := byID(t, rep)["tls-certificate"]
	require.Equal(t, scan.Fail, f.Status)
	require.Contains(t, f.Evidence, "trusted CA")

	// Nor are credentials sent to a broker whose certificate does not
	// verify: the checks that need them are skipped, and say why.
	rep, err = scan.Run(context.Background(), "mqtts://"+b.Addr, scan.Options{
		Principal: scan.Credentials{Certificate: &cert},
		Checks:    []string{"wildcard-subscribe"},
	})
	require.NoError(t, err)
	f = byID(t, rep)["wildcard-subscribe"]
	require.Equal(t, scan.Skip, f.Status)
	require.Contains(t, f.Evidence, "does not verify; credentials were not sent")
}
