package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
)

func certLogin(a mqttsec.Authenticator, st *tls.ConnectionState, user string) (*mqttsec.Identity, error) {
	return a.Authenticate(context.Background(), &mqttsec.Client{ID: "c", Username: user, TLS: st}, mqttsec.Credentials{})
}

func TestX509(t *testing.T) {
	ca := newCA(t)
	leaf := ca.issue(t, "device-1", withSANs("dev1.example.com", "dev1@example.com", "spiffe://example.org/device/1"))
	st := handshake(t, ca, tls.RequireAndVerifyClientCert, &leaf)
	require.NotEmpty(t, st.VerifiedChains)
	fp := auth.CertFingerprint(leaf.Leaf)

	for _, tc := range []struct {
		name string
		cfg  auth.X509Config
		want string
	}{
		{"common name", auth.X509Config{}, "device-1"},
		{"dns", auth.X509Config{Field: auth.DNSName}, "dev1.example.com"},
		{"email", auth.X509Config{Field: auth.EmailAddress}, "dev1@example.com"},
		{"uri", auth.X509Config{Field: auth.URI}, "https://example.com"},
		{"spiffe", auth.X509Config{Field: auth.URI, URIPrefix: "spiffe://example.org/"}, "spiffe://example.org/device/1"},
		{"fingerprint", auth.X509Config{Field: auth.Fingerprint}, fp},
		{"pinned", auth.X509Config{Pins: []string{strings.ToUpper(fp[:2]) + ":" + fp[2:]}}, "device-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := auth.NewX509(tc.cfg)
			require.NoError(t, err)
			id, err := certLogin(x, &st, "")
			require.NoError(t, err)
			require.Equal(t, tc.want, id.Subject)
			require.Equal(t, mqttsec.MethodX509, id.Method)
			require.Equal(t, leaf.Leaf.NotAfter, id.Expiry)
			require.Equal(t, fp, id.Attributes["fingerprint"])
		})
	}

	x, err := auth.NewX509(auth.X509Config{MatchUsername: true})
	require.NoError(t, err)
	_, err = certLogin(x, &st, "device-2")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	_, err = certLogin(x, &st, "device-1")
	require.NoError(t, err)

	pinned, err := auth.NewX509(auth.X509Config{Pins: []string{strings.Repeat("ab", 32)}})
	require.NoError(t, err)
	_, err = certLogin(pinned, &st, "")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)

	spiffe, err := auth.NewX509(auth.X509Config{Field: auth.URI, URIPrefix: "spiffe://other.org/"})
	require.NoError(t, err)
	_, err = certLogin(spiffe, &st, "")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)

	_, err = auth.NewX509(auth.X509Config{Pins: []string{"abc"}})
	require.ErrorIs(t, err, auth.ErrConfig)
}

func TestX509AbstainsAndRefuses(t *testing.T) {
	ca := newCA(t)
	x, err := auth.NewX509(auth.X509Config{})
	require.NoError(t, err)

	_, err = certLogin(x, nil, "")
	require.ErrorIs(t, err, mqttsec.ErrAbstain, "plaintext connection")

	noCert := handshake(t, ca, tls.VerifyClientCertIfGiven, nil)
	_, err = certLogin(x, &noCert, "")
	require.ErrorIs(t, err, mqttsec.ErrAbstain, "TLS without a client certificate")

	// A certificate from another CA, accepted by a TLS layer that does not
	// verify: the identity must be refused.
	rogue := newCA(t).issue(t, "device-1", nil)
	unverified := handshake(t, ca, tls.RequireAnyClientCert, &rogue)
	require.NotEmpty(t, unverified.PeerCertificates)
	require.Empty(t, unverified.VerifiedChains)
	_, err = certLogin(x, &unverified, "")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)

	// Outside the validity period by the authenticator's clock.
	leaf := ca.issue(t, "device-1", nil)
	st := handshake(t, ca, tls.RequireAndVerifyClientCert, &leaf)
	late, err := auth.NewX509(auth.X509Config{Clock: func() time.Time { return leaf.Leaf.NotAfter.Add(time.Second) }})
	require.NoError(t, err)
	_, err = certLogin(late, &st, "")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)

	// The identity expires with the earliest certificate of the chain.
	short := ca.issue(t, "device-1", func(c *x509.Certificate) { c.NotAfter = time.Now().Add(10 * time.Minute) })
	st = handshake(t, ca, tls.RequireAndVerifyClientCert, &short)
	id, err := certLogin(x, &st, "")
	require.NoError(t, err)
	require.Equal(t, short.Leaf.NotAfter, id.Expiry)
}

// verifierFunc is a ClientCertVerifier from a function, for the answers a
// real verifier rarely gives (no verdict at all).
type verifierFunc func([]*x509.Certificate) error

func (f verifierFunc) VerifyClientCertificate(c []*x509.Certificate) error { return f(c) }

// Revalidate judges the certificate of the session's own connection again
// with the current configuration, the clock and the Verifier.
func TestX509Revalidate(t *testing.T) {
	ctx := context.Background()
	ca := newCA(t)
	leaf := ca.issue(t, "device-1", withSANs("dev1.example.com", "dev1@example.com", "spiffe://example.org/device/1"))
	st := handshake(t, ca, tls.RequireAndVerifyClientCert, &leaf)
	var verdict error
	x, err := auth.NewX509(auth.X509Config{Verifier: verifierFunc(func(chain []*x509.Certificate) error {
		if len(chain) == 0 || chain[0] != st.PeerCertificates[0] {
			return errors.New("verifier shown another chain")
		}
		return verdict
	})})
	require.NoError(t, err)
	id, err := certLogin(x, &st, "")
	require.NoError(t, err)
	cl := &mqttsec.Client{ID: "c", TLS: &st, Identity: id}
	require.NoError(t, x.Revalidate(ctx, cl))

	verdict = fmt.Errorf("%w: revoked", mqttsec.ErrNotAuthorized)
	err = x.Revalidate(ctx, cl)
	require.ErrorIs(t, err, mqttsec.ErrNotAuthorized)
	require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
	verdict = errors.New("CRL server down")
	require.Equal(t, mqttsec.CodeUnspecified, mqttsec.CodeOf(x.Revalidate(ctx, cl)), "no verdict: the Guard keeps the session")
	verdict = nil

	// Another configuration after a reload: other pins, another field.
	for _, cfg := range []auth.X509Config{
		{Pins: []string{strings.Repeat("ab", 32)}},
		{Field: auth.DNSName},
		{Clock: func() time.Time { return leaf.Leaf.NotAfter.Add(time.Second) }},
	} {
		other, err := auth.NewX509(cfg)
		require.NoError(t, err)
		require.ErrorIs(t, other.Revalidate(ctx, cl), mqttsec.ErrBadCredentials)
	}
	plain, err := auth.NewX509(auth.X509Config{})
	require.NoError(t, err)
	require.NoError(t, plain.Revalidate(ctx, cl), "no Verifier: pins, name and validity only")

	// Not this connection's certificate identity: abstain.
	second := ca.issue(t, "device-1", nil)
	st2 := handshake(t, ca, tls.RequireAndVerifyClientCert, &second)
	for _, c := range []*mqttsec.Client{
		{ID: "other cert", TLS: &st2, Identity: id},
		{ID: "plaintext", Identity: id},
		{ID: "password", TLS: &st, Identity: &mqttsec.Identity{Subject: "device-1", Method: mqttsec.MethodPassword}},
		{ID: "none", TLS: &st},
	} {
		require.ErrorIs(t, x.Revalidate(ctx, c), mqttsec.ErrAbstain, c.ID)
	}
}
