package config

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/redisstore"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// Options configure [File.Open]. The zero value logs to os.Stderr in the
// file's log format and creates a new Guard.
type Options struct {
	// Output receives the log, security events included. Nil means
	// os.Stderr.
	Output io.Writer
	// Logger, when set, is used instead of a logger built from the log
	// section and Output.
	Logger *slog.Logger
	// Guard is the Guard to configure. Nil means new(mqttsec.Guard).
	Guard *mqttsec.Guard
	// Events, when set, receives every security event too, after the
	// log and the metrics.
	Events mqttsec.EventSink
}

// Runtime is an opened [File]: a configured [mqttsec.Guard], the TLS
// configurations of the listeners, and the watchers that keep them
// current. Every watcher reports to the Guard, so a reload that withdraws
// a credential (a user removed from the password file, a certificate
// revoked by a new CRL, a key removed from a JWK Set) disconnects the
// sessions that used it.
//
// A Runtime is safe for concurrent use. It runs goroutines (file
// watchers, the metrics server) until Close.
type Runtime struct {
	f      *File
	g      *mqttsec.Guard
	log    *slog.Logger
	sink   mqttsec.EventSink
	ctx    context.Context
	cancel context.CancelFunc

	passwords *auth.Passwords
	pwWatch   *auth.Watcher
	tls       []*tlsconf.Reloader // per listener; nil for plaintext
	serverTLS []*tls.Config
	x509      map[string]*auth.X509 // by listener name
	enforcer  *casbin.SyncedEnforcer
	authz     mqttsec.Authorizer
	aclWatch  []*acl.FileWatcher
	metrics   *metrics
	ids       mqttsec.ClientIDPolicy
	registry  mqttsec.Registry
	limiter   *ratelimit.Limiter
	chain     swapAuth // the authentication chain, behind the Gate
	gate      *ratelimit.Gate

	rdb      *redis.Client
	node     *redisstore.Node
	banStore *redisstore.BanStore
	guardLim mqttsec.Limiter // the Limiter behind the ban store's check

	bridges     map[string]*localBridge // by local user name
	bridgeOrder []*localBridge
	pipe        *bridge.Pipe

	mu      sync.Mutex // serializes reloads and Close
	jwt     *auth.JWT
	jwtKeys []byte // the key material the current jwt was built from
	closed  bool
}

// Open builds what the file describes and configures the Guard with it:
// it checks the files ([File.Check]), builds the logger, the metrics
// endpoint, the TLS configurations of the listeners (tlsconf reloaders),
// the authenticators (auth.X509 verified again by its listener's
// reloader, auth.JWT, auth.Passwords with a watcher, auth.Anonymous) and
// the policy (acl.Casbin over the acl_file and Casbin policy, with
// watchers, behind an acl.WildcardPolicy), and finally gives them to the
// Guard with [mqttsec.Guard.Reload]. The Guard denies every CONNECT
// until then, and every watcher has the Guard as its event sink.
//
// ctx bounds the first fetch of a JWK Set; the Runtime lives until Close.
// On error nothing is left running.
func (f *File) Open(ctx context.Context, o Options) (rt *Runtime, err error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	r := &Runtime{f: f, g: o.Guard, log: o.Logger, x509: map[string]*auth.X509{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	if r.g == nil {
		r.g = new(mqttsec.Guard)
	}
	if r.log == nil {
		r.log = f.Logger(o.Output)
	}
	sinks := fanout{EventLogger(r.log)}
	if f.Metrics != nil {
		r.metrics = newMetrics()
		if err := r.metrics.serve(f.Metrics.Address); err != nil {
			return nil, f.errAt(wrapf(ErrInvalid, "metrics: %w", err), "metrics", "address")
		}
		sinks = append(sinks, r.metrics)
	}
	if o.Events != nil {
		sinks = append(sinks, o.Events)
	}
	r.sink = sinks
	// The Guard reports to the log from now on, and still denies everything:
	// the watchers below report to it, and their first warnings (a
	// certificate that expires soon) reach the log.
	r.g.Reload(mqttsec.Config{Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
		if e.Kind == mqttsec.EventReload && e.Source == "guard" {
			return // this bootstrap configuration: the real one is reported below
		}
		r.sink.Event(e)
	}), Logger: r.log})
	for _, w := range f.Insecure() {
		r.log.Warn("insecure setting", "setting", w, "file", f.name)
	}

	if err := r.openTLS(); err != nil {
		return nil, err
	}
	if err := r.openBridges(); err != nil {
		return nil, err
	}
	if err := r.openRedis(ctx); err != nil {
		return nil, err
	}
	if f.Auth.PasswordFile != "" {
		r.passwords = auth.NewPasswords(auth.NewPasswordFile(), auth.PasswordsConfig{})
		r.pwWatch, err = auth.WatchPasswordFile(f.Path(f.Auth.PasswordFile), r.passwords, auth.WatchOptions{Events: r.g})
		if err != nil {
			return nil, f.errAt(wrapf(ErrFile, "%w", err), "auth", "password_file")
		}
	}
	if f.Auth.JWT != nil {
		keys, err := r.jwtKeyMaterial()
		if err != nil {
			return nil, err
		}
		j, err := r.newJWT(ctx, keys)
		if err != nil {
			return nil, err
		}
		r.jwt, r.jwtKeys = j, keys
		if f.Auth.JWT.HMACSecretFile != "" || f.Auth.JWT.PublicKeyFile != "" {
			go r.pollJWTKeys()
		}
	}
	if err := r.openACL(); err != nil {
		return nil, err
	}
	if err := r.openClientIDs(); err != nil {
		return nil, err
	}
	if err := r.openRateLimit(ctx); err != nil {
		return nil, err
	}
	r.g.Reload(r.guardConfig())
	r.limiter.Bans().Attach(r.g)
	if err := r.attachRedis(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Guard returns the configured Guard.
func (r *Runtime) Guard() *mqttsec.Guard { return r.g }

// Logger returns the logger security events and warnings go to.
func (r *Runtime) Logger() *slog.Logger { return r.log }

// File returns the file the Runtime was opened from.
func (r *Runtime) File() *File { return r.f }

// ServerTLS returns the server TLS configuration of listener i, or nil for
// a plaintext listener. It follows the reloaded files.
func (r *Runtime) ServerTLS(i int) *tls.Config { return r.serverTLS[i] }

// MetricsAddr returns the address the metrics endpoint listens on, or ""
// without one.
func (r *Runtime) MetricsAddr() string {
	if r.metrics == nil || r.metrics.ln == nil {
		return ""
	}
	return r.metrics.ln.Addr().String()
}

// Logger builds the logger the log section describes, writing to w (nil
// means os.Stderr).
func (f *File) Logger(w io.Writer) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cmpOr(f.Log.Level, "info")))
	opts := &slog.HandlerOptions{Level: level}
	if f.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (r *Runtime) openTLS() error {
	f := r.f
	r.tls = make([]*tlsconf.Reloader, len(f.Listeners))
	r.serverTLS = make([]*tls.Config, len(f.Listeners))
	for i, l := range f.Listeners {
		t := l.TLS
		if t == nil {
			continue
		}
		tc := tlsconf.Config{
			CertFile:     f.Path(t.CertFile),
			KeyFile:      f.Path(t.KeyFile),
			CAFile:       f.Path(t.ClientCAFile),
			MinVersion:   t.MinVersion,
			AllowedNames: t.AllowedNames,
			Events:       r.g,
		}
		for _, c := range t.CRLFiles {
			tc.CRLFiles = append(tc.CRLFiles, f.Path(c))
		}
		if l.Websocket {
			// A wss client speaks HTTP first. With tlsconf's default ALPN
			// ("mqtt") a browser offering http/1.1 is refused in the
			// handshake, and net/http closes a connection that negotiated
			// "mqtt".
			tc.ALPN = []string{"http/1.1"}
		}
		switch t.ClientAuth {
		case "none":
			tc.ClientAuth = tlsconf.ClientAuthNone
		case "optional":
			tc.ClientAuth = tlsconf.ClientAuthVerifyIfGiven
		case "required":
			tc.ClientAuth = tlsconf.ClientAuthRequire
		}
		rl, err := tlsconf.NewReloader(tc)
		if err != nil {
			return f.errAt(wrapf(ErrFile, "%w", err), "listeners", i, "tls")
		}
		r.tls[i] = rl
		if r.serverTLS[i], err = rl.Server(); err != nil {
			return f.errAt(wrapf(ErrFile, "%w", err), "listeners", i, "tls")
		}
		if c := f.Auth.Certificate; c != nil && t.ClientCAFile != "" {
			x, err := auth.NewX509(auth.X509Config{
				Field:         certField(c.UsernameFrom),
				URIPrefix:     c.URIPrefix,
				Pins:          c.Pins,
				MatchUsername: c.MatchUsername,
				Verifier:      rl,
			})
			if err != nil {
				return f.errAt(wrapf(ErrInvalid, "%w", err), "auth", "certificate")
			}
			r.x509[f.ListenerName(i)] = x
		}
	}
	return nil
}

func certField(s string) auth.CertField {
	switch s {
	case "san-dns":
		return auth.DNSName
	case "san-email":
		return auth.EmailAddress
	case "san-uri":
		return auth.URI
	case "fingerprint":
		return auth.Fingerprint
	}
	return auth.CommonName
}

// jwtKeyMaterial reads the JWT key files: the HMAC secret, then the PEM
// public keys, separated by a zero byte. The result is compared on reload.
func (r *Runtime) jwtKeyMaterial() ([]byte, error) {
	j := r.f.Auth.JWT
	var b bytes.Buffer
	switch {
	case j.HMACSecretFile != "":
		s, err := auth.HMACSecretFromFile(r.f.Path(j.HMACSecretFile))
		if err != nil {
			return nil, r.f.errAt(wrapf(ErrFile, "%w", err), "auth", "jwt", "hmac_secret_file")
		}
		b.Write(s)
	case j.HMACSecretEnv != "":
		s, err := auth.HMACSecretFromEnv(j.HMACSecretEnv)
		if err != nil {
			return nil, r.f.errAt(wrapf(ErrInvalid, "%w", err), "auth", "jwt", "hmac_secret_env")
		}
		b.Write(s)
	}
	b.WriteByte(0)
	if j.PublicKeyFile != "" {
		data, err := os.ReadFile(r.f.Path(j.PublicKeyFile))
		if err != nil {
			return nil, r.f.errAt(wrapf(ErrFile, "%w", err), "auth", "jwt", "public_key_file")
		}
		b.Write(data)
	}
	return b.Bytes(), nil
}

// newJWT builds the JWT authenticator from key material.
func (r *Runtime) newJWT(ctx context.Context, keys []byte) (*auth.JWT, error) {
	j := r.f.Auth.JWT
	secret, pems, _ := bytes.Cut(keys, []byte{0})
	cfg := auth.JWTConfig{
		Algorithms:          j.Algorithms,
		JWKSURL:             j.JWKSURL,
		InsecureJWKSHTTP:    j.InsecureJWKSHTTP,
		JWKSRefresh:         j.JWKSRefresh,
		Events:              r.g,
		Issuer:              j.Issuer,
		InsecureAnyIssuer:   j.InsecureAnyIssuer,
		Audience:            j.Audience,
		InsecureAnyAudience: j.InsecureAnyAudience,
		Leeway:              j.Leeway,
		SubjectClaim:        j.SubjectClaim,
		MatchClientID:       j.MatchClientID,
		RolesClaim:          j.RolesClaim,
		ACLClaim:            j.ACLClaim,
		MaxTokenSize:        j.MaxTokenSize,
		CacheSize:           j.CacheSize,
	}
	if len(secret) > 0 {
		cfg.HMACSecret = bytes.Clone(secret)
	}
	if len(pems) > 0 {
		keys, err := auth.ParsePublicKeysPEM(pems)
		if err != nil {
			return nil, r.f.errAt(wrapf(ErrFile, "%s: %w", r.f.Path(j.PublicKeyFile), err), "auth", "jwt", "public_key_file")
		}
		cfg.PublicKeys = keys
	}
	a, err := auth.NewJWT(ctx, cfg)
	if err != nil {
		return nil, r.f.errAt(wrapf(ErrInvalid, "%w", err), "auth", "jwt")
	}
	return a, nil
}

// jwtPoll is how often the JWT key files are compared with the keys in
// use.
const jwtPoll = 5 * time.Second

func (r *Runtime) pollJWTKeys() {
	t := time.NewTicker(jwtPoll)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			_ = r.reloadJWT()
		}
	}
}

// reloadJWT rebuilds the JWT authenticator when its key files changed, and
// gives the Guard the new one: sessions whose token's key is gone are
// disconnected.
func (r *Runtime) reloadJWT() error {
	if r.f.Auth.JWT == nil || (r.f.Auth.JWT.HMACSecretFile == "" && r.f.Auth.JWT.PublicKeyFile == "") {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	file := r.f.Path(cmpOr(r.f.Auth.JWT.PublicKeyFile, r.f.Auth.JWT.HMACSecretFile))
	keys, err := r.jwtKeyMaterial()
	if err == nil && bytes.Equal(keys, r.jwtKeys) {
		return nil
	}
	var j *auth.JWT
	if err == nil {
		j, err = r.newJWT(r.ctx, keys)
	}
	if err != nil {
		r.g.Event(mqttsec.Event{Kind: mqttsec.EventReloadFailed, Source: "jwt", File: file, Err: err})
		return err
	}
	old := r.jwt
	r.jwt, r.jwtKeys = j, keys
	r.g.Reload(r.guardConfig())
	_ = old.Close()
	r.g.Event(mqttsec.Event{Kind: mqttsec.EventReload, Source: "jwt", File: file})
	return nil
}

func (r *Runtime) openACL() error {
	f := r.f
	ad := policyAdapter{aclFile: f.Path(f.ACL.ACLFile), policyFile: f.Path(f.ACL.CasbinPolicy)}
	e, err := casbin.NewSyncedEnforcer(acl.NewModel(), ad)
	if err != nil {
		key := "acl_file"
		if f.ACL.ACLFile == "" {
			key = "casbin_policy"
		}
		return f.errAt(wrapf(ErrFile, "%w", err), "acl", key)
	}
	var opts []acl.Option
	switch f.ACL.Grants {
	case "widen":
		opts = append(opts, acl.WithGrants(acl.GrantsWiden))
	case "ignore":
		opts = append(opts, acl.WithGrants(acl.GrantsIgnore))
	}
	c, err := acl.NewCasbin(e, opts...)
	if err != nil {
		return f.errAt(wrapf(ErrInvalid, "%w", err), "acl")
	}
	r.enforcer = e
	w := f.ACL.Wildcard
	wp := &acl.WildcardPolicy{MinLevels: w.MinLevels, Admins: w.Admins, SysSubjects: w.SysSubjects}
	if (w.DenyRootWildcards == nil || *w.DenyRootWildcards) && wp.MinLevels < 1 {
		wp.MinLevels = 1
	}
	r.authz = wp.Wrap(c)
	for _, p := range []struct{ key, file string }{{"acl_file", f.ACL.ACLFile}, {"casbin_policy", f.ACL.CasbinPolicy}} {
		if p.file == "" {
			continue
		}
		path := f.Path(p.file)
		fw, err := acl.WatchFile(e, path, acl.WithEvents(r.g))
		if err != nil {
			return f.errAt(wrapf(ErrFile, "%w", err), "acl", p.key)
		}
		r.aclWatch = append(r.aclWatch, fw)
	}
	return nil
}

// openClientIDs builds the client-ID policy and the registry. The
// registry lives as long as the Runtime: every Guard reload keeps it, so no
// ID changes hands because a key file was reloaded.
func (r *Runtime) openClientIDs() error {
	p, err := r.f.clientIDPolicy()
	if err != nil {
		return r.f.errAt(wrapf(ErrInvalid, "%w", err), "clientid")
	}
	r.ids = p
	c := r.f.ClientID
	if c == nil {
		c = &ClientID{}
	}
	takeover, err := clientid.ParseTakeover(cmpOr(c.Takeover, "owner"))
	if err != nil {
		return r.f.errAt(wrapf(ErrInvalid, "%w", err), "clientid", "takeover")
	}
	opts := []clientid.RegistryOption{clientid.WithTakeover(takeover)}
	if c.MaxIDs > 0 {
		opts = append(opts, clientid.WithMaxIDs(c.MaxIDs))
	}
	var plain mqttsec.Registry = clientid.NewRegistry(opts...)
	if r.node != nil {
		plain = r.redisRegistry(takeover)
	}
	r.registry = plain
	if len(c.Bind) > 0 {
		b, err := clientid.NewBinding(c.Bind...)
		if err != nil {
			return r.f.errAt(wrapf(ErrInvalid, "%w", err), "clientid", "bind")
		}
		r.registry = clientid.Bound(plain, b)
		if len(r.bridges) > 0 {
			r.registry = bridgeRegistry{bound: r.registry, plain: plain}
		}
	}
	return nil
}

// clientIDPolicy returns the client-ID policy of the clientid section.
func (f *File) clientIDPolicy() (*clientid.Policy, error) {
	c := f.ClientID
	if c == nil {
		return clientid.NewPolicy()
	}
	var opts []clientid.PolicyOption
	if c.MinLength > 0 || c.MaxLength > 0 {
		opts = append(opts, clientid.WithLength(max(c.MinLength, clientid.DefaultMinLen), cmp.Or(c.MaxLength, max(clientid.DefaultMaxLen, c.MinLength))))
	}
	if c.Pattern != "" {
		opts = append(opts, clientid.WithPattern(c.Pattern))
	}
	return clientid.NewPolicy(opts...)
}

// aclReloaded reports a reload of a policy file to the Guard.
func (r *Runtime) aclReloaded(file string, err error) {
	if err != nil {
		r.g.Event(mqttsec.Event{Kind: mqttsec.EventReloadFailed, Source: "acl", File: file, Err: err})
		return
	}
	r.g.Event(mqttsec.Event{Kind: mqttsec.EventReload, Source: "acl", File: file})
}

// guardConfig composes the Guard's parts. The caller holds r.mu or is
// Open.
func (r *Runtime) guardConfig() mqttsec.Config {
	var chain []mqttsec.Authenticator
	if len(r.bridges) > 0 {
		chain = append(chain, bridgeAuth(r.bridges))
	}
	if len(r.x509) > 0 {
		chain = append(chain, certRouter(r.x509))
	}
	if r.jwt != nil {
		chain = append(chain, r.jwt)
	}
	if r.passwords != nil {
		chain = append(chain, r.passwords)
	}
	if r.f.Auth.Anonymous {
		chain = append(chain, auth.Anonymous())
	}
	r.chain.set(auth.Chain(chain...))
	var quotas mqttsec.Quotas
	if l := r.f.Limits; l != nil {
		quotas = mqttsec.Quotas{
			RetainedPerSubject:      l.RetainedPerUser,
			RetainedBytesPerSubject: l.RetainedBytesPerUser,
			Retained:                l.Retained,
			RetainedBytes:           l.RetainedBytes,
			SessionsPerSubject:      l.SessionsPerUser,
			Sessions:                l.Sessions,
		}
	}
	authz, limiter := r.authz, r.guardLim
	if len(r.bridges) > 0 {
		authz, limiter = bridgeAuthz{next: r.authz}, bridgeLimiter{next: r.guardLim}
	}
	return mqttsec.Config{
		Authenticator:  r.gate,
		Authorizer:     authz,
		ClientIDs:      r.ids,
		Registry:       r.registry,
		Limiter:        limiter,
		Quotas:         quotas,
		MaxPayload:     r.f.MaxPayload(),
		MaxTopicLevels: r.f.Broker.MaxTopicLevels,
		Events:         r.sink,
		Logger:         r.log,
	}
}

// swapAuth is the authentication chain the Gate guards; a reload swaps
// the chain without replacing the Gate (and its queue).
type swapAuth struct {
	p atomic.Pointer[mqttsec.Authenticator]
}

func (s *swapAuth) set(a mqttsec.Authenticator) { s.p.Store(&a) }

func (s *swapAuth) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	return (*s.p.Load()).Authenticate(ctx, cl, cred)
}

// Revalidate implements mqttsec.Revalidator.
func (s *swapAuth) Revalidate(ctx context.Context, cl *mqttsec.Client) error {
	if rv, ok := (*s.p.Load()).(mqttsec.Revalidator); ok {
		return rv.Revalidate(ctx, cl)
	}
	return mqttsec.ErrAbstain
}

// openRateLimit builds the Limiter (rates, caps, failed-login throttles,
// bans) and the Gate in front of the authentication chain. Both exist
// without a ratelimit section, with ratelimit's defaults.
func (r *Runtime) openRateLimit(ctx context.Context) error {
	f := r.f
	rl := f.RateLimit
	if rl == nil {
		rl = &RateLimit{}
	}
	cfg := ratelimit.Config{
		ConnectPerAddr:  rl.ConnectPerIP.rate(),
		Connect:         rl.Connect.rate(),
		Messages:        rl.Publish.rate(),
		Bytes:           rl.Bytes.rate(),
		Subscriptions:   rl.Subscribe.rate(),
		Flood:           rl.Flood.rate(),
		MaxConnsPerAddr: rl.MaxConnectionsPerIP,
		MaxConnsPerUser: rl.MaxConnectionsPerUser,
		AddrFailures:    rl.AuthFailures.throttle(5),
		UserFailures:    rl.UserFailures.throttle(20),
		IPv6Prefix:      rl.IPv6Prefix,
		Events:          r.g,
	}
	if fp := rl.Flapping; fp != nil {
		cfg.Flapping = ratelimit.Flapping{Max: fp.Max, Window: fp.Window, Ban: fp.Ban, MaxBan: fp.MaxBan}
	}
	if rl.BansFile != "" {
		cfg.Bans = ratelimit.NewBans(ratelimit.BansConfig{Store: ratelimit.BanFile(f.Path(rl.BansFile))})
		if err := cfg.Bans.Load(ctx); err != nil {
			return f.errAt(wrapf(ErrFile, "%w", err), "ratelimit", "bans_file")
		}
	}
	if r.node != nil {
		r.banStore = r.redisRates(&cfg) // loaded by BanStore.Follow, in attachRedis
	}
	lim, err := ratelimit.New(cfg)
	if err != nil {
		return f.errAt(wrapf(ErrInvalid, "%w", err), "ratelimit")
	}
	r.limiter = lim
	r.guardLim = lim
	if r.banStore != nil {
		// CONNECTs are refused (0x88) while this broker's copy of the
		// cluster's ban list may be stale.
		r.guardLim = r.banStore.Limiter(lim)
	}
	var gc ratelimit.GateConfig
	if v := rl.Verification; v != nil {
		gc = ratelimit.GateConfig{CPU: v.CPU, MaxConcurrent: v.MaxConcurrent, MaxQueue: v.MaxQueue, PerKey: v.PerIP, MaxWait: v.MaxWait}
	}
	r.gate = ratelimit.NewGate(&r.chain, gc)
	return nil
}

// rate converts a Rate; nil is the zero Rate (the default).
func (r *Rate) rate() ratelimit.Rate {
	if r == nil {
		return ratelimit.Rate{}
	}
	return ratelimit.PerSecond(r.Rate, r.Burst)
}

// throttle converts Failures; defFree is the field's default SlowAfter.
func (f *Failures) throttle(defFree int) ratelimit.Throttle {
	if f == nil {
		return ratelimit.Throttle{}
	}
	t := ratelimit.Throttle{Free: f.SlowAfter, Slow: f.Slow, BanAfter: f.Max, Forget: f.Forget, Ban: f.Ban, MaxBan: f.MaxBan}
	if t.Free == 0 && t.BanAfter > 1 && t.BanAfter <= defFree {
		t.Free = t.BanAfter - 1
	}
	return t
}

// certRouter authenticates a client by certificate with the auth.X509 of
// the listener it connected to, whose Verifier is that listener's TLS
// reloader: a CRL or CA bundle reloaded for one listener revalidates the
// clients of that listener.
type certRouter map[string]*auth.X509

func (c certRouter) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	if x := c[cl.Listener]; x != nil {
		return x.Authenticate(ctx, cl, cred)
	}
	return nil, mqttsec.ErrAbstain
}

// Revalidate implements mqttsec.Revalidator.
func (c certRouter) Revalidate(ctx context.Context, cl *mqttsec.Client) error {
	if x := c[cl.Listener]; x != nil {
		return x.Revalidate(ctx, cl)
	}
	return mqttsec.ErrAbstain
}

// Reload reads every file again now, as SIGHUP asks: the password file,
// the TLS material of every listener, the policy files and the JWT key
// files. What changed is swapped in and reported to the Guard (which
// revalidates live sessions); a file that fails keeps its previous
// content in force, and the errors are returned joined.
func (r *Runtime) Reload() error {
	var errs []error
	if r.pwWatch != nil {
		errs = append(errs, r.pwWatch.Reload())
	}
	for _, t := range r.tls {
		if t != nil {
			errs = append(errs, t.Reload())
		}
	}
	if r.enforcer != nil && len(r.aclWatch) > 0 {
		err := r.enforcer.LoadPolicy()
		file := r.f.Path(cmpOr(r.f.ACL.ACLFile, r.f.ACL.CasbinPolicy))
		r.aclReloaded(file, err)
		errs = append(errs, err)
	}
	errs = append(errs, r.reloadJWT())
	if r.f.RateLimit != nil && r.f.RateLimit.BansFile != "" {
		file := r.f.Path(r.f.RateLimit.BansFile)
		if err := r.limiter.Bans().Load(r.ctx); err != nil {
			r.g.Event(mqttsec.Event{Kind: mqttsec.EventReloadFailed, Source: "bans", File: file, Err: err})
			errs = append(errs, err)
		} else {
			r.g.Event(mqttsec.Event{Kind: mqttsec.EventReload, Source: "bans", File: file})
			// Loading a ban list ends no session by itself: end those a
			// new ban covers, as Bans.Add does.
			bans := r.limiter.Bans()
			r.g.Kick(func(s *mqttsec.Session) bool { return bans.Check(s.Client()) != nil }, mqttsec.CodeBanned)
		}
	}
	return errors.Join(errs...)
}

// Close stops the watchers and the metrics endpoint. The Guard keeps its
// last parts. Close the broker first. It is safe to call more than once.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	var errs []error
	for _, w := range r.aclWatch {
		errs = append(errs, w.Close())
	}
	if r.pwWatch != nil {
		errs = append(errs, r.pwWatch.Close())
	}
	if r.jwt != nil {
		errs = append(errs, r.jwt.Close())
	}
	for _, t := range r.tls {
		if t != nil {
			errs = append(errs, t.Close())
		}
	}
	if r.metrics != nil {
		errs = append(errs, r.metrics.close())
	}
	errs = append(errs, r.closeRedis())
	return errors.Join(errs...)
}
