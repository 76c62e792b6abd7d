package clientid_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
)

func user(name string) *mqttsec.Identity {
	return &mqttsec.Identity{Subject: name, Method: mqttsec.MethodPassword}
}

// certClient returns a client whose TLS state carries cert, as verified or
// as merely presented.
func certClient(id string, cert *x509.Certificate, verified bool) *mqttsec.Client {
	cs := &tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert}}
	if verified {
		cs.VerifiedChains = [][]*x509.Certificate{{cert}}
	}
	return &mqttsec.Client{ID: id, TLS: cs,
		Identity: &mqttsec.Identity{Subject: cert.Subject.CommonName, Method: mqttsec.MethodX509}}
}

func testCert(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse("spiffe://plant.example/sensor/7")
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(7),
		Subject:        pkix.Name{CommonName: "sensor-7"},
		DNSNames:       []string{"s7.plant.example", "sensor7.example"},
		EmailAddresses: []string{"s7@plant.example"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("2001:db8::7")},
		URIs:           []*url.URL{u},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

func TestParseTemplateErrors(t *testing.T) {
	for _, s := range []string{
		"",
		"device-*",        // no placeholder: binds no identity
		"{username}*",     // wildcard next to the placeholder
		"*{cn}",           // likewise
		"{username}-**",   // two wildcards side by side
		"{username}-{cn}", // two placeholders
		"{username}-{username}",
		"{user}",       // unknown
		"{username",    // not closed
		"{user{name}}", // nested
		"username}",    // not opened
		"{}",
		"{attr:}",
		"{attr:a b}",
		"{attr:" + strings.Repeat("k", 65) + "}",
		"a/{username}", // '/' can be in no client ID
		"{username}+",
		"#{cn}",
		"$SYS-{cn}", // a leading '$' can be in no client ID
		"{cn}\n",
		"{cn}\u202e",
		"\xff{cn}",
		"{cn}-*-*-*-*-*", // five wildcards
		strings.Repeat("a", clientid.MaxTemplateLen) + "{cn}",
	} {
		_, err := clientid.ParseTemplate(s)
		require.ErrorIs(t, err, clientid.ErrTemplate, "%q", s)
	}
	for _, s := range []string{"{username}", "{sub}", "{cn}", "{san:dns}", "{san:email}", "{san:uri}", "{san:ip}",
		"{attr:client_id}", "{username}-*", "*-{username}", "u-{username}-*.x", "{cn}-*-*-*-*", "a$-{cn}"} {
		tp, err := clientid.ParseTemplate(s)
		require.NoError(t, err, s)
		require.Equal(t, s, tp.String())
	}
	_, err := clientid.NewBinding()
	require.ErrorIs(t, err, clientid.ErrTemplate)
	_, err = clientid.NewBinding("{cn}", "nope")
	require.ErrorIs(t, err, clientid.ErrTemplate)
}

func TestTemplateMatch(t *testing.T) {
	cert := testCert(t)
	alice := &mqttsec.Client{Identity: user("alice")}
	aliceX := &mqttsec.Client{Identity: user("alice-x")}
	anon := &mqttsec.Client{Identity: &mqttsec.Identity{Method: mqttsec.MethodAnonymous}}
	token := &mqttsec.Client{Identity: &mqttsec.Identity{Subject: "u-123", Method: mqttsec.MethodJWT,
		Attributes: map[string]string{"client_id": "meter-42", "iss": "https://idp"}}}
	dev := certClient("", cert, true)
	unverified := certClient("", cert, false)
	for _, tc := range []struct {
		tmpl string
		id   string
		cl   *mqttsec.Client
		want bool
	}{
		{"{username}-*", "alice-phone", alice, true},
		{"{username}-*", "alice-", alice, false}, // the wildcard matches one character or more
		{"{username}-*", "alice", alice, false},
		{"{username}-*", "bob-phone", alice, false},
		{"{username}-*", "alice-x-1", alice, false}, // alice-x's, not alice's
		{"{username}-*", "alice-x-1", aliceX, true},
		{"{username}-*", "alice-x", alice, true},
		{"{username}-*", "-x", anon, false}, // no value, no match
		{"{username}", "alice", alice, true},
		{"{sub}", "u-123", token, true},
		{"{sub}", "u-1234", token, false},
		{"{attr:client_id}", "meter-42", token, true},
		{"{attr:client_id}", "meter-43", token, false},
		{"{attr:client_id}", "meter-42", alice, false},
		{"{attr:iss}", "https://idp", token, true},
		{"{cn}", "sensor-7", dev, true},
		{"{cn}", "sensor-7", unverified, false}, // only a verified chain counts
		{"{cn}", "sensor-7", alice, false},
		{"{cn}.*", "sensor-7.temp", dev, true},
		{"{cn}.*", "sensor-7.temp.x", dev, false},
		{"{san:dns}", "s7.plant.example", dev, true},
		{"{san:dns}", "sensor7.example", dev, true},
		{"{san:dns}", "s8.plant.example", dev, false},
		{"{san:dns}", "s7.plant.example", unverified, false},
		{"{san:email}", "s7@plant.example", dev, true},
		{"{san:uri}", "spiffe://plant.example/sensor/7", dev, true},
		{"{san:ip}", "10.0.0.7", dev, true},
		{"{san:ip}", "2001:db8::7", dev, true},
		{"{san:ip}-*", "10.0.0.7-a", dev, true},
		{"*-{username}", "phone-alice", alice, true},
		{"*-{username}", "x-phone-alice", alice, false}, // the wildcard cannot contain '-'
		{"u-{username}-*.x", "u-alice-1.x", alice, true},
		{"u-{username}-*.x", "u-alice-1.y.x", alice, false},
		{"u-{username}-*.x", "u-alice-1", alice, false},
		{"ü-{username}-*ß", "ü-alice-abcß", alice, true},
		{"ü-{username}-*ß", "ü-alice-abßcß", alice, false},
		{"{username}", "alice", nil, false},
	} {
		tp, err := clientid.ParseTemplate(tc.tmpl)
		require.NoError(t, err)
		require.Equal(t, tc.want, tp.Match(tc.id, tc.cl), "%q %q", tc.tmpl, tc.id)
	}
}

func TestBindingCheck(t *testing.T) {
	b, err := clientid.NewBinding("{username}-*", "{cn}")
	require.NoError(t, err)
	require.Equal(t, []string{"{username}-*", "{cn}"}, b.Templates())
	require.NoError(t, b.Check(&mqttsec.Client{ID: "alice-1", Identity: user("alice")}))
	require.NoError(t, b.Check(certClient("sensor-7", testCert(t), true)))
	err = b.Check(&mqttsec.Client{ID: "bob-1", Identity: user("alice")})
	require.ErrorIs(t, err, clientid.ErrNotBound)
	require.ErrorIs(t, err, mqttsec.ErrClientIDInvalid)
	require.Equal(t, mqttsec.CodeClientIDNotValid, mqttsec.CodeOf(err))
	require.ErrorIs(t, b.Check(&mqttsec.Client{ID: "alice-1"}), clientid.ErrNotBound)
	require.ErrorIs(t, b.Check(nil), clientid.ErrNotBound)
	var none *clientid.Binding
	require.ErrorIs(t, none.Check(&mqttsec.Client{ID: "alice-1", Identity: user("alice")}), clientid.ErrNotBound)
	require.Nil(t, none.Templates())

	// Bound checks the binding before the registry: a refused ID never
	// reaches it.
	reg := clientid.NewRegistry()
	bound := clientid.Bound(reg, b)
	ctx := context.Background()
	_, err = bound.Claim(ctx, &mqttsec.Client{ID: "bob-1", Identity: user("alice")})
	require.ErrorIs(t, err, clientid.ErrNotBound)
	require.Equal(t, 0, reg.Len())
	l, err := bound.Claim(ctx, &mqttsec.Client{ID: "alice-1", Identity: user("alice")})
	require.NoError(t, err)
	require.Equal(t, 1, reg.Len())
	l.Release(0)
	require.Equal(t, 0, reg.Len())

	// A nil registry is a new one; a nil binding refuses.
	l, err = clientid.Bound(nil, b).Claim(ctx, &mqttsec.Client{ID: "alice-1", Identity: user("alice")})
	require.NoError(t, err)
	l.Release(0)
	_, err = clientid.Bound(reg, nil).Claim(ctx, &mqttsec.Client{ID: "alice-1", Identity: user("alice")})
	require.ErrorIs(t, err, clientid.ErrNotBound)
}

// TestTemplateUnambiguous checks, over every short ID of a small alphabet
// that includes the templates' separators, that an ID matches a template
// for one value of its placeholder at most: no user can use an ID that is
// another user's.
func TestTemplateUnambiguous(t *testing.T) {
	alphabet := []byte("a-.")
	var strs func(n int) []string
	strs = func(n int) []string {
		if n == 0 {
			return []string{""}
		}
		var out []string
		for _, s := range strs(n - 1) {
			for _, c := range alphabet {
				out = append(out, s+string(c))
			}
		}
		return out
	}
	var ids, names []string
	for n := 1; n <= 7; n++ {
		ids = append(ids, strs(n)...)
	}
	for n := 1; n <= 4; n++ {
		names = append(names, strs(n)...)
	}
	for _, s := range []string{"{username}-*", "*-{username}", "*-{username}-*", "{username}.*-*",
		"-{username}.*.", "a{username}-*", "*.-{username}", "{username}--*", "*a-{username}"} {
		tp, err := clientid.ParseTemplate(s)
		require.NoError(t, err, s)
		for _, id := range ids {
			owner := ""
			for _, name := range names {
				if tp.Match(id, &mqttsec.Client{Identity: user(name)}) {
					require.Empty(t, owner, "template %q: ID %q matches %q and %q", s, id, owner, name)
					owner = name
				}
			}
		}
	}
}

// refRegexp is the reference meaning of a template for one placeholder
// value: literals and the value quoted, each wildcard one or more runes
// other than its neighbouring literal runes.
func refRegexp(tmpl, value string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	rest := tmpl
	cur := ""
	type tok struct {
		wild bool
		ph   bool
		lit  string
	}
	var toks []tok
	for rest != "" {
		switch rest[0] {
		case '*':
			if cur != "" {
				toks = append(toks, tok{lit: cur})
				cur = ""
			}
			toks = append(toks, tok{wild: true})
			rest = rest[1:]
		case '{':
			if cur != "" {
				toks = append(toks, tok{lit: cur})
				cur = ""
			}
			end := strings.IndexByte(rest, '}')
			toks = append(toks, tok{ph: true})
			rest = rest[end+1:]
		default:
			cur += rest[:1]
			rest = rest[1:]
		}
	}
	if cur != "" {
		toks = append(toks, tok{lit: cur})
	}
	for i, tk := range toks {
		switch {
		case tk.ph:
			b.WriteString(regexp.QuoteMeta(value))
		case tk.wild:
			var stop []rune
			if i > 0 {
				r := []rune(toks[i-1].lit)
				stop = append(stop, r[len(r)-1])
			}
			if i+1 < len(toks) {
				stop = append(stop, []rune(toks[i+1].lit)[0])
			}
			if len(stop) == 0 {
				b.WriteString(`(?s:.+)`)
				continue
			}
			b.WriteString(`[^`)
			for _, r := range stop {
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
			b.WriteString(`]+`)
		default:
			b.WriteString(regexp.QuoteMeta(tk.lit))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func TestTemplateReference(t *testing.T) {
	for _, tc := range [][3]string{
		{"{username}-*", "alice", "alice-x"},
		{"{username}-*", "alice", "alice-x-y"},
		{"*.{username}.*", "a.b", "x.a.b.y"},
		{"*^{username}", "a", "[^a"},
		{"*]-{username}", "a", "x]-a"},
	} {
		tp, err := clientid.ParseTemplate(tc[0])
		require.NoError(t, err)
		want := refRegexp(tc[0], tc[1]).MatchString(tc[2])
		require.Equal(t, want, tp.Match(tc[2], &mqttsec.Client{Identity: user(tc[1])}), "%q", tc)
	}
}
