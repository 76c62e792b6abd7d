package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttsec/mqttsec"
)

// Defaults of [JWTConfig].
const (
	DefaultLeeway       = 10 * time.Second
	DefaultMaxTokenSize = 8 << 10
	DefaultJWKSRefresh  = time.Hour
	minHMACSecret       = 32
)

// JWTConfig configures a [JWT] authenticator. Algorithms, at least one key
// source and Audience are required, and so is Issuer when tokens are
// verified with public keys or a JWKS; every other zero value is the secure
// default. A JWTConfig must not be modified after it is passed to [NewJWT].
//
// A token's subject is a name in the namespace of its issuer: "alice" of
// one identity provider is not "alice" of another. A JWT accepts one
// issuer, so the subjects it turns into [mqttsec.Identity.Subject] come
// from one namespace, and a token of another issuer is denied even when a
// configured key verifies it (unless InsecureAnyIssuer). Policies, client-ID binding and %u
// placeholders see only the subject: authenticators of one [Chain] share
// that namespace, so make sure a name means one principal across them (a
// token subject is the same principal as the password-file user or
// certificate name it equals).
type JWTConfig struct {
	// Algorithms is the allow-list of signing algorithms ("RS256", "ES256",
	// "EdDSA", "HS256", ...). "none" is never accepted. A token's algorithm
	// must be on the list and is verified only with a key of its own family:
	// HS* with HMACSecret, RS*/PS* with RSA keys, ES* with ECDSA keys of the
	// matching curve, EdDSA with Ed25519 keys, so a public key can never be
	// used as an HMAC secret.
	Algorithms []string `yaml:"algorithms"`
	// HMACSecret is the shared secret for HS* tokens, at least as long as
	// the hash output (RFC 7518): 32 bytes for HS256, 48 for HS384, 64 for
	// HS512 (the longest allowed algorithm decides).
	// Load it with [HMACSecretFromFile] or [HMACSecretFromEnv]; it is never
	// printed.
	HMACSecret []byte `yaml:"-"`
	// PublicKeys are RSA, ECDSA and Ed25519 verification keys, see
	// [ParsePublicKeysPEM].
	PublicKeys []crypto.PublicKey `yaml:"-"`
	// JWKSURL is a JWK Set URL. Its keys (asymmetric only) are fetched at
	// construction and refreshed in the background every JWKSRefresh, and
	// at most every 5 minutes when a token names an unknown "kid" (key
	// rotation). When a fetch fails, the keys already fetched stay in use;
	// a failed first fetch is reported to Events and tokens are denied
	// until a refresh succeeds. It must be an https URL, or http to a
	// loopback address (a local key server): a key set fetched in clear
	// over a network can be replaced by anyone on the path, who then signs
	// tokens for any subject. Redirects are held to the same rule.
	JWKSURL string `yaml:"jwks_url"`
	// InsecureJWKSHTTP allows a JWKSURL (and redirects) over plain http to
	// any host, and an HTTPClient whose transport skips the verification
	// of the server's certificate. Leave it false.
	InsecureJWKSHTTP bool `yaml:"insecure_jwks_http"`
	// JWKSRefresh is the JWKS refresh interval; zero means DefaultJWKSRefresh.
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// HTTPClient fetches the JWKS. Nil means http.DefaultClient. One
	// whose *http.Transport skips certificate verification
	// (InsecureSkipVerify) is refused, as plain http is.
	HTTPClient *http.Client `yaml:"-"`
	// Events receives what the JWKS refresh does, as every watcher of
	// this module reports it, with Source "jwks" ([JWKSEventSource]) and
	// File the JWKSURL: an [mqttsec.EventReload] when a fetched key set
	// differs from the previous one (a key added, rotated or removed), an
	// [mqttsec.EventReloadFailed] with the error when a fetch fails (the
	// keys already fetched stay in use). Give the [mqttsec.Guard] (an
	// EventSink): after a reload it revalidates live sessions, so a client
	// whose token was signed with a key removed from the set is
	// disconnected (see [JWT.Revalidate]). Nil means mqttsec.SlogSink(nil).
	// It must not block.
	Events mqttsec.EventSink `yaml:"-"`
	// Issuer must equal the "iss" claim. It is required when tokens are
	// verified with PublicKeys or a JWKSURL (keys that may sign tokens
	// for several issuers, or for another issuer after a mix-up), unless
	// InsecureAnyIssuer is set; with HMACSecret alone it is optional
	// (whoever holds the secret is the issuer).
	Issuer string `yaml:"issuer"`
	// InsecureAnyIssuer accepts tokens whatever their "iss" claim, and
	// without one. The subjects of every issuer the keys verify then share
	// one namespace: "alice" of one issuer logs in as "alice" of another.
	// Leave it false; set Issuer.
	InsecureAnyIssuer bool `yaml:"insecure_any_issuer"`
	// Audience must be one of the values of the "aud" claim: this broker's
	// name at the issuer. It is required unless InsecureAnyAudience is set,
	// so that a token the same issuer minted for another service does not
	// log in here (RFC 8725, section 3.9).
	Audience string `yaml:"audience"`
	// InsecureAnyAudience accepts tokens whatever their "aud" claim, and
	// without one: any token of the issuer, for any of its services, logs
	// in. Leave it false; set Audience.
	InsecureAnyAudience bool `yaml:"insecure_any_audience"`
	// Leeway is the clock skew allowed for "exp", "nbf" and "iat"; zero
	// means DefaultLeeway, a negative value none. A token is valid until
	// exp + Leeway, and everything agrees on it: the verification, the
	// cache, and Identity.Expiry, so the Guard disconnects the client (with
	// 0xA0) at exp + Leeway.
	Leeway time.Duration `yaml:"leeway"`
	// SubjectClaim names the claim that identifies the client; zero means
	// "sub". It becomes Identity.Subject.
	SubjectClaim string `yaml:"subject_claim"`
	// MatchClientID compares SubjectClaim with the MQTT client ID instead of
	// the user name. Without it, a non-empty user name must equal the
	// claim (the user name is optional).
	MatchClientID bool `yaml:"match_client_id"`
	// RolesClaim, when set, names a claim holding an array of strings that
	// becomes Identity.Roles.
	RolesClaim string `yaml:"roles_claim"`
	// AttributeClaims names string claims copied into Identity.Attributes
	// under the claim's name, for the parts that key on them (a client-ID
	// binding "{attr:client_id}", say). At most [MaxAttributeClaims], none
	// of them an attribute the JWT records itself (iss, aud, alg, key). A
	// named claim that is present but not a string of at most
	// [MaxAttributeLen] bytes denies the token; an absent one is not copied.
	AttributeClaims []string `yaml:"attribute_claims"`
	// ACLClaim turns an "acl" claim in EMQX 5.x format (see
	// [ParseACLClaim]) into Identity.Grants. A malformed claim denies.
	ACLClaim bool `yaml:"acl_claim"`
	// MaxTokenSize is the largest token accepted, in bytes; zero means
	// DefaultMaxTokenSize.
	MaxTokenSize int `yaml:"max_token_size"`
	// CacheSize is the number of verified tokens remembered (keyed by the
	// SHA-256 of the token, never past its "exp"); zero means
	// DefaultCacheSize, negative disables the cache. Whenever a fetched JWK
	// Set differs from the previous one, every cached token is verified
	// again at its next use, so a token whose key was removed from the JWKS
	// is denied; [JWT.Flush] does the same on demand.
	CacheSize int `yaml:"cache_size"`
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time `yaml:"-"`
}

// JWT authenticates a CONNECT whose password field is a JSON Web Token. It
// abstains when the password does not have the shape of a JWT (so a
// [Chain] can try passwords next) and denies, wrapping
// [mqttsec.ErrBadCredentials], any token that fails verification. The
// Identity carries the token's expiry (exp + Leeway), after which the
// Guard disconnects the client with 0xA0.
//
// A JWT is safe for concurrent use. With a JWKSURL it runs a refresh
// goroutine until [JWT.Close].
type JWT struct {
	cfg    JWTConfig
	parser *jwt.Parser
	jwks   keyfunc.Keyfunc
	cancel context.CancelFunc
	cache  *boundedCache[jwtEntry]
	now    func() time.Time
	leeway time.Duration
	events mqttsec.EventSink
	// gen counts key changes (a new JWK Set, a Flush); a cache entry
	// verified under an older generation is not used.
	gen atomic.Uint64
	// static are the IDs (see keyID) of the configured keys and secret;
	// jwksKeys those of the JWK Set last fetched. A key ID is recorded in
	// each Identity, so that Revalidate can tell a withdrawn key.
	static   map[string]bool
	jwksKeys atomic.Pointer[map[string]bool]
	jwksMu   sync.Mutex // serializes key set updates
	kf       atomic.Pointer[keyfunc.Keyfunc]
}

// JWKSEventSource is the Source of the events a [JWT] reports about its
// JWK Set.
const JWKSEventSource = "jwks"

// The Identity.Attributes a [JWT] records. Never a secret.
const (
	// AttrIssuer is the token's "iss" claim, when it has one.
	AttrIssuer = "iss"
	// AttrAudience is the configured Audience the token was accepted for.
	AttrAudience = "aud"
	// AttrAlgorithm is the token's signing algorithm.
	AttrAlgorithm = "alg"
	// AttrKey identifies the key that verified the token: for a public key
	// "sha256/BASE64" of its SubjectPublicKeyInfo (the form of
	// tlsconf.SPKIPin), for the HMAC secret "hmac/BASE64" of a keyed hash
	// of it (no more telling than a token it signed).
	AttrKey = "key"
)

// The bounds of JWTConfig.AttributeClaims.
const (
	MaxAttributeClaims = 16
	MaxAttributeLen    = 256
)

type jwtEntry struct {
	id  *mqttsec.Identity
	exp time.Time
	gen uint64
}

var knownAlgs = map[string]bool{
	"HS256": true, "HS384": true, "HS512": true,
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// hmacSecretLen is the shortest secret RFC 7518 allows per HS* algorithm.
var hmacSecretLen = map[string]int{"HS256": 32, "HS384": 48, "HS512": 64}

// NewJWT returns a JWT authenticator. ctx bounds the first JWKS fetch and
// the refresh goroutine's requests.
func NewJWT(ctx context.Context, cfg JWTConfig) (*JWT, error) {
	if len(cfg.Algorithms) == 0 {
		return nil, fmt.Errorf("%w: jwt: no algorithms allowed", ErrConfig)
	}
	if len(cfg.AttributeClaims) > MaxAttributeClaims {
		return nil, fmt.Errorf("%w: jwt: more than %d attribute claims", ErrConfig, MaxAttributeClaims)
	}
	for _, c := range cfg.AttributeClaims {
		switch c {
		case "", AttrIssuer, AttrAudience, AttrAlgorithm, AttrKey:
			return nil, fmt.Errorf("%w: jwt: attribute claim %q is empty or recorded by the JWT itself", ErrConfig, c)
		}
	}
	var useHMAC, asym bool
	minSecret := 0
	for _, a := range cfg.Algorithms {
		if !knownAlgs[a] {
			return nil, fmt.Errorf("%w: jwt: algorithm %q not supported", ErrConfig, a)
		}
		if strings.HasPrefix(a, "HS") {
			useHMAC = true
			// RFC 7518 3.2: a key at least as long as the hash output.
			minSecret = max(minSecret, hmacSecretLen[a])
		} else {
			asym = true
		}
	}
	if useHMAC && len(cfg.HMACSecret) < minSecret {
		return nil, fmt.Errorf("%w: jwt: the allowed HS* algorithms need an HMAC secret of at least %d bytes", ErrConfig, minSecret)
	}
	if asym && len(cfg.PublicKeys) == 0 && cfg.JWKSURL == "" {
		return nil, fmt.Errorf("%w: jwt: asymmetric algorithms need public keys or a JWKS URL", ErrConfig)
	}
	if cfg.Audience == "" && !cfg.InsecureAnyAudience {
		return nil, fmt.Errorf("%w: jwt: Audience is required (a token the issuer minted for another service would log in); "+
			"InsecureAnyAudience waives it", ErrConfig)
	}
	if cfg.Issuer == "" && !cfg.InsecureAnyIssuer && (len(cfg.PublicKeys) > 0 || cfg.JWKSURL != "") {
		return nil, fmt.Errorf("%w: jwt: Issuer is required with public keys or a JWKS URL (subjects of different issuers "+
			"would be one principal); InsecureAnyIssuer waives it", ErrConfig)
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%w: jwt: JWKS URL %q is not an absolute URL", ErrConfig, cfg.JWKSURL)
		}
		if err := jwksURLAllowed(u, cfg.InsecureJWKSHTTP); err != nil {
			return nil, fmt.Errorf("%w: jwt: %w", ErrConfig, err)
		}
		if c := cfg.HTTPClient; c != nil && !cfg.InsecureJWKSHTTP {
			if tr, ok := c.Transport.(*http.Transport); ok && tr.TLSClientConfig != nil && tr.TLSClientConfig.InsecureSkipVerify {
				return nil, fmt.Errorf("%w: jwt: the JWKS HTTPClient skips certificate verification: anyone on the path "+
					"can replace the keys (InsecureJWKSHTTP allows it)", ErrConfig)
			}
		}
	}
	for _, k := range cfg.PublicKeys {
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("%w: jwt: unsupported public key type %T", ErrConfig, k)
		}
	}
	if cfg.SubjectClaim == "" {
		cfg.SubjectClaim = "sub"
	}
	if cfg.MaxTokenSize <= 0 {
		cfg.MaxTokenSize = DefaultMaxTokenSize
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	} else if leeway < 0 {
		leeway = 0
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	j := &JWT{cfg: cfg, cache: newBoundedCache[jwtEntry](size), now: cfg.Clock, leeway: leeway,
		events: cfg.Events, static: make(map[string]bool)}
	if j.now == nil {
		j.now = time.Now
	}
	if j.events == nil {
		j.events = mqttsec.SlogSink(nil)
	}
	for _, k := range cfg.PublicKeys {
		if id := keyID(k); id != "" {
			j.static[id] = true
		}
	}
	if useHMAC {
		j.static[hmacKeyID(cfg.HMACSecret)] = true
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(slices.Clone(cfg.Algorithms)),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(j.now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	j.parser = jwt.NewParser(opts...)
	if cfg.JWKSURL != "" {
		refresh := cfg.JWKSRefresh
		if refresh <= 0 {
			refresh = DefaultJWKSRefresh
		}
		kctx, cancel := context.WithCancel(ctx)
		noErr := true
		onErr := func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				j.event(mqttsec.EventReloadFailed, fmt.Errorf("auth: jwks: %w", err))
			}
		}
		client := http.DefaultClient
		if cfg.HTTPClient != nil {
			client = cfg.HTTPClient
		}
		watched := *client
		watched.Transport = &jwksWatch{next: client.Transport, fetched: j.jwksFetched, insecure: cfg.InsecureJWKSHTTP}
		kf, err := keyfunc.NewDefaultOverrideCtx(kctx, []string{cfg.JWKSURL}, keyfunc.Override{
			Client:                    &watched,
			HTTPTimeout:               10 * time.Second,
			RefreshInterval:           refresh,
			RefreshErrorHandlerFunc:   onErr,
			NoErrorReturnFirstHTTPReq: &noErr,
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("%w: jwt: jwks: %w", ErrConfig, err)
		}
		j.jwks, j.cancel = kf, cancel
		j.kf.Store(&kf)
		// The first fetch ran before kf existed: take its keys now (a
		// refresh that ran meanwhile is read again, which is harmless).
		j.jwksFetched()
	}
	return j, nil
}

func (j *JWT) event(kind mqttsec.EventKind, err error) {
	j.events.Event(mqttsec.Event{Time: j.now(), Kind: kind, Source: JWKSEventSource, File: j.cfg.JWKSURL, Err: err})
}

// jwksFetched runs after every JWK Set response was read (and, when it
// parsed, its keys stored): when the set of keys differs from the last
// one, verified tokens are verified again at their next use, and an
// EventReload is reported, so that sessions whose key was removed are
// revalidated. The first set is taken without an event.
func (j *JWT) jwksFetched() {
	kfp := j.kf.Load()
	if kfp == nil {
		return
	}
	// Read and store under one lock, so that a slower reader of an older
	// set never overwrites a newer one.
	j.jwksMu.Lock()
	defer j.jwksMu.Unlock()
	jwks, err := (*kfp).Storage().KeyReadAll(context.Background())
	if err != nil {
		return
	}
	ids := make(map[string]bool, len(jwks))
	for _, k := range jwks {
		key := k.Key()
		if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
			key = pk.Public()
		}
		if id := keyID(key); id != "" {
			ids[id] = true
		}
	}
	prev := j.jwksKeys.Load()
	changed := prev != nil && !maps.Equal(*prev, ids)
	if prev == nil || changed {
		j.jwksKeys.Store(&ids)
	}
	if changed {
		j.Flush()
		j.event(mqttsec.EventReload, nil)
	}
}

// keyID names a public key by the SHA-256 of its SubjectPublicKeyInfo, as
// tlsconf.SPKIPin does; "" for a key that cannot be marshalled.
func keyID(k any) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}

// hmacKeyID names an HMAC secret by a keyed hash of it: telling no more
// about the secret than any token it signed.
func hmacKeyID(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("mqttsec jwt key id"))
	return "hmac/" + base64.StdEncoding.EncodeToString(m.Sum(nil)[:16])
}

// jwksURLAllowed refuses a JWK Set URL that is not https, unless it is http
// to a loopback address or insecure is set.
func jwksURLAllowed(u *url.URL, insecure bool) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if insecure || isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("JWKS URL %q is plain http to a host that is not loopback: anyone on the path can "+
			"replace the keys; use https (InsecureJWKSHTTP allows it)", u.Redacted())
	}
	return fmt.Errorf("JWKS URL %q: scheme must be https", u.Redacted())
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Close stops the JWKS refresh goroutine, if any. It is safe to call more
// than once.
func (j *JWT) Close() error {
	if j.cancel != nil {
		j.cancel()
	}
	return nil
}

// Flush forgets every verified token, so that the next use of each is
// verified again (after a key was revoked, say). A verification that is
// under way while Flush runs is not cached.
func (j *JWT) Flush() {
	j.gen.Add(1)
	j.cache.removeIf(func(jwtEntry) bool { return true })
}

// jwksWatch is the JWKS client's transport: it refuses requests (the
// first and every redirect) to a URL jwksURLAllowed refuses, and calls
// fetched after a JWK Set response has been read and closed (the key set
// library stores the new keys before it closes the body).
type jwksWatch struct {
	next     http.RoundTripper
	fetched  func()
	insecure bool
}

func (w *jwksWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := jwksURLAllowed(r.URL, w.insecure); err != nil {
		return nil, err
	}
	next := w.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	resp.Body = &watchedBody{ReadCloser: resp.Body, w: w}
	return resp, nil
}

type watchedBody struct {
	io.ReadCloser
	w    *jwksWatch
	once sync.Once
	n    int64
}

// MaxJWKSBody is the largest JWK Set response read: a larger one fails the
// refresh (the keys in force stay), so a compromised or broken JWKS
// endpoint cannot make the broker buffer an unbounded body.
const MaxJWKSBody = 1 << 20

var errJWKSTooLarge = fmt.Errorf("%w: jwks: response larger than %d bytes", ErrConfig, MaxJWKSBody)

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.n >= MaxJWKSBody {
		return 0, errJWKSTooLarge
	}
	if rest := MaxJWKSBody - b.n; int64(len(p)) > rest {
		p = p[:rest+1] // one byte more tells a body of exactly the limit from a larger one
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.n > MaxJWKSBody {
		return 0, errJWKSTooLarge
	}
	return n, err
}

func (b *watchedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.w.fetched)
	return err
}

// LooksLikeJWT reports whether s has the shape of a compact JWS: three
// dot-separated base64url segments (the last may be empty, as in an
// unsigned token, which is then denied, not ignored).
func LooksLikeJWT(s []byte) bool {
	dots := 0
	seg := 0
	for _, c := range s {
		switch {
		case c == '.':
			if seg == 0 && dots < 2 {
				return false
			}
			dots++
			seg = 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			seg++
		default:
			return false
		}
	}
	return dots == 2 && len(s) > 0 && s[0] == 'e' // a JSON header always encodes to "ey"
}

// Authenticate verifies the token in cred.Password.
func (j *JWT) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	tok := cred.Password
	if !LooksLikeJWT(tok) {
		return nil, mqttsec.ErrAbstain
	}
	if len(tok) > j.cfg.MaxTokenSize {
		return nil, deny(fmt.Sprintf("token longer than %d bytes", j.cfg.MaxTokenSize))
	}
	key := sha256.Sum256(tok)
	gen := j.gen.Load()
	if e, ok := j.cache.get(&key); ok && e.gen == gen {
		if !j.now().Before(e.exp) {
			j.cache.remove(&key)
			return nil, errTokenExpired
		}
		if err := j.match(cl, e.id.Subject); err != nil {
			return nil, err
		}
		return e.id, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", mqttsec.ErrServerBusy, err)
	}
	var claims tokenClaims
	var used any
	t, err := j.parser.ParseWithClaims(string(tok), &claims, j.keyfunc(ctx, &used))
	if err != nil {
		return nil, jwtDenial(err)
	}
	id, err := j.identity(&claims, t.Method.Alg(), used)
	if err != nil {
		return nil, err
	}
	if err := j.match(cl, id.Subject); err != nil {
		return nil, err
	}
	j.cache.put(&key, jwtEntry{id: id, exp: id.Expiry, gen: gen})
	return id, nil
}

var errTokenExpired = deny("token expired")

func (j *JWT) match(cl *mqttsec.Client, subject string) error {
	if j.cfg.MatchClientID {
		if cl.ID != subject {
			return deny(fmt.Sprintf("client ID %q does not match the token's %q claim", cl.ID, j.cfg.SubjectClaim))
		}
		return nil
	}
	if cl.Username != "" && cl.Username != subject {
		return deny(fmt.Sprintf("user name %q does not match the token's %q claim", cl.Username, j.cfg.SubjectClaim))
	}
	return nil
}

func (j *JWT) identity(c *tokenClaims, alg string, key any) (*mqttsec.Identity, error) {
	var sub string
	if raw, ok := c.raw[j.cfg.SubjectClaim]; !ok || json.Unmarshal(raw, &sub) != nil || sub == "" {
		return nil, deny(fmt.Sprintf("token has no string %q claim", j.cfg.SubjectClaim))
	}
	// The parser accepts the token until exp + leeway: so do the cache and
	// the Guard.
	id := &mqttsec.Identity{Subject: sub, Method: mqttsec.MethodJWT, Expiry: c.ExpiresAt.Time.Add(j.leeway),
		Attributes: map[string]string{AttrAlgorithm: alg}}
	if c.Issuer != "" {
		id.Attributes[AttrIssuer] = c.Issuer
	}
	if j.cfg.Audience != "" {
		id.Attributes[AttrAudience] = j.cfg.Audience
	}
	if b, ok := key.([]byte); ok {
		id.Attributes[AttrKey] = hmacKeyID(b)
	} else if k := keyID(key); k != "" {
		id.Attributes[AttrKey] = k
	}
	for _, name := range j.cfg.AttributeClaims {
		raw, ok := c.raw[name]
		if !ok {
			continue
		}
		var v string
		if json.Unmarshal(raw, &v) != nil || len(v) > MaxAttributeLen {
			return nil, deny(fmt.Sprintf("token claim %q is not a string of at most %d bytes", name, MaxAttributeLen))
		}
		id.Attributes[name] = v
	}
	if j.cfg.RolesClaim != "" {
		if raw, ok := c.raw[j.cfg.RolesClaim]; ok {
			if json.Unmarshal(raw, &id.Roles) != nil {
				return nil, deny(fmt.Sprintf("token claim %q is not an array of strings", j.cfg.RolesClaim))
			}
		}
	}
	if j.cfg.ACLClaim {
		if raw, ok := c.raw["acl"]; ok {
			g, err := ParseACLClaim(raw)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", mqttsec.ErrBadCredentials, err)
			}
			id.Grants = g
		}
	}
	return id, nil
}

// jwtDenial turns a verification error into a denial with a fixed reason
// (golang-jwt's messages are kept out, they may quote claims).
func jwtDenial(err error) error {
	reason := "token invalid"
	for _, e := range [...]struct {
		err    error
		reason string
	}{
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "token used before issued"},
		{jwt.ErrTokenRequiredClaimMissing, "token lacks a required claim"},
		{jwt.ErrTokenInvalidIssuer, "token issuer not accepted"},
		{jwt.ErrTokenInvalidAudience, "token audience not accepted"},
		{jwt.ErrTokenSignatureInvalid, "token signature invalid or algorithm not allowed"},
		{jwt.ErrTokenUnverifiable, "token unverifiable (no key for its algorithm)"},
		{jwt.ErrTokenMalformed, "token malformed"},
	} {
		if errors.Is(err, e.err) {
			reason = e.reason
			break
		}
	}
	return deny(reason)
}

// keyfunc returns the keys that may verify a token, chosen by the family of
// its (already allow-listed) algorithm, never by what the token says about
// its key. It stores in *used the key that verifies the signature (the
// parser checks it again), or the only candidate.
func (j *JWT) keyfunc(ctx context.Context, used *any) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if !slices.Contains(j.cfg.Algorithms, alg) || !knownAlgs[alg] {
			return nil, fmt.Errorf("algorithm not allowed")
		}
		if strings.HasPrefix(alg, "HS") {
			*used = j.cfg.HMACSecret
			return j.cfg.HMACSecret, nil
		}
		var set jwt.VerificationKeySet
		for _, k := range j.cfg.PublicKeys {
			if keyFits(alg, k) {
				set.Keys = append(set.Keys, k)
			}
		}
		if j.jwks != nil {
			k, err := j.jwks.KeyfuncCtx(ctx)(t)
			if err == nil {
				switch k := k.(type) {
				case jwt.VerificationKeySet:
					for _, kk := range k.Keys {
						if keyFits(alg, kk) {
							set.Keys = append(set.Keys, kk)
						}
					}
				default:
					if keyFits(alg, k) {
						set.Keys = append(set.Keys, k)
					}
				}
			}
		}
		switch len(set.Keys) {
		case 0:
			return nil, fmt.Errorf("no key for algorithm %s", alg)
		case 1:
			*used = set.Keys[0]
			return set.Keys[0], nil
		}
		// Several candidates (a token without "kid"): find the one that
		// verifies, so that the Identity records which key it was.
		if i := strings.LastIndexByte(t.Raw, '.'); i > 0 {
			for _, k := range set.Keys {
				if t.Method.Verify(t.Raw[:i], t.Signature, k) == nil {
					*used = k
					return k, nil
				}
			}
		}
		return set, nil
	}
}

// Revalidate implements [mqttsec.Revalidator]: it tells whether this JWT
// would still accept the token a session authenticated with, by the facts
// the Identity records (see [AttrKey] and the other attributes), since the
// token itself is not kept. It denies (wrapping
// [mqttsec.ErrBadCredentials]) when the key that verified the token is no
// longer one of the configured keys or of the JWK Set last fetched (a key
// removed from the set), or when the token's issuer, audience or algorithm
// is no longer accepted (an identity of a JWT with another configuration,
// after a [mqttsec.Guard.Reload]); it returns nil otherwise. It abstains
// for an identity that is not a token's, or that no JWT of this package
// made. Expiry is the Guard's business.
func (j *JWT) Revalidate(_ context.Context, cl *mqttsec.Client) error {
	id := cl.Identity
	if id == nil || id.Method != mqttsec.MethodJWT {
		return mqttsec.ErrAbstain
	}
	key, ok := id.Attributes[AttrKey]
	if !ok {
		return mqttsec.ErrAbstain
	}
	switch {
	case j.cfg.Issuer != "" && id.Attributes[AttrIssuer] != j.cfg.Issuer:
		return deny("token issuer no longer accepted")
	case j.cfg.Audience != "" && id.Attributes[AttrAudience] != j.cfg.Audience:
		return deny("token audience no longer accepted")
	case !slices.Contains(j.cfg.Algorithms, id.Attributes[AttrAlgorithm]):
		return deny("token algorithm no longer accepted")
	case !j.knownKey(key):
		return deny("the key that signed the token was withdrawn")
	}
	return nil
}

// knownKey reports whether id names a configured key or one of the JWK Set
// last fetched.
func (j *JWT) knownKey(id string) bool {
	if j.static[id] {
		return true
	}
	if m := j.jwksKeys.Load(); m != nil {
		return (*m)[id]
	}
	return false
}

// keyFits reports whether key k belongs to the family of algorithm alg.
func keyFits(alg string, k any) bool {
	switch alg[:2] {
	case "RS", "PS":
		rk, ok := k.(*rsa.PublicKey)
		return ok && rk.N.BitLen() >= 2048
	case "ES":
		ek, ok := k.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		switch alg {
		case "ES256":
			return ek.Curve == elliptic.P256()
		case "ES384":
			return ek.Curve == elliptic.P384()
		case "ES512":
			return ek.Curve == elliptic.P521()
		}
	case "Ed":
		_, ok := k.(ed25519.PublicKey)
		return ok
	}
	return false
}

// tokenClaims are the registered claims plus every claim raw, for the
// configurable subject, roles and acl claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	raw map[string]json.RawMessage
}

func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.RegisteredClaims); err != nil {
		return err
	}
	return json.Unmarshal(b, &c.raw)
}
