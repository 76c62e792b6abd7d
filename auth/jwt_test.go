package auth_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
)

type testKeys struct {
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	ed     ed25519.PrivateKey
	secret []byte
	rsaPEM []byte
	allPEM []byte
	rsaPub crypto.PublicKey
	ecPub  crypto.PublicKey
	edPub  crypto.PublicKey
	other  *ecdsa.PrivateKey
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func getKeys(t testing.TB) *testKeys {
	keysOnce.Do(func() {
		var err error
		keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		keys.ec, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		keys.other, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, keys.ed, _ = ed25519.GenerateKey(rand.Reader)
		keys.secret = []byte("0123456789abcdef0123456789abcdef-test-secret")
		keys.rsaPub, keys.ecPub, keys.edPub = keys.rsa.Public(), keys.ec.Public(), keys.ed.Public()
		for _, k := range []crypto.PublicKey{keys.rsaPub, keys.ecPub, keys.edPub} {
			der, err := x509.MarshalPKIXPublicKey(k)
			require.NoError(t, err)
			b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			if keys.rsaPEM == nil {
				keys.rsaPEM = b
			}
			keys.allPEM = append(keys.allPEM, b...)
		}
	})
	return &keys
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid, ok := claims["_kid"]; ok {
		delete(claims, "_kid")
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// The issuer and audience of the test tokens.
const (
	testIss = "https://idp.example"
	testAud = "mqtt"
)

func claimsAt(now time.Time, sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "iss": testIss, "aud": testAud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func newJWT(t testing.TB, cfg auth.JWTConfig) *auth.JWT {
	t.Helper()
	j, err := auth.NewJWT(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	return j
}

func tokenLogin(a mqttsec.Authenticator, clientID, user, tok string) (*mqttsec.Identity, error) {
	return a.Authenticate(context.Background(), &mqttsec.Client{ID: clientID, Username: user}, mqttsec.Credentials{Password: []byte(tok)})
}

func TestJWT(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	now := clk.Now()
	pub, err := auth.ParsePublicKeysPEM(k.allPEM)
	require.NoError(t, err)
	require.Len(t, pub, 3)
	j := newJWT(t, auth.JWTConfig{
		Algorithms: []string{"RS256", "ES256", "EdDSA", "HS256"},
		HMACSecret: k.secret,
		PublicKeys: pub,
		Issuer:     testIss,
		Audience:   testAud,
		Clock:      clk.Now,
		RolesClaim: "roles",
		ACLClaim:   true,
	})
	with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := claimsAt(now, "dev1")
		mod(c)
		return c
	}
	for _, tc := range []struct {
		name    string
		tok     string
		user    string
		wantErr error
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(now, "dev1")), "dev1", nil},
		{"ES256", sign(t, jwt.SigningMethodES256, k.ec, claimsAt(now, "dev1")), "dev1", nil},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, claimsAt(now, "dev1")), "dev1", nil},
		{"HS256", sign(t, jwt.SigningMethodHS256, k.secret, claimsAt(now, "dev1")), "dev1", nil},
		{"no username", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["n"] = 1 })), "", nil},
		{"username mismatch", sign(t, jwt.SigningMethodES256, k.ec, claimsAt(now, "dev1")), "dev2", mqttsec.ErrBadCredentials},
		{"expired", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), "dev1", mqttsec.ErrBadCredentials},
		{"expired within leeway", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-5 * time.Second).Unix() })), "dev1", nil},
		{"no exp", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { delete(c, "exp") })), "dev1", mqttsec.ErrBadCredentials},
		{"nbf in future", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), "dev1", mqttsec.ErrBadCredentials},
		{"iat in future", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() })), "dev1", mqttsec.ErrBadCredentials},
		{"no sub", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { delete(c, "sub") })), "", mqttsec.ErrBadCredentials},
		{"numeric sub", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["sub"] = 5 })), "", mqttsec.ErrBadCredentials},
		{"unknown key", sign(t, jwt.SigningMethodES256, k.other, claimsAt(now, "dev1")), "dev1", mqttsec.ErrBadCredentials},
		{"alg not allowed", sign(t, jwt.SigningMethodRS384, k.rsa, claimsAt(now, "dev1")), "dev1", mqttsec.ErrBadCredentials},
		{"wrong hmac secret", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), claimsAt(now, "dev1")), "dev1", mqttsec.ErrBadCredentials},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt(now, "dev1")), "dev1", mqttsec.ErrBadCredentials},
		{"key confusion: HS256 with the RSA public key", sign(t, jwt.SigningMethodHS256, k.rsaPEM, claimsAt(now, "dev1")), "dev1", mqttsec.ErrBadCredentials},
		{"bad roles", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["roles"] = "admin" })), "dev1", mqttsec.ErrBadCredentials},
		{"bad acl", sign(t, jwt.SigningMethodES256, k.ec, with(func(c jwt.MapClaims) { c["acl"] = map[string]any{"pub": []string{"#"}} })), "dev1", mqttsec.ErrBadCredentials},
		{"tampered payload", tamper(sign(t, jwt.SigningMethodES256, k.ec, claimsAt(now, "dev1"))), "dev1", mqttsec.ErrBadCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tokenLogin(j, "c1", tc.user, tc.tok)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.Equal(t, mqttsec.CodeBadUsernameOrPassword, mqttsec.CodeOf(err))
				require.NotContains(t, err.Error(), tc.tok[len(tc.tok)-10:])
				return
			}
			require.NoError(t, err)
			require.Equal(t, "dev1", id.Subject)
			require.Equal(t, mqttsec.MethodJWT, id.Method)
			require.False(t, id.Expiry.IsZero())
		})
	}

	t.Run("identity", func(t *testing.T) {
		c := claimsAt(now, "dev7")
		c["roles"] = []string{"sensor", "fleet-a"}
		c["acl"] = []any{
			map[string]any{"permission": "allow", "action": "publish", "topic": "t/${clientid}", "qos": []int{0, 1}, "retain": false},
			map[string]any{"permission": "deny", "action": "all", "topic": "#"},
		}
		id, err := tokenLogin(j, "c1", "dev7", sign(t, jwt.SigningMethodEdDSA, k.ed, c))
		require.NoError(t, err)
		f := false
		require.Equal(t, &mqttsec.Identity{
			Subject: "dev7",
			Method:  mqttsec.MethodJWT,
			Roles:   []string{"sensor", "fleet-a"},
			Expiry:  now.Add(time.Hour + auth.DefaultLeeway),
			Attributes: map[string]string{auth.AttrIssuer: testIss, auth.AttrAudience: testAud, auth.AttrAlgorithm: "EdDSA",
				auth.AttrKey: spkiID(t, k.edPub)},
			Grants: []mqttsec.Grant{
				{Allow: true, Access: mqttsec.Publish, Topic: "t/${clientid}", QoS: []byte{0, 1}, Retain: &f},
				{Allow: false, Access: mqttsec.Publish | mqttsec.Subscribe, Topic: "#"},
			},
		}, id)
	})

	t.Run("abstains for passwords", func(t *testing.T) {
		for _, pw := range []string{"hunter2", "", "a.b.c", "eyJ.e", "ey J.a.b", "eyJhbGciOiJIUzI1NiJ9..."} {
			_, err := tokenLogin(j, "c1", "dev1", pw)
			require.ErrorIs(t, err, mqttsec.ErrAbstain, pw)
		}
	})

	t.Run("token too large", func(t *testing.T) {
		c := claimsAt(now, "dev1")
		c["pad"] = strings.Repeat("x", 9000)
		_, err := tokenLogin(j, "c1", "dev1", sign(t, jwt.SigningMethodES256, k.ec, c))
		require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	})
}

// tamper changes the subject in a signed token's payload.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	p, _ := jwt.NewParser().DecodeSegment(parts[1])
	p = []byte(strings.Replace(string(p), "dev1", "root", 1))
	parts[1] = strings.TrimRight(jwtEncode(p), "=")
	return strings.Join(parts, ".")
}

func jwtEncode(b []byte) string { return (&jwt.Token{}).EncodeSegment(b) }

func TestJWTKeyConfusionAllowListOnly(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"RS256"}, PublicKeys: []crypto.PublicKey{k.rsaPub}, Issuer: testIss, Audience: testAud, Clock: clk.Now})
	forged := sign(t, jwt.SigningMethodHS256, k.rsaPEM, claimsAt(clk.Now(), "dev1"))
	_, err := tokenLogin(j, "c1", "dev1", forged)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	// An ES256 token is not verified with an RSA key and vice versa.
	_, err = tokenLogin(j, "c1", "dev1", sign(t, jwt.SigningMethodES256, k.ec, claimsAt(clk.Now(), "dev1")))
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	_, err = tokenLogin(j, "c1", "dev1", sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(clk.Now(), "dev1")))
	require.NoError(t, err)
}

func TestJWTIssuerAudienceClientID(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub},
		Issuer: "https://idp", Audience: "mqtt", MatchClientID: true, SubjectClaim: "client_id", Clock: clk.Now})
	base := func() jwt.MapClaims {
		c := claimsAt(clk.Now(), "ignored")
		c["iss"], c["aud"], c["client_id"] = "https://idp", []string{"other", "mqtt"}, "sensor-9"
		return c
	}
	id, err := tokenLogin(j, "sensor-9", "anyone", sign(t, jwt.SigningMethodES256, k.ec, base()))
	require.NoError(t, err)
	require.Equal(t, "sensor-9", id.Subject)
	_, err = tokenLogin(j, "sensor-8", "", sign(t, jwt.SigningMethodES256, k.ec, base()))
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	c := base()
	c["iss"] = "https://evil"
	_, err = tokenLogin(j, "sensor-9", "", sign(t, jwt.SigningMethodES256, k.ec, c))
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	c = base()
	c["aud"] = "web"
	_, err = tokenLogin(j, "sensor-9", "", sign(t, jwt.SigningMethodES256, k.ec, c))
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
}

func TestJWTCache(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub}, Issuer: testIss, Audience: testAud, Clock: clk.Now, Leeway: -1})
	c := claimsAt(clk.Now(), "dev1")
	c["exp"] = clk.Now().Add(time.Minute).Unix()
	tok := sign(t, jwt.SigningMethodES256, k.ec, c)
	_, err := tokenLogin(j, "c1", "dev1", tok)
	require.NoError(t, err)
	require.Equal(t, 1, auth.JWTCached(j))
	id, err := tokenLogin(j, "c1", "dev1", tok)
	require.NoError(t, err)
	require.Equal(t, "dev1", id.Subject)
	_, err = tokenLogin(j, "c1", "dev2", tok)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "a cached token still checks the user name")
	j.Flush()
	require.Equal(t, 0, auth.JWTCached(j))
	_, err = tokenLogin(j, "c1", "dev1", tok)
	require.NoError(t, err)
	require.Equal(t, 1, auth.JWTCached(j))
	clk.Advance(time.Minute)
	_, err = tokenLogin(j, "c1", "dev1", tok)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "a cached token is never used past exp")
	require.Equal(t, 0, auth.JWTCached(j))
}

func TestJWTConfigErrors(t *testing.T) {
	k := getKeys(t)
	for name, cfg := range map[string]auth.JWTConfig{
		"no algorithms":    {PublicKeys: []crypto.PublicKey{k.ecPub}},
		"none":             {Algorithms: []string{"none"}},
		"unknown":          {Algorithms: []string{"XS256"}, HMACSecret: k.secret},
		"hs without key":   {Algorithms: []string{"HS256"}},
		"short secret":     {Algorithms: []string{"HS256"}, HMACSecret: []byte("short")},
		"HS384, 32 bytes":  {Algorithms: []string{"HS384"}, HMACSecret: make([]byte, 32)},
		"HS512, 48 bytes":  {Algorithms: []string{"HS256", "HS512"}, HMACSecret: make([]byte, 48)},
		"rs without keys":  {Algorithms: []string{"RS256"}, HMACSecret: k.secret, Audience: testAud},
		"private key type": {Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ec}, Issuer: testIss, Audience: testAud},
		// RFC 8725 3.9: a token for another service of the same issuer.
		"no audience":            {Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub}, Issuer: testIss},
		"no audience, hmac":      {Algorithms: []string{"HS256"}, HMACSecret: k.secret},
		"no issuer, public keys": {Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub}, Audience: testAud},
		"no issuer, jwks":        {Algorithms: []string{"ES256"}, JWKSURL: "https://idp.example/jwks", Audience: testAud},
		"waivers name the other": {Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub}, InsecureAnyAudience: true},
		"issuer waiver, no aud":  {Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub}, InsecureAnyIssuer: true},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.NewJWT(context.Background(), cfg)
			require.ErrorIs(t, err, auth.ErrConfig)
		})
	}
	// RFC 7518: the secret is at least as long as the hash output.
	for alg, n := range map[string]int{"HS256": 32, "HS384": 48, "HS512": 64} {
		j, err := auth.NewJWT(context.Background(), auth.JWTConfig{Algorithms: []string{alg}, HMACSecret: make([]byte, n), Audience: testAud})
		require.NoError(t, err, alg)
		require.NoError(t, j.Close())
	}
}

func TestKeysFromFiles(t *testing.T) {
	k := getKeys(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), append(k.secret, '\n'), 0o600))
	s, err := auth.HMACSecretFromFile(filepath.Join(dir, "secret"))
	require.NoError(t, err)
	require.Equal(t, k.secret, s)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "short"), []byte("abc"), 0o600))
	_, err = auth.HMACSecretFromFile(filepath.Join(dir, "short"))
	require.ErrorIs(t, err, auth.ErrConfig)
	t.Setenv("MQTTSEC_TEST_SECRET", string(k.secret))
	s, err = auth.HMACSecretFromEnv("MQTTSEC_TEST_SECRET")
	require.NoError(t, err)
	require.Equal(t, k.secret, s)
	_, err = auth.HMACSecretFromEnv("MQTTSEC_TEST_UNSET_VARIABLE")
	require.ErrorIs(t, err, auth.ErrConfig)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "keys.pem"), k.allPEM, 0o600))
	pub, err := auth.LoadPublicKeysPEM(filepath.Join(dir, "keys.pem"))
	require.NoError(t, err)
	require.Len(t, pub, 3)
	der, err := x509.MarshalPKCS8PrivateKey(k.ec)
	require.NoError(t, err)
	_, err = auth.ParsePublicKeysPEM(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	require.ErrorIs(t, err, auth.ErrConfig)
	_, err = auth.ParsePublicKeysPEM([]byte("nothing here"))
	require.ErrorIs(t, err, auth.ErrConfig)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)})
	pub, err = auth.ParsePublicKeysPEM(pkcs1)
	require.NoError(t, err)
	require.Len(t, pub, 1)
}

// jwksServer serves a JWK Set with the given keys on a loopback httptest
// server.
func jwksServer(t *testing.T, ks map[string]any) *httptest.Server {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, key := range ks {
		jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		require.NoError(t, err)
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	body, err := json.Marshal(set)
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestJWTJWKS(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	srv := jwksServer(t, map[string]any{"rsa-1": k.rsaPub, "ec-1": k.ecPub})
	jwksErrs := make(chan error, 100)
	j := newJWT(t, auth.JWTConfig{
		Algorithms:  []string{"RS256", "ES256", "HS256"},
		HMACSecret:  k.secret,
		JWKSURL:     srv.URL,
		Issuer:      testIss,
		Audience:    testAud,
		JWKSRefresh: 20 * time.Millisecond,
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Kind != mqttsec.EventReloadFailed || e.Source != auth.JWKSEventSource || e.File != srv.URL {
				return
			}
			select {
			case jwksErrs <- e.Err:
			default:
			}
		}),
		Clock: clk.Now,
	})
	mk := func(m jwt.SigningMethod, key any, kid, sub string) string {
		c := claimsAt(clk.Now(), sub)
		if kid != "" {
			c["_kid"] = kid
		}
		return sign(t, m, key, c)
	}
	_, err := tokenLogin(j, "c", "a", mk(jwt.SigningMethodRS256, k.rsa, "rsa-1", "a"))
	require.NoError(t, err)
	_, err = tokenLogin(j, "c", "b", mk(jwt.SigningMethodES256, k.ec, "ec-1", "b"))
	require.NoError(t, err)
	_, err = tokenLogin(j, "c", "b2", mk(jwt.SigningMethodES256, k.ec, "", "b2"))
	require.NoError(t, err, "a token without kid is tried against every key of its family")
	_, err = tokenLogin(j, "c", "b", mk(jwt.SigningMethodES256, k.other, "ec-1", "b"))
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	_, err = tokenLogin(j, "c", "a", mk(jwt.SigningMethodHS256, k.rsaPEM, "rsa-1", "a"))
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "key confusion with a JWKS key")
	_, err = tokenLogin(j, "c", "a", mk(jwt.SigningMethodES256, k.ec, "rsa-1", "a"))
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "kid of an RSA key on an ES256 token")

	// The endpoint goes down: refreshes fail, the cached keys stay.
	srv.Close()
	require.Error(t, waitFor(t, jwksErrs))
	_, err = tokenLogin(j, "c", "a3", mk(jwt.SigningMethodRS256, k.rsa, "rsa-1", "a3"))
	require.NoError(t, err)
}

// A token verified with a JWKS key is not served from the cache once the
// key is gone from the JWK Set.
func TestJWTJWKSKeyRemovalEmptiesCache(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	var mu sync.Mutex
	bodies := map[bool][]byte{}
	for _, rotated := range []bool{false, true} {
		kid, key := "old", k.ec
		if rotated {
			kid, key = "new", k.other
		}
		jwk, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		require.NoError(t, err)
		body, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
		require.NoError(t, err)
		bodies[rotated] = body
	}
	rotated := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(bodies[rotated])
	}))
	t.Cleanup(srv.Close)
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, JWKSURL: srv.URL, Issuer: testIss, Audience: testAud, Clock: clk.Now})
	mk := func(key *ecdsa.PrivateKey, kid string) string {
		c := claimsAt(clk.Now(), "dev")
		c["_kid"] = kid
		return sign(t, jwt.SigningMethodES256, key, c)
	}
	old := mk(k.ec, "old")
	_, err := tokenLogin(j, "c", "dev", old)
	require.NoError(t, err)
	require.Equal(t, 1, auth.JWTCached(j))

	// The issuer rotates: "old" is removed. A token with the unknown kid
	// "new" makes the JWT fetch the set again.
	mu.Lock()
	rotated = true
	mu.Unlock()
	_, err = tokenLogin(j, "c", "dev", mk(k.other, "new"))
	require.NoError(t, err)
	_, err = tokenLogin(j, "c", "dev", old)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "a cached token outlived the removal of its key")
}

// The audience (and, with public keys, the issuer) are required unless a
// named waiver is set; a waiver accepts what it names and nothing else.
func TestJWTAudienceIssuerWaivers(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	tok := func(mod func(jwt.MapClaims)) string {
		c := claimsAt(clk.Now(), "dev1")
		mod(c)
		return sign(t, jwt.SigningMethodES256, k.ec, c)
	}
	otherAud := tok(func(c jwt.MapClaims) { c["aud"] = "web-shop" })
	noAud := tok(func(c jwt.MapClaims) { delete(c, "aud") })
	otherIss := tok(func(c jwt.MapClaims) { c["iss"] = "https://other-idp.example" })

	strict := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub},
		Issuer: testIss, Audience: testAud, Clock: clk.Now})
	for name, tk := range map[string]string{"other audience": otherAud, "no audience": noAud, "other issuer": otherIss} {
		_, err := tokenLogin(strict, "c", "dev1", tk)
		require.ErrorIs(t, err, mqttsec.ErrBadCredentials, name)
	}

	anyAud := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub},
		Issuer: testIss, InsecureAnyAudience: true, Clock: clk.Now})
	for _, tk := range []string{otherAud, noAud} {
		_, err := tokenLogin(anyAud, "c", "dev1", tk)
		require.NoError(t, err)
	}
	_, err := tokenLogin(anyAud, "c", "dev1", otherIss)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "the audience waiver does not waive the issuer")

	anyIss := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub},
		Audience: testAud, InsecureAnyIssuer: true, Clock: clk.Now})
	_, err = tokenLogin(anyIss, "c", "dev1", otherIss)
	require.NoError(t, err)
	_, err = tokenLogin(anyIss, "c", "dev1", otherAud)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "the issuer waiver does not waive the audience")

	// A shared HMAC secret is its own issuer: Issuer is optional there,
	// the audience is not.
	hs := newJWT(t, auth.JWTConfig{Algorithms: []string{"HS256"}, HMACSecret: k.secret, Audience: testAud, Clock: clk.Now})
	_, err = tokenLogin(hs, "c", "dev1", sign(t, jwt.SigningMethodHS256, k.secret, claimsAt(clk.Now(), "dev1")))
	require.NoError(t, err)
}

// Leeway applies to "exp" everywhere: a token within Leeway past its exp
// is accepted by the parser, by the cache and by the Guard, and the
// Identity (hence the Guard's disconnect) expires at exp + Leeway.
func TestJWTLeewayAppliesToExpiry(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub},
		Issuer: testIss, Audience: testAud, Clock: clk.Now}) // DefaultLeeway
	c := claimsAt(clk.Now(), "dev1")
	exp := clk.Now().Add(-5 * time.Second)
	c["exp"] = exp.Unix()
	tok := sign(t, jwt.SigningMethodES256, k.ec, c)

	id, err := tokenLogin(j, "c", "dev1", tok)
	require.NoError(t, err, "5 s past exp is within the default leeway")
	require.Equal(t, exp.Add(auth.DefaultLeeway), id.Expiry)
	_, err = tokenLogin(j, "c", "dev1", tok)
	require.NoError(t, err, "the cache agrees with the parser")

	g := mqttsec.New(mqttsec.Config{Authenticator: j, Clock: clk.Now, Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {})})
	s, err := g.Connect(context.Background(), mqttsec.Client{ID: "c", Username: "dev1"}, mqttsec.Credentials{Password: []byte(tok)}, nil)
	require.NoError(t, err, "the Guard agrees with the authenticator")
	require.Equal(t, exp.Add(auth.DefaultLeeway), s.Identity().Expiry)
	g.Disconnect(s, 0)

	clk.Advance(auth.DefaultLeeway)
	_, err = tokenLogin(j, "c", "dev1", tok)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "exp + leeway has passed (cache)")
	j.Flush()
	_, err = tokenLogin(j, "c", "dev1", tok)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "exp + leeway has passed (parser)")
}

// spkiID is the AttrKey of a public key: its SPKI pin.
func spkiID(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	sum := sha256.Sum256(der)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

// A JWK Set fetched over plain http from a host that is not loopback could
// be replaced by anyone on the path: refused unless InsecureJWKSHTTP is
// set, and so is a redirect to such a URL.
func TestJWTJWKSURLMustBeSecure(t *testing.T) {
	k := getKeys(t)
	base := auth.JWTConfig{Algorithms: []string{"ES256"}, Issuer: testIss, Audience: testAud}
	for _, u := range []string{"http://idp.example/jwks", "http://10.0.0.1/jwks", "ftp://idp.example/jwks", "file:///etc/jwks.json", "/jwks"} {
		cfg := base
		cfg.JWKSURL = u
		_, err := auth.NewJWT(context.Background(), cfg)
		require.ErrorIs(t, err, auth.ErrConfig, u)
	}
	// A key server on this host may speak http.
	srv := jwksServer(t, map[string]any{"ec-1": k.ecPub})
	for _, u := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		cfg := base
		cfg.JWKSURL = u
		_, err := tokenLogin(newJWT(t, cfg), "c", "a", sign(t, jwt.SigningMethodES256, k.ec, claimsAt(time.Now(), "a")))
		require.NoError(t, err, u)
	}
	// A client that does not verify the key server is as good as http.
	cfg := base
	cfg.JWKSURL = "https://idp.example/jwks"
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	_, err := auth.NewJWT(context.Background(), cfg)
	require.ErrorIs(t, err, auth.ErrConfig)

	// The waiver is explicit.
	cfg = base
	cfg.JWKSURL, cfg.InsecureJWKSHTTP = "http://192.0.2.1:1/jwks", true
	cfg.HTTPClient = &http.Client{Timeout: 50 * time.Millisecond}
	cfg.Events = mqttsec.EventSinkFunc(func(mqttsec.Event) {})
	newJWT(t, cfg)

	// An https key server that redirects to plain http elsewhere.
	redirect := httptest.NewTLSServer(http.RedirectHandler("http://192.0.2.1/jwks", http.StatusFound))
	t.Cleanup(redirect.Close)
	failed := make(chan error, 4)
	cfg = base
	cfg.JWKSURL, cfg.HTTPClient = redirect.URL, redirect.Client()
	cfg.Events = mqttsec.EventSinkFunc(func(e mqttsec.Event) {
		if e.Kind == mqttsec.EventReloadFailed {
			failed <- e.Err
		}
	})
	newJWT(t, cfg)
	err = waitFor(t, failed)
	require.ErrorContains(t, err, "plain http")
}

// Revalidate judges a session by what its Identity records: the key that
// verified the token, its issuer, audience and algorithm.
func TestJWTRevalidate(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	cfg := auth.JWTConfig{Algorithms: []string{"ES256", "HS256"}, PublicKeys: []crypto.PublicKey{k.ecPub, k.other.Public()},
		HMACSecret: k.secret, Issuer: testIss, Audience: testAud, Clock: clk.Now}
	j := newJWT(t, cfg)
	login := func(a *auth.JWT, m jwt.SigningMethod, key any) *mqttsec.Client {
		t.Helper()
		id, err := tokenLogin(a, "c", "dev1", sign(t, m, key, claimsAt(clk.Now(), "dev1")))
		require.NoError(t, err)
		return &mqttsec.Client{ID: "c", Username: "dev1", Identity: id}
	}
	ec := login(j, jwt.SigningMethodES256, k.ec)
	other := login(j, jwt.SigningMethodES256, k.other)
	hs := login(j, jwt.SigningMethodHS256, k.secret)
	require.Equal(t, spkiID(t, k.ecPub), ec.Identity.Attributes[auth.AttrKey])
	require.Equal(t, spkiID(t, k.other.Public()), other.Identity.Attributes[auth.AttrKey],
		"without kid, the key that verified the token is recorded")
	require.NotContains(t, hs.Identity.Attributes[auth.AttrKey], string(k.secret))
	for _, cl := range []*mqttsec.Client{ec, other, hs} {
		require.NoError(t, j.Revalidate(context.Background(), cl))
	}

	// Not a token's identity, or not one a JWT made: abstain.
	for _, id := range []*mqttsec.Identity{
		nil,
		{Subject: "dev1", Method: mqttsec.MethodPassword},
		{Subject: "dev1", Method: mqttsec.MethodJWT},
	} {
		require.ErrorIs(t, j.Revalidate(context.Background(), &mqttsec.Client{ID: "c", Identity: id}), mqttsec.ErrAbstain)
	}

	// A JWT for another configuration (after a Guard reload) judges them.
	deny := func(c auth.JWTConfig, cl *mqttsec.Client) {
		t.Helper()
		err := newJWT(t, c).Revalidate(context.Background(), cl)
		require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	}
	c := cfg
	c.PublicKeys = []crypto.PublicKey{k.ecPub} // k.other withdrawn
	require.NoError(t, newJWT(t, c).Revalidate(context.Background(), ec))
	deny(c, other)
	c = cfg
	c.HMACSecret = []byte(strings.Repeat("n", 32)) // a new secret
	deny(c, hs)
	c = cfg
	c.Issuer = "https://new-idp.example"
	deny(c, ec)
	c = cfg
	c.Audience = "other-broker"
	deny(c, ec)
	c = cfg
	c.Algorithms = []string{"ES256"}
	deny(c, hs)
}

// A key removed from the JWK Set is reported as a reload and denies the
// sessions it verified; a set that only looks different is no reload.
func TestJWTJWKSKeyRemovalRevalidates(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	var mu sync.Mutex
	set := func(pretty bool, keys map[string]any) []byte {
		var s jwkset.JWKSMarshal
		for _, kid := range []string{"a", "b"} {
			if key, ok := keys[kid]; ok {
				jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
				require.NoError(t, err)
				s.Keys = append(s.Keys, jwk.Marshal())
			}
		}
		if pretty {
			b, err := json.MarshalIndent(s, "", "  ")
			require.NoError(t, err)
			return b
		}
		b, err := json.Marshal(s)
		require.NoError(t, err)
		return b
	}
	body := set(false, map[string]any{"a": k.ecPub, "b": k.other.Public()})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	reloads := make(chan struct{}, 16)
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, JWKSURL: srv.URL, JWKSRefresh: 20 * time.Millisecond,
		Issuer: testIss, Audience: testAud, Clock: clk.Now,
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Kind == mqttsec.EventReload && e.Source == auth.JWKSEventSource && e.File == srv.URL {
				reloads <- struct{}{}
			}
		})})
	mk := func(key *ecdsa.PrivateKey, kid string) *mqttsec.Client {
		c := claimsAt(clk.Now(), "dev")
		c["_kid"] = kid
		id, err := tokenLogin(j, "c", "dev", sign(t, jwt.SigningMethodES256, key, c))
		require.NoError(t, err)
		return &mqttsec.Client{ID: "c", Identity: id}
	}
	a, b := mk(k.ec, "a"), mk(k.other, "b")

	mu.Lock()
	body = set(true, map[string]any{"a": k.ecPub, "b": k.other.Public()}) // same keys, other bytes
	mu.Unlock()
	select {
	case <-reloads:
		t.Fatal("a key set with the same keys is no reload")
	case <-time.After(200 * time.Millisecond): // ten refreshes
	}
	mu.Lock()
	body = set(false, map[string]any{"a": k.ecPub})
	mu.Unlock()
	waitFor(t, reloads)
	require.NoError(t, j.Revalidate(context.Background(), a))
	require.ErrorIs(t, j.Revalidate(context.Background(), b), mqttsec.ErrBadCredentials)
}

// TestJWTJWKSBodyBounded: a JWK Set response larger than MaxJWKSBody fails
// the refresh with an event, and the keys in force stay.
func TestJWTJWKSBodyBounded(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	jwk, err := jwkset.NewJWKFromKey(k.ec.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "ec-1"}})
	require.NoError(t, err)
	small, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	require.NoError(t, err)
	var huge atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if huge.Load() {
			// Valid JSON, padded past the limit.
			_, _ = w.Write([]byte(`{"pad":"`))
			_, _ = w.Write(bytes.Repeat([]byte("x"), auth.MaxJWKSBody))
			_, _ = w.Write([]byte(`","keys":[]}`))
			return
		}
		_, _ = w.Write(small)
	}))
	t.Cleanup(srv.Close)
	failed := make(chan error, 100)
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, JWKSURL: srv.URL, Issuer: testIss, Audience: testAud,
		JWKSRefresh: 20 * time.Millisecond, Clock: clk.Now,
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Kind == mqttsec.EventReloadFailed {
				select {
				case failed <- e.Err:
				default:
				}
			}
		})})
	token := func(sub string) string {
		c := claimsAt(clk.Now(), sub)
		c["_kid"] = "ec-1"
		return sign(t, jwt.SigningMethodES256, k.ec, c)
	}
	_, err = tokenLogin(j, "c", "a", token("a"))
	require.NoError(t, err)
	huge.Store(true)
	require.ErrorContains(t, waitFor(t, failed), "larger than")
	_, err = tokenLogin(j, "c", "b", token("b"))
	require.NoError(t, err, "the keys in force stay")
}

// TestJWTAttributeClaims: named string claims reach Identity.Attributes
// (a client-ID binding keys on them); a claim of another type or too long
// denies; reserved and too many names are refused at construction.
func TestJWTAttributeClaims(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: mustPub(t, k), Issuer: testIss, Audience: testAud,
		Clock: clk.Now, AttributeClaims: []string{"client_id", "site"}})
	c := claimsAt(clk.Now(), "dev1")
	c["client_id"] = "dev1-sensor"
	id, err := tokenLogin(j, "c1", "dev1", sign(t, jwt.SigningMethodES256, k.ec, c))
	require.NoError(t, err)
	require.Equal(t, "dev1-sensor", id.Attributes["client_id"])
	_, ok := id.Attributes["site"]
	require.False(t, ok, "an absent claim is not copied")
	for _, bad := range []any{42, []string{"x"}, strings.Repeat("x", auth.MaxAttributeLen+1)} {
		c := claimsAt(clk.Now(), "dev2")
		c["site"] = bad
		_, err := tokenLogin(j, "c2", "dev2", sign(t, jwt.SigningMethodES256, k.ec, c))
		require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "%v", bad)
	}
	for _, names := range [][]string{{"iss"}, {"key"}, {""}, make([]string, auth.MaxAttributeClaims+1)} {
		_, err := auth.NewJWT(context.Background(), auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: mustPub(t, k), Issuer: testIss, Audience: testAud, AttributeClaims: names})
		require.ErrorIs(t, err, auth.ErrConfig, "%q", names)
	}
}

func mustPub(t *testing.T, k *testKeys) []crypto.PublicKey {
	t.Helper()
	pub, err := auth.ParsePublicKeysPEM(k.allPEM)
	require.NoError(t, err)
	return pub
}
