package auth_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

// identities remembers the identity of every client that subscribed, via
// an allow-all authorizer.
type identities struct{ m sync.Map }

func (r *identities) Authorize(_ context.Context, cl *mqttsec.Client, _ mqttsec.Access, _ string) error {
	r.m.Store(cl.ID, *cl.Identity)
	return nil
}

func (r *identities) of(t *testing.T, c *testbroker.Conn, clientID string) mqttsec.Identity {
	t.Helper()
	require.Equal(t, byte(0), c.Sub(t, "probe/"+clientID, 0))
	v, ok := r.m.Load(clientID)
	require.True(t, ok)
	return v.(mqttsec.Identity)
}

func startBroker(t *testing.T, a mqttsec.Authenticator, tlsCfg *tls.Config) (*testbroker.Broker, *identities) {
	t.Helper()
	ids := &identities{}
	g := mqttsec.New(mqttsec.Config{Authenticator: a, Authorizer: ids, Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {})})
	return testbroker.Start(t, g, testbroker.Options{TLS: tlsCfg}), ids
}

func refusedWith(t *testing.T, addr string, o testbroker.ClientOptions, code byte) {
	t.Helper()
	_, ca, err := testbroker.Dial(t, addr, o)
	require.Error(t, err)
	require.NotNil(t, ca, "want a CONNACK")
	require.Equal(t, code, ca.ReasonCode)
}

// TestE2EMosquittoPasswordFile: a file written by the real
// mosquitto_passwd authenticates real paho clients through the mochi
// adapter.
func TestE2EMosquittoPasswordFile(t *testing.T) {
	bin := testenv.Need(t, "mosquitto_passwd")
	file := filepath.Join(t.TempDir(), "passwd")
	for _, args := range [][]string{
		{"-c", "-b", file, "alice", "alice-password"},
		{"-H", "sha512", "-b", file, "bob", "bob-password"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	p := auth.NewPasswords(nil, auth.PasswordsConfig{})
	w, err := auth.WatchPasswordFile(file, p, auth.WatchOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	b, ids := startBroker(t, auth.Chain(p), nil)

	c, ca, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "a1", Username: "alice", Password: []byte("alice-password")})
	require.NoError(t, err)
	require.Equal(t, byte(0), ca.ReasonCode)
	id := ids.of(t, c, "a1")
	require.Equal(t, "alice", id.Subject)
	require.Equal(t, mqttsec.MethodPassword, id.Method)

	_, _, err = testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "b1", Username: "bob", Password: []byte("bob-password")})
	require.NoError(t, err, "$6$ entry")

	refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "a2", Username: "alice", Password: []byte("bob-password")}, 0x86)
	refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "a3", Username: "mallory", Password: []byte("alice-password")}, 0x86)
	refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "a4"}, 0x86)
}

func TestE2EJWT(t *testing.T) {
	k := getKeys(t)
	j := newJWT(t, auth.JWTConfig{
		Algorithms: []string{"ES256", "RS256"},
		PublicKeys: []crypto.PublicKey{k.ecPub, k.rsaPub},
		Issuer:     testIss,
		Audience:   testAud,
		Leeway:     -1,
	})
	p := auth.NewPasswords(fileWith(t, "alice", "alice-password"), auth.PasswordsConfig{})
	b, ids := startBroker(t, auth.Chain(j, p), nil)
	now := time.Now()
	tok := func(m jwt.SigningMethod, key any, sub string, exp time.Time) []byte {
		return []byte(sign(t, m, key, jwt.MapClaims{"sub": sub, "iss": testIss, "aud": testAud, "iat": now.Unix(), "exp": exp.Unix()}))
	}

	c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "d1", Username: "dev1",
		Password: tok(jwt.SigningMethodES256, k.ec, "dev1", now.Add(time.Hour))})
	require.NoError(t, err)
	id := ids.of(t, c, "d1")
	require.Equal(t, mqttsec.MethodJWT, id.Method)
	require.Equal(t, now.Add(time.Hour).Unix(), id.Expiry.Unix())

	// Passwords still work behind the JWT authenticator.
	_, _, err = testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "p1", Username: "alice", Password: []byte("alice-password")})
	require.NoError(t, err)

	t.Run("expired", func(t *testing.T) {
		refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "d2", Username: "dev1",
			Password: tok(jwt.SigningMethodES256, k.ec, "dev1", now.Add(-time.Minute))}, 0x86)
	})
	t.Run("alg none", func(t *testing.T) {
		none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "dev1", "exp": now.Add(time.Hour).Unix()})
		refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "d3", Username: "dev1", Password: []byte(none)}, 0x86)
	})
	t.Run("key confusion", func(t *testing.T) {
		forged := tok(jwt.SigningMethodHS256, k.rsaPEM, "dev1", now.Add(time.Hour))
		refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "d4", Username: "dev1", Password: forged}, 0x86)
	})
	t.Run("wrong user", func(t *testing.T) {
		refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "d5", Username: "dev2",
			Password: tok(jwt.SigningMethodES256, k.ec, "dev1", now.Add(time.Hour))}, 0x86)
	})
	t.Run("expires while connected", func(t *testing.T) {
		// exp has one-second resolution: expire two to three seconds from
		// now, so that a CONNECT slowed by a busy machine still gets in.
		exp := time.Unix(time.Now().Unix()+3, 0)
		c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "d6", Username: "dev1",
			Password: tok(jwt.SigningMethodES256, k.ec, "dev1", exp)})
		require.NoError(t, err)
		select {
		case d := <-c.ServerDisconnect():
			require.Equal(t, byte(0xA0), d.ReasonCode)
			require.False(t, time.Now().Before(exp), "disconnected before exp")
		case <-time.After(10 * time.Second):
			t.Fatal("no DISCONNECT at token expiry")
		}
		select {
		case <-c.Closed():
		case <-time.After(5 * time.Second):
			t.Fatal("connection not closed")
		}
	})
}

func TestE2EClientCertificate(t *testing.T) {
	ca := newCA(t)
	server := ca.issue(t, "broker", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)} })
	srvTLS := &tls.Config{
		Certificates: []tls.Certificate{server},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS12,
	}
	x, err := auth.NewX509(auth.X509Config{Field: auth.URI, URIPrefix: "spiffe://example.org/"})
	require.NoError(t, err)
	p := auth.NewPasswords(fileWith(t, "alice", "alice-password"), auth.PasswordsConfig{})
	b, ids := startBroker(t, auth.Chain(x, p), srvTLS)

	leaf := ca.issue(t, "device-1", withSANs("dev1.example.com", "dev1@example.com", "spiffe://example.org/device/1"))
	clientTLS := func(cert *tls.Certificate) *tls.Config {
		cfg := &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		return cfg
	}
	c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "m1", TLS: clientTLS(&leaf)})
	require.NoError(t, err)
	id := ids.of(t, c, "m1")
	require.Equal(t, "spiffe://example.org/device/1", id.Subject)
	require.Equal(t, mqttsec.MethodX509, id.Method)
	require.Equal(t, leaf.Leaf.NotAfter.Unix(), id.Expiry.Unix())
	require.Equal(t, auth.CertFingerprint(leaf.Leaf), id.Attributes["fingerprint"])

	// No certificate: the X.509 authenticator abstains and passwords decide.
	c, _, err = testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "m2", Username: "alice",
		Password: []byte("alice-password"), TLS: clientTLS(nil)})
	require.NoError(t, err)
	require.Equal(t, mqttsec.MethodPassword, ids.of(t, c, "m2").Method)
	refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "m3", TLS: clientTLS(nil)}, 0x86)

	// A certificate without a SPIFFE ID is refused, not ignored.
	plain := ca.issue(t, "device-2", nil)
	refusedWith(t, b.Addr, testbroker.ClientOptions{ClientID: "m4", TLS: clientTLS(&plain)}, 0x86)
}
