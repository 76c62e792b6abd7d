package scan

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"
)

var tlsVersion = Check{
	ID:          "tls-version",
	Title:       "TLS versions below 1.2 accepted",
	Severity:    Medium,
	Remediation: "Accept TLS 1.2 and 1.3 only (Mosquitto: tls_version tlsv1.2; Go: MinVersion tls.VersionTLS12). TLS 1.0 and 1.1 are deprecated by RFC 8996.",
	run: func(ctx context.Context, s *scanner) outcome {
		if o, ok := s.needTLS(ctx); !ok {
			return o
		}
		var accepted, refused []string
		for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
			cfg := s.probe.Clone()
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = v, v, allSuites()
			st, ok, err := s.handshake(ctx, cfg)
			switch {
			case ok && st != nil:
				accepted = append(accepted, fmt.Sprintf("%s (%s)", tls.VersionName(v), tls.CipherSuiteName(st.CipherSuite)))
			case ok:
				accepted = append(accepted, tls.VersionName(v)+" (then asked for a client certificate)")
			case isDialError(err):
				return skip("cannot connect: %v", err)
			default:
				refused = append(refused, fmt.Sprintf("%s (%s)", tls.VersionName(v), errText(err)))
			}
		}
		if len(accepted) > 0 {
			return fail("handshake completed with %s", strings.Join(accepted, " and "))
		}
		return pass("refused %s", strings.Join(refused, " and "))
	},
}

var tlsCipher = Check{
	ID:          "tls-cipher",
	Title:       "Weak TLS 1.2 cipher suites accepted",
	Severity:    Medium,
	Remediation: "Offer only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 for TLS 1.2 (Mosquitto: ciphers ECDHE+AESGCM:ECDHE+CHACHA20; Go: the tlsconf defaults). No RSA key exchange, CBC, 3DES or RC4.",
	run: func(ctx context.Context, s *scanner) outcome {
		if o, ok := s.needTLS(ctx); !ok {
			return o
		}
		var accepted []string
		tried := 0
		for _, cs := range weakSuites() {
			if ctx.Err() != nil {
				return skip("tried %d weak suites before the deadline; accepted: %s", tried, listOrNone(accepted))
			}
			cfg := s.probe.Clone()
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, tls.VersionTLS12, []uint16{cs.ID}
			_, ok, err := s.handshake(ctx, cfg)
			if isDialError(err) {
				return skip("cannot connect: %v", err)
			}
			tried++
			if ok {
				accepted = append(accepted, cs.Name)
			}
		}
		if len(accepted) > 0 {
			return fail("TLS 1.2 handshake completed offering only %s", strings.Join(accepted, ", "))
		}
		return pass("refused each of %d weak TLS 1.2 suites offered alone", tried)
	},
}

var tlsCertificate = Check{
	ID:          "tls-certificate",
	Title:       "Server certificate not valid for the target",
	Severity:    High,
	Remediation: "Serve a certificate chain that verifies to a CA the clients trust, for the host name clients dial, currently valid, with an RSA key of 2048 bits or more or an ECDSA key of 256 bits or more, signed with SHA-256 or better.",
	run: func(ctx context.Context, s *scanner) outcome {
		st, o, ok := s.baseline(ctx)
		if !ok {
			return o
		}
		leaf := st.PeerCertificates[0]
		var problems []string
		now := time.Now()
		switch {
		case now.After(leaf.NotAfter):
			problems = append(problems, fmt.Sprintf("expired on %s", leaf.NotAfter.UTC().Format(time.DateOnly)))
		case now.Before(leaf.NotBefore):
			problems = append(problems, fmt.Sprintf("not valid before %s", leaf.NotBefore.UTC().Format(time.DateOnly)))
		}
		if err := leaf.VerifyHostname(s.verified.ServerName); err != nil {
			problems = append(problems, fmt.Sprintf("not valid for %q (names: %s)", s.verified.ServerName, certNames(leaf)))
		}
		inter := x509.NewCertPool()
		for _, c := range st.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		// Verify the chain at a time the leaf is valid, so that an expired
		// leaf does not hide an untrusted chain.
		at := now
		if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			at = leaf.NotAfter.Add(-time.Second)
		}
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:         s.verified.RootCAs,
			Intermediates: inter,
			CurrentTime:   at,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			problems = append(problems, "chain does not verify to a trusted CA (give the CA to trust)")
		} else if err != nil && !isExpiry(err) {
			problems = append(problems, "chain does not verify: "+err.Error())
		}
		if w := weakKey(leaf); w != "" {
			problems = append(problems, w)
		}
		switch leaf.SignatureAlgorithm {
		case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.MD5WithRSA, x509.DSAWithSHA1, x509.MD2WithRSA:
			problems = append(problems, "signed with "+leaf.SignatureAlgorithm.String())
		}
		if len(problems) > 0 {
			return fail("certificate %q: %s", leaf.Subject.CommonName, strings.Join(problems, "; "))
		}
		return pass("certificate %q verifies for %q, valid until %s", leaf.Subject.CommonName, s.verified.ServerName, leaf.NotAfter.UTC().Format(time.DateOnly))
	},
}

var tlsCertificateExpiry = Check{
	ID:          "tls-certificate-expiry",
	Title:       "Server certificate expires within 30 days",
	Severity:    Low,
	Remediation: "Renew the server certificate, and automate renewal (ACME) so that it never comes this close.",
	run: func(ctx context.Context, s *scanner) outcome {
		st, o, ok := s.baseline(ctx)
		if !ok {
			return o
		}
		leaf := st.PeerCertificates[0]
		left := time.Until(leaf.NotAfter)
		switch {
		case left <= 0:
			return fail("expired on %s (see tls-certificate)", leaf.NotAfter.UTC().Format(time.DateOnly))
		case left < 30*24*time.Hour:
			return fail("expires on %s, in %d days", leaf.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
		}
		return pass("expires on %s, in %d days", leaf.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
	},
}

var tlsClientCertificate = Check{
	ID:          "tls-client-certificate",
	Title:       "Client certificate not required",
	Severity:    Low,
	Remediation: "Where devices can hold a key, require client certificates (Mosquitto: require_certificate true with cafile; mqttsec serve: --client-ca), so that a stolen password alone does not connect.",
	run: func(ctx context.Context, s *scanner) outcome {
		if o, ok := s.needTLS(ctx); !ok {
			return o
		}
		var asked atomic.Bool
		cfg := s.probe.Clone()
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked.Store(true)
			return &tls.Certificate{}, nil
		}
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", s.t.addr)
		if err != nil {
			return skip("cannot connect: %v", err)
		}
		defer nc.Close()
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return pass("handshake without a client certificate refused: %s", errText(err))
		}
		// With TLS 1.3 a missing certificate is refused after the client's
		// side of the handshake: only the first read tells.
		_, code, err := s.connect3(ctx, newLimitConn(tc, s.o.MaxPacketSize), connOpts{clientID: s.clientID()})
		if err != nil {
			return pass("session without a client certificate ended before CONNACK: %s", errText(err))
		}
		req := "did not ask for one"
		if asked.Load() {
			req = "asked for one but went on without it"
		}
		return fail("TLS session without a client certificate reached MQTT (CONNACK return code %d); the server %s", code, req)
	},
}

// needTLS skips the TLS checks on a plaintext target.
func (s *scanner) needTLS(context.Context) (outcome, bool) {
	if !s.t.tls {
		return skip("the target is not a TLS listener (see plaintext-listener)"), false
	}
	return outcome{}, true
}

// baseline returns the state of a default TLS handshake (TLS 1.2 or 1.3,
// no verification) for the certificate checks.
func (s *scanner) baseline(ctx context.Context) (*tls.ConnectionState, outcome, bool) {
	if o, ok := s.needTLS(ctx); !ok {
		return nil, o, false
	}
	st, ok, err := s.handshake(ctx, s.probe.Clone())
	if st == nil {
		if ok {
			return nil, skip("the server requires a client certificate before it shows its own chain; give one"), false
		}
		return nil, skip("TLS handshake failed: %s", errText(err)), false
	}
	if len(st.PeerCertificates) == 0 {
		return nil, skip("the server sent no certificate"), false
	}
	return st, outcome{}, true
}

// handshake performs one TLS handshake with cfg and the principal's client
// certificate, if any. accepted is true when the handshake completed, or
// when the server asked for a client certificate, which it does only after
// it chose a version and a cipher suite.
func (s *scanner) handshake(ctx context.Context, cfg *tls.Config) (st *tls.ConnectionState, accepted bool, err error) {
	var asked atomic.Bool
	cert := s.o.Principal.Certificate
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		asked.Store(true)
		if cert != nil {
			return cert, nil
		}
		return &tls.Certificate{}, nil
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.t.addr)
	if err != nil {
		return nil, false, &dialError{err}
	}
	defer nc.Close()
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, asked.Load(), err
	}
	cs := tc.ConnectionState()
	return &cs, true, nil
}

// dialError marks a failure to reach the target at all, which decides
// nothing about TLS.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isDialError(err error) bool {
	var de *dialError
	return errors.As(err, &de)
}

// allSuites returns every cipher suite crypto/tls implements, secure or
// not, so that an old-version handshake is refused only for its version.
func allSuites() []uint16 {
	var ids []uint16
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		ids = append(ids, cs.ID)
	}
	return ids
}

// weakSuites returns the TLS 1.2 suites that are not ECDHE with an AEAD:
// RSA key exchange (no forward secrecy), CBC (padding oracles), 3DES, RC4.
func weakSuites() []*tls.CipherSuite {
	var out []*tls.CipherSuite
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		tls12 := false
		for _, v := range cs.SupportedVersions {
			tls12 = tls12 || v == tls.VersionTLS12
		}
		if !tls12 {
			continue
		}
		strong := strings.HasPrefix(cs.Name, "TLS_ECDHE_") &&
			(strings.Contains(cs.Name, "_GCM_") || strings.Contains(cs.Name, "CHACHA20"))
		if !strong {
			out = append(out, cs)
		}
	}
	return out
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func certNames(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "none"
	}
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return strings.Join(names, ", ")
}

func isExpiry(err error) bool {
	var ci x509.CertificateInvalidError
	return errors.As(err, &ci) && ci.Reason == x509.Expired
}

// weakKey describes a leaf key too small to resist factoring or discrete
// logarithms, or returns "".
func weakKey(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Sprintf("RSA key of %d bits", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize < 256 {
			return fmt.Sprintf("ECDSA key of %d bits", k.Curve.Params().BitSize)
		}
	}
	return ""
}
