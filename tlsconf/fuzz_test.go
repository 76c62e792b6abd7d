package tlsconf_test

import (
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	"github.com/mqttsec/mqttsec/tlsconf"
	"go.yaml.in/yaml/v3"
)

// FuzzParseConfig checks that ParseConfig never panics, that what it
// accepts validates, and that an accepted Config survives a YAML round
// trip unchanged.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"cert_file: a\nkey_file: b\nca_file: c\nclient_auth: require",
		"min_version: \"1.1\"\ninsecure_allow_tls11: true",                   // loud downgrade
		"pinned_spki: [sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=]", // base64 pin
		"alpn: [mqtt, x-amzn-mqtt-ca]\nexpiry_warning: 1h30m",
		"ca_file: c\ncrl_files: [x.crl, y.crl]\nwatch: poll\npoll_interval: 1ms",
		"cert_file: &a x\nkey_file: *a", // anchors
		"{cert_file: [1, 2]}",           // wrong type
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := tlsconf.ParseConfig(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := tlsconf.ParseConfig(out)
		if err != nil {
			t.Fatalf("round trip refused: %v\n%s", err, out)
		}
		if !equalConfig(c, back) {
			t.Fatalf("round trip changed the config:\n%#v\n%#v", c, back)
		}
	})
}

func equalConfig(a, b tlsconf.Config) bool {
	ay, _ := yaml.Marshal(a)
	by, _ := yaml.Marshal(b)
	return string(ay) == string(by)
}

// FuzzParsePEM feeds arbitrary certificate and key files to the loaders:
// none may panic, and a pair ParseKeyPair accepts must pass the checks it
// promises (matching key, acceptable certificates).
func FuzzParsePEM(f *testing.F) {
	rc := newRawCA(f)
	cert, key := rc.leaf(f, nil)
	f.Add(cert, key)                      // a good pair
	f.Add(key, cert)                      // swapped
	f.Add(append(cert, rc.pem()...), key) // with its CA appended
	f.Add(cert[:len(cert)/2], key[:len(key)/2])
	f.Add([]byte("-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"), []byte{0x30, 0x03, 0x02, 0x01, 0x00})
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), []byte{})
	now := time.Now()
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte) {
		_, _ = tlsconf.ParseCertificates(certPEM)
		_, _ = tlsconf.ParsePrivateKey(keyPEM)
		_, _ = tlsconf.ParseCRLs(certPEM)
		_, _ = tlsconf.ParseCRLs(keyPEM)
		kp, err := tlsconf.ParseKeyPair(certPEM, keyPEM, now)
		if err != nil {
			return
		}
		if len(kp.Certificate) == 0 || kp.Leaf == nil {
			t.Fatal("accepted pair without a certificate")
		}
		pub, ok := kp.PrivateKey.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !pub.Equal(kp.Leaf.PublicKey) {
			t.Fatal("accepted pair whose key does not match")
		}
		for _, der := range kp.Certificate {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlsconf.CheckCertificate(c, now); err != nil {
				t.Fatalf("accepted a certificate that fails the checks: %v", err)
			}
		}
	})
}
