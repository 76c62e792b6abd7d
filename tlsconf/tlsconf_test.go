package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/stretchr/testify/require"
)

func TestServerDefaults(t *testing.T) {
	ca := devCA(t)
	sc, err := ca.ServerConfig().Server()
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), sc.MinVersion)
	require.Equal(t, []string{"mqtt"}, sc.NextProtos)
	require.Equal(t, tls.VerifyClientCertIfGiven, sc.ClientAuth)
	require.NotNil(t, sc.GetConfigForClient)
	require.False(t, sc.SessionTicketsDisabled)
	for _, id := range sc.CipherSuites {
		s := tls.CipherSuiteName(id)
		require.Regexp(t, `^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$`, s)
	}
	require.Contains(t, sc.CurvePreferences, tls.X25519)
	require.Contains(t, sc.CurvePreferences, tls.CurveP256)
	require.Contains(t, sc.CurvePreferences, tls.CurveP384)
	require.NotContains(t, sc.CurvePreferences, tls.CurveP521)

	cc, err := ca.ClientConfig("").Client()
	require.NoError(t, err)
	require.False(t, cc.InsecureSkipVerify)
	require.Equal(t, uint16(tls.VersionTLS12), cc.MinVersion)
	require.NotNil(t, cc.ClientSessionCache)

	_, err = tlsconf.Config{}.Server()
	require.ErrorIs(t, err, tlsconf.ErrConfig, "a server without a certificate")
}

// TestHandshakes drives real loopback handshakes through every client-auth
// mode and client kind.
func TestHandshakes(t *testing.T) {
	ca := devCA(t)
	_, err := ca.IssueClient("dev1")
	require.NoError(t, err)
	other := devCA(t) // a CA the server does not trust
	_, err = other.IssueClient("intruder")
	require.NoError(t, err)

	noCert := ca.ClientConfig("")
	withCert := ca.ClientConfig("dev1")
	foreign := ca.ClientConfig("")
	foreign.CertFile, foreign.KeyFile = other.ClientFiles("intruder")

	srv := func(mode tlsconf.ClientAuth) tlsconf.Config {
		c := ca.ServerConfig()
		c.ClientAuth = mode
		return c
	}
	for _, tc := range []struct {
		name   string
		server tlsconf.Config
		client tlsconf.Config
		ok     bool
		peer   string // expected client CN seen by the server
	}{
		{"none/no cert", srv(tlsconf.ClientAuthNone), noCert, true, ""},
		{"none/cert ignored", srv(tlsconf.ClientAuthNone), withCert, true, ""},
		{"if-given/no cert", srv(tlsconf.ClientAuthVerifyIfGiven), noCert, true, ""},
		{"if-given/cert", srv(tlsconf.ClientAuthVerifyIfGiven), withCert, true, "dev1"},
		{"if-given/foreign cert", srv(tlsconf.ClientAuthVerifyIfGiven), foreign, false, ""},
		{"require/no cert", srv(tlsconf.ClientAuthRequire), noCert, false, ""},
		{"require/cert", srv(tlsconf.ClientAuthRequire), withCert, true, "dev1"},
		{"require/foreign cert", srv(tlsconf.ClientAuthRequire), foreign, false, ""},
		{"default with CA is require", func() tlsconf.Config { c := ca.ServerConfig(); c.ClientAuth = ""; return c }(), noCert, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen string
			tc.server.VerifyPeer = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) > 0 {
					seen = cs.PeerCertificates[0].Subject.CommonName
				}
				return nil
			}
			sc, err := tc.server.Server()
			require.NoError(t, err)
			s := startTLSServer(t, sc)
			cc, err := tc.client.Client()
			require.NoError(t, err)
			cs, err := dial(s, cc)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "mqtt", cs.NegotiatedProtocol)
			require.Equal(t, uint16(tls.VersionTLS13), cs.Version)
			require.Equal(t, tc.peer, seen)
		})
	}
}

func TestVersionsAndALPN(t *testing.T) {
	ca := devCA(t)
	sc, err := ca.ServerConfig().Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		_, err := dial(s, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		require.Error(t, err)
		require.ErrorContains(t, s.lastErr(), "version")
	})
	t.Run("TLS 1.2 AEAD", func(t *testing.T) {
		cs, err := dial(s, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12})
		require.NoError(t, err)
		require.Equal(t, uint16(tls.VersionTLS12), cs.Version)
		require.Contains(t, tlsconf.CipherSuites(), cs.CipherSuite)
	})
	t.Run("TLS 1.2 CBC refused", func(t *testing.T) {
		_, err := dial(s, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}})
		require.Error(t, err)
	})
	t.Run("no ALPN offered", func(t *testing.T) {
		cs, err := dial(s, &tls.Config{RootCAs: roots})
		require.NoError(t, err)
		require.Empty(t, cs.NegotiatedProtocol)
	})
	t.Run("min 1.3", func(t *testing.T) {
		c := ca.ServerConfig()
		c.MinVersion = "1.3"
		sc, err := c.Server()
		require.NoError(t, err)
		s13 := startTLSServer(t, sc)
		_, err = dial(s13, &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12})
		require.Error(t, err)
		cs, err := dial(s13, &tls.Config{RootCAs: roots})
		require.NoError(t, err)
		require.Equal(t, uint16(tls.VersionTLS13), cs.Version)
	})
	t.Run("insecure TLS 1.1 when asked", func(t *testing.T) {
		c := ca.ServerConfig()
		c.MinVersion, c.InsecureAllowTLS11 = "1.1", true
		sc, err := c.Server()
		require.NoError(t, err)
		s11 := startTLSServer(t, sc)
		cs, err := dial(s11, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11})
		require.NoError(t, err)
		require.Equal(t, uint16(tls.VersionTLS11), cs.Version)
	})
	t.Run("client checks server name", func(t *testing.T) {
		c := ca.ClientConfig("")
		c.ServerName = "broker.example"
		cc, err := c.Client()
		require.NoError(t, err)
		_, err = dial(s, cc)
		require.ErrorContains(t, err, "broker.example")
	})
	t.Run("client refuses TLS 1.1 server", func(t *testing.T) {
		old := startTLSServer(t, &tls.Config{Certificates: sc.Clone().Certificates, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11,
			GetCertificate: sc.GetCertificate})
		cc, err := ca.ClientConfig("").Client()
		require.NoError(t, err)
		_, err = dial(old, cc)
		require.Error(t, err)
	})
}

func TestRevocation(t *testing.T) {
	ca := devCA(t)
	good, err := ca.IssueClient("good")
	require.NoError(t, err)
	bad, err := ca.IssueClient("bad")
	require.NoError(t, err)
	crl, err := ca.WriteCRL(bad)
	require.NoError(t, err)
	_ = good

	c := ca.ServerConfig()
	c.ClientAuth = tlsconf.ClientAuthRequire
	c.CRLFiles = []string{crl}
	sc, err := c.Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)

	cc, err := ca.ClientConfig("good").Client()
	require.NoError(t, err)
	_, err = dial(s, cc)
	require.NoError(t, err)

	cc, err = ca.ClientConfig("bad").Client()
	require.NoError(t, err)
	_, err = dial(s, cc)
	require.Error(t, err)
	require.ErrorIs(t, s.lastErr(), tlsconf.ErrRevoked)
	require.ErrorIs(t, s.lastErr(), mqttsec.ErrNotAuthorized)

	t.Run("CRL of another CA is refused", func(t *testing.T) {
		other := devCA(t)
		foreign, err := other.WriteCRL()
		require.NoError(t, err)
		c := ca.ServerConfig()
		c.CRLFiles = []string{foreign}
		_, err = c.Server()
		require.ErrorIs(t, err, tlsconf.ErrCRL)
	})
}

// TestResumptionRechecked shows that checks run on resumed sessions: a
// client revoked after its first connection cannot resume.
func TestResumptionRechecked(t *testing.T) {
	ca := devCA(t)
	dev, err := ca.IssueClient("dev")
	require.NoError(t, err)
	crl, err := ca.WriteCRL()
	require.NoError(t, err)
	c := ca.ServerConfig()
	c.CRLFiles = []string{crl}
	c.Watch = tlsconf.WatchPoll
	c.PollInterval = time.Hour
	r, err := tlsconf.NewReloader(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	sc, err := r.Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)

	cc, err := ca.ClientConfig("dev").Client()
	require.NoError(t, err)
	cs, err := dial(s, cc)
	require.NoError(t, err)
	require.False(t, cs.DidResume)
	cs, err = dial(s, cc)
	require.NoError(t, err)
	require.True(t, cs.DidResume, "second connection resumes")

	_, err = ca.WriteCRL(dev)
	require.NoError(t, err)
	require.NoError(t, r.Reload())
	_, err = dial(s, cc)
	require.Error(t, err)
	require.ErrorIs(t, s.lastErr(), tlsconf.ErrRevoked)
}

func TestPinningAndNames(t *testing.T) {
	ca := devCA(t)
	_, err := ca.IssueClient("dev1")
	require.NoError(t, err)
	sc, err := ca.ServerConfig().Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)
	caPin := tlsconf.SPKIPin(ca.Certificate().RawSubjectPublicKeyInfo)
	serverCert, _ := ca.ServerFiles()
	pemData, err := os.ReadFile(serverCert)
	require.NoError(t, err)
	leaves, err := tlsconf.ParseCertificates(pemData)
	require.NoError(t, err)
	leafPin := tlsconf.SPKIPin(leaves[0].RawSubjectPublicKeyInfo)
	otherPin := tlsconf.SPKIPin(devCA(t).Certificate().RawSubjectPublicKeyInfo)

	for _, tc := range []struct {
		name  string
		pins  []string
		names []string
		want  error
	}{
		{"CA pin", []string{caPin}, nil, nil},
		{"leaf pin", []string{otherPin, leafPin}, nil, nil},
		{"wrong pin", []string{otherPin}, nil, tlsconf.ErrPinMismatch},
		{"allowed name", nil, []string{"localhost"}, nil},
		{"name not allowed", nil, []string{"broker.example"}, tlsconf.ErrNameNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ca.ClientConfig("dev1")
			c.PinnedSPKI, c.AllowedNames = tc.pins, tc.names
			cc, err := c.Client()
			require.NoError(t, err)
			_, err = dial(s, cc)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}

	t.Run("names on a server that asks for no certificate", func(t *testing.T) {
		c := ca.ServerConfig()
		c.ClientAuth = tlsconf.ClientAuthNone
		c.AllowedNames = []string{"dev1"}
		_, err := c.Server()
		require.ErrorIs(t, err, tlsconf.ErrConfig)
	})
	t.Run("server pins and names its clients", func(t *testing.T) {
		c := ca.ServerConfig()
		c.AllowedNames = []string{"dev2"}
		sc, err := c.Server()
		require.NoError(t, err)
		s := startTLSServer(t, sc)
		cc, err := ca.ClientConfig("dev1").Client()
		require.NoError(t, err)
		_, err = dial(s, cc)
		require.Error(t, err)
		require.ErrorIs(t, s.lastErr(), tlsconf.ErrNameNotAllowed)
	})
}

func TestMaterialChecks(t *testing.T) {
	rc := newRawCA(t)
	now := time.Now()
	okCert, okKey := rc.leaf(t, nil)
	_, otherKey := rc.leaf(t, nil)
	rsa1024 := rsaKey(t, 1024)
	weakCert, weakKey := rc.leaf(t, rsa1024)
	rsa2048 := rsaKey(t, 2048)
	rsaCert, rsaKeyPEM := rc.leaf(t, rsa2048)
	sha1Cert, sha1Key := rc.leaf(t, nil, func(c *x509.Certificate) { c.SignatureAlgorithm = x509.ECDSAWithSHA1 })
	expCert, expKey := rc.leaf(t, nil, func(c *x509.Certificate) { c.NotBefore, c.NotAfter = now.Add(-3*time.Hour), now.Add(-2*time.Hour) })
	futCert, futKey := rc.leaf(t, nil, func(c *x509.Certificate) { c.NotBefore = now.Add(time.Hour) })

	for _, tc := range []struct {
		name      string
		cert, key []byte
		want      error
	}{
		{"ok", okCert, okKey, nil},
		{"RSA 2048", rsaCert, rsaKeyPEM, nil},
		{"RSA 1024", weakCert, weakKey, tlsconf.ErrWeakKey},
		{"SHA-1 signature", sha1Cert, sha1Key, tlsconf.ErrWeakSignature},
		{"expired", expCert, expKey, tlsconf.ErrCertificateExpired},
		{"not yet valid", futCert, futKey, tlsconf.ErrNotYetValid},
		{"key mismatch", okCert, otherKey, tlsconf.ErrKeyMismatch},
		{"no certificate", okKey, okKey, tlsconf.ErrPEM},
		{"no key", okCert, okCert, tlsconf.ErrPEM},
		{"garbage", []byte("hello"), okKey, tlsconf.ErrPEM},
		{"encrypted key", okCert, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), tlsconf.ErrPEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsconf.ParseKeyPair(tc.cert, tc.key, now)
			if tc.want == nil {
				require.NoError(t, err)
				// And through files, with a clear message naming them.
				dir := t.TempDir()
				c := tlsconf.Config{CertFile: writeFile(t, dir, "c.pem", tc.cert), KeyFile: writeFile(t, dir, "k.pem", tc.key)}
				_, err = c.Server()
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			dir := t.TempDir()
			c := tlsconf.Config{CertFile: writeFile(t, dir, "c.pem", tc.cert), KeyFile: writeFile(t, dir, "k.pem", tc.key)}
			_, err = c.Server()
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, "c.pem")
		})
	}

	t.Run("weak CA in bundle", func(t *testing.T) {
		dir := t.TempDir()
		c := tlsconf.Config{CAFile: writeFile(t, dir, "ca.pem", weakCert)}
		_, err := c.Client()
		require.ErrorIs(t, err, tlsconf.ErrWeakKey)
	})
	t.Run("missing file", func(t *testing.T) {
		c := tlsconf.Config{CAFile: filepath.Join(t.TempDir(), "nope.pem")}
		_, err := c.Client()
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestExpiryWarning(t *testing.T) {
	rc := newRawCA(t)
	cert, key := rc.leaf(t, nil) // valid for 23 hours
	dir := t.TempDir()
	var ev events
	c := tlsconf.Config{CertFile: writeFile(t, dir, "c.pem", cert), KeyFile: writeFile(t, dir, "k.pem", key), Events: &ev}
	warnings, err := c.Check()
	require.NoError(t, err)
	require.Len(t, warnings, 1)
	require.ErrorIs(t, warnings[0], tlsconf.ErrExpiresSoon)
	require.ErrorContains(t, warnings[0], "c.pem")

	_, err = c.Server()
	require.NoError(t, err)
	require.True(t, ev.find(mqttsec.EventWarning, tlsconf.ErrExpiresSoon))

	c.ExpiryWarning = time.Hour
	warnings, err = c.Check()
	require.NoError(t, err)
	require.Empty(t, warnings)
	c.ExpiryWarning = -1
	warnings, err = c.Check()
	require.NoError(t, err)
	require.Empty(t, warnings)
}

func TestInjectedClock(t *testing.T) {
	ca := devCA(t)
	c := ca.ServerConfig()
	c.Now = func() time.Time { return time.Now().Add(2 * 365 * 24 * time.Hour) }
	_, err := c.Server()
	require.ErrorIs(t, err, tlsconf.ErrCertificateExpired)
	require.True(t, errors.Is(err, mqttsec.ErrExpired))
}

func TestDevCA(t *testing.T) {
	ca := devCA(t)
	_, err := tlsconf.CreateDevCA(ca.Dir)
	require.ErrorIs(t, err, os.ErrExist)
	again, err := tlsconf.EnsureDevCA(ca.Dir)
	require.NoError(t, err)
	require.True(t, again.Certificate().Equal(ca.Certificate()))

	cert, key := ca.ServerFiles()
	for _, f := range []string{filepath.Join(ca.Dir, tlsconf.DevCAKey), key} {
		st, err := os.Stat(f)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), f)
	}
	st, err := os.Stat(ca.Dir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	data, err := os.ReadFile(cert)
	require.NoError(t, err)
	leaf, err := tlsconf.ParseCertificates(data)
	require.NoError(t, err)
	require.Equal(t, []string{"localhost"}, leaf[0].DNSNames)
	require.Len(t, leaf[0].IPAddresses, 2)
	require.NoError(t, leaf[0].VerifyHostname("::1"))
	require.NoError(t, leaf[0].VerifyHostname("127.0.0.1"))

	c, err := again.IssueClient("sensor-7")
	require.NoError(t, err)
	require.Equal(t, "sensor-7", c.Subject.CommonName)
	require.Equal(t, []string{"sensor-7"}, c.DNSNames, "a host name is also the DNS name, as documented")
	require.NoError(t, c.VerifyHostname("sensor-7"))
	require.True(t, slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth))
	for name, dns := range map[string][]string{
		"plant.sensor-7": {"plant.sensor-7"},
		"sensor_7":       nil, // '_' is no host name character
		"-sensor":        nil,
		"sensor.":        nil,
		"a..b":           nil,
		"sensor.local.":  nil,
		"7":              {"7"},
	} {
		c, err := again.IssueClient(name)
		require.NoError(t, err, name)
		require.Equal(t, dns, c.DNSNames, name)
		require.Equal(t, name, c.Subject.CommonName)
	}
	_, ckey := ca.ClientFiles("sensor-7")
	st, err = os.Stat(ckey)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	for _, bad := range []string{"", "..", "a/b", "../x", "a b", "é"} {
		_, err := ca.IssueClient(bad)
		require.ErrorIs(t, err, tlsconf.ErrConfig, "%q", bad)
	}
	_, err = tlsconf.OpenDevCA(t.TempDir())
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestStaleCRLWarning(t *testing.T) {
	ca := devCA(t)
	ca.Now = func() time.Time { return time.Now().Add(-40 * 24 * time.Hour) }
	crl, err := ca.WriteCRL() // its next update was due ten days ago
	require.NoError(t, err)
	c := ca.ServerConfig()
	c.CRLFiles = []string{crl}
	warnings, err := c.Check()
	require.NoError(t, err)
	require.Len(t, warnings, 1)
	require.ErrorIs(t, warnings[0], tlsconf.ErrCRL)
	require.ErrorContains(t, warnings[0], "next update")
}
