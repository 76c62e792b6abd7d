package tlsconf_test

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/tlsconf"
)

// A revocation list signed with SHA-1 is weak material, like a SHA-1
// certificate: crypto/x509 accepts its signature, so loading must refuse it.
func TestCRLWeakSignatureRefused(t *testing.T) {
	rc := newRawCA(t)
	dir := t.TempDir()
	caFile := writeFile(t, dir, "ca.pem", rc.pem())
	certPEM, keyPEM := rc.leaf(t, nil)
	certFile := writeFile(t, dir, "server.pem", certPEM)
	keyFile := writeFile(t, dir, "server.key", keyPEM)
	crl := func(alg x509.SignatureAlgorithm) string {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
			SignatureAlgorithm: alg,
		}, rc.cert, rc.key)
		require.NoError(t, err)
		return writeFile(t, dir, "crl-"+alg.String()+".pem", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	}
	c := tlsconf.Config{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}

	c.CRLFiles = []string{crl(x509.ECDSAWithSHA256)}
	_, err := c.Server()
	require.NoError(t, err)

	c.CRLFiles = []string{crl(x509.ECDSAWithSHA1)}
	_, err = c.Server()
	require.ErrorIs(t, err, tlsconf.ErrWeakSignature)
	require.ErrorIs(t, err, tlsconf.ErrCRL)
}
