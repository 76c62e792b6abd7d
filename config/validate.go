package config

import (
	"errors"

	"fmt"
	"github.com/mqttsec/mqttsec/clientid"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// validate checks the file's values and their combinations without
// reading any other file, and returns every problem found.
func (f *File) validate() error {
	var errs []error
	add := func(err error, path ...any) { errs = append(errs, f.errAt(err, path...)) }

	if len(f.Listeners) == 0 {
		add(wrapf(ErrInvalid, "at least one listener is required"), "listeners")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	clientCerts := false
	for i, l := range f.Listeners {
		if err := validAddress(l.Address); err != nil {
			add(err, "listeners", i, "address")
		} else if j, dup := addrs[l.Address]; dup && portOf(l.Address) != "0" {
			add(wrapf(ErrInvalid, "address %q is also listeners[%d]'s", l.Address, j), "listeners", i, "address")
		} else {
			addrs[l.Address] = i
		}
		name := f.ListenerName(i)
		if !validName(name) {
			add(wrapf(ErrInvalid, "name %q: use letters, digits, '-', '_' and '.' (at most 64)", name), "listeners", i, "name")
		} else if j, dup := names[name]; dup {
			add(wrapf(ErrInvalid, "name %q is also listeners[%d]'s", name, j), "listeners", i, "name")
		} else {
			names[name] = i
		}
		if l.TLS == nil {
			if l.Address != "" && !isLoopback(l.Address) && !l.InsecurePlaintext {
				add(wrapf(ErrInsecure, "plaintext listener on the non-loopback address %q: passwords and messages would cross the network in clear; add tls (cert_file, key_file), use a loopback address, or set insecure_plaintext: true", l.Address), "listeners", i, "address")
			}
			continue
		}
		t := l.TLS
		if t.CertFile == "" {
			add(wrapf(ErrInvalid, "cert_file is required"), "listeners", i, "tls")
		}
		if t.KeyFile == "" {
			add(wrapf(ErrInvalid, "key_file is required"), "listeners", i, "tls")
		}
		switch t.ClientAuth {
		case "", "none", "optional", "required":
		default:
			add(wrapf(ErrInvalid, "client_auth %q: use none, optional or required", t.ClientAuth), "listeners", i, "tls", "client_auth")
		}
		if t.ClientCAFile == "" && (t.ClientAuth == "optional" || t.ClientAuth == "required") {
			add(wrapf(ErrInvalid, "client_auth %q needs client_ca_file", t.ClientAuth), "listeners", i, "tls", "client_auth")
		}
		if t.ClientCAFile != "" && t.ClientAuth == "none" {
			add(wrapf(ErrInvalid, "client_ca_file with client_auth none: the CA would never be used; remove one"), "listeners", i, "tls", "client_ca_file")
		}
		if t.ClientCAFile == "" && len(t.CRLFiles) > 0 {
			add(wrapf(ErrInvalid, "crl_files need client_ca_file"), "listeners", i, "tls", "crl_files")
		}
		if len(t.AllowedNames) > 0 && t.effectiveClientAuth() != "required" {
			add(wrapf(ErrInvalid, "allowed_names need client_auth required"), "listeners", i, "tls", "allowed_names")
		}
		switch t.MinVersion {
		case "", "1.2", "1.3":
		default:
			add(wrapf(ErrInvalid, "min_version %q: use 1.2 or 1.3", t.MinVersion), "listeners", i, "tls", "min_version")
		}
		if l.Websocket && t.ClientCAFile != "" {
			add(wrapf(ErrInvalid, "client certificates are not available on a websocket listener: mochi's websocket connections hide the TLS state from the broker, and a browser would present its certificate to any web page's connection"), "listeners", i, "tls", "client_ca_file")
		}
		if t.ClientCAFile != "" {
			clientCerts = true
		}
	}

	// Authentication.
	a := f.Auth
	if !a.Anonymous && a.PasswordFile == "" && a.Certificate == nil && a.JWT == nil {
		add(wrapf(ErrInvalid, "no authentication method: set password_file, certificate, jwt or anonymous (every CONNECT would be refused)"), "auth")
	}
	if a.Certificate != nil {
		switch a.Certificate.UsernameFrom {
		case "", "cn", "san-dns", "san-email", "san-uri", "fingerprint":
		default:
			add(wrapf(ErrInvalid, "username_from %q: use cn, san-dns, san-email, san-uri or fingerprint", a.Certificate.UsernameFrom), "auth", "certificate", "username_from")
		}
		if a.Certificate.URIPrefix != "" && a.Certificate.UsernameFrom != "san-uri" {
			add(wrapf(ErrInvalid, "uri_prefix needs username_from san-uri"), "auth", "certificate", "uri_prefix")
		}
		if !clientCerts {
			add(wrapf(ErrInvalid, "certificate authentication needs a TLS listener with client_ca_file"), "auth", "certificate")
		}
	}
	if j := a.JWT; j != nil {
		if len(j.Algorithms) == 0 {
			add(wrapf(ErrInvalid, "algorithms is required"), "auth", "jwt")
		}
		if j.HMACSecretFile == "" && j.HMACSecretEnv == "" && j.PublicKeyFile == "" && j.JWKSURL == "" {
			add(wrapf(ErrInvalid, "no key: set hmac_secret_file, hmac_secret_env, public_key_file or jwks_url"), "auth", "jwt")
		}
		if j.HMACSecretFile != "" && j.HMACSecretEnv != "" {
			add(wrapf(ErrInvalid, "hmac_secret_file and hmac_secret_env exclude each other"), "auth", "jwt", "hmac_secret_env")
		}
		if j.Audience == "" && !j.InsecureAnyAudience {
			add(wrapf(ErrInvalid, "audience is required (this broker's name at the issuer), or set insecure_any_audience: true"), "auth", "jwt")
		}
		if j.Issuer == "" && !j.InsecureAnyIssuer && (j.PublicKeyFile != "" || j.JWKSURL != "") {
			add(wrapf(ErrInvalid, "issuer is required with public keys or a JWKS, or set insecure_any_issuer: true"), "auth", "jwt")
		}
		for _, d := range []struct {
			key string
			v   time.Duration
		}{{"jwks_refresh", j.JWKSRefresh}} {
			if d.v < 0 {
				add(wrapf(ErrInvalid, "negative duration"), "auth", "jwt", d.key)
			}
		}
		if j.MaxTokenSize < 0 {
			add(wrapf(ErrInvalid, "negative size"), "auth", "jwt", "max_token_size")
		}
	}
	if a.Anonymous {
		for i, l := range f.Listeners {
			if l.TLS == nil && l.Address != "" && !isLoopback(l.Address) && !a.InsecureAnonymousPlaintext {
				add(wrapf(ErrInsecure, "anonymous access with the plaintext listener listeners[%d] on the non-loopback address %q: anyone on the network could connect unauthenticated; set insecure_anonymous_plaintext: true to accept", i, l.Address), "auth", "anonymous")
			}
			if l.Websocket && !l.InsecureAnyOrigin {
				add(wrapf(ErrInsecure, "anonymous access with the websocket listener listeners[%d]: any web page a user opens could connect through the browser; set insecure_any_origin: true on the listener to accept", i), "auth", "anonymous")
			}
		}
	}

	// Authorization.
	acl := f.ACL
	switch acl.Grants {
	case "", "narrow", "widen", "ignore":
	default:
		add(wrapf(ErrInvalid, "grants %q: use narrow, widen or ignore", acl.Grants), "acl", "grants")
	}
	if acl.ACLFile == "" && acl.CasbinPolicy == "" && (a.JWT == nil || !a.JWT.ACLClaim || acl.Grants != "widen") {
		add(wrapf(ErrInvalid, "no rules: set acl_file or casbin_policy (or auth.jwt.acl_claim with grants: widen); without rules every publish and subscribe would be denied"), "acl")
	}
	if acl.Wildcard.MinLevels < 0 {
		add(wrapf(ErrInvalid, "negative min_levels"), "acl", "wildcard", "min_levels")
	}

	// Sections whose packages this build does not have.
	if c := f.ClientID; c != nil {
		if _, err := clientid.ParseTakeover(cmpOr(c.Takeover, "owner")); err != nil {
			add(wrapf(ErrInvalid, "takeover %q: use owner, deny or allow", c.Takeover), "clientid", "takeover")
		}
		if c.MinLength < 0 || c.MaxLength < 0 || c.MaxLength > clientid.MaxLen || (c.MaxLength > 0 && c.MinLength > c.MaxLength) {
			add(wrapf(ErrInvalid, "min_length and max_length must satisfy 0 <= min_length <= max_length <= %d", clientid.MaxLen), "clientid", "max_length")
		} else if _, err := f.clientIDPolicy(); err != nil {
			add(wrapf(ErrInvalid, "%w", err), "clientid", "pattern")
		}
		for i, tmpl := range c.Bind {
			if _, err := clientid.ParseTemplate(tmpl); err != nil {
				add(wrapf(ErrInvalid, "%w", err), "clientid", "bind", i)
			}
		}
		if c.MaxIDs < 0 {
			add(wrapf(ErrInvalid, "negative max_ids"), "clientid", "max_ids")
		}
	}
	if r := f.RateLimit; r != nil {
		for _, rt := range []struct {
			key string
			r   *Rate
		}{{"connect_per_ip", r.ConnectPerIP}, {"connect", r.Connect}, {"publish", r.Publish}, {"bytes", r.Bytes},
			{"subscribe", r.Subscribe}, {"flood", r.Flood}} {
			if rt.r != nil && !rt.r.valid() {
				add(wrapf(ErrInvalid, "rate must be positive and burst at least 1"), "ratelimit", rt.key)
			}
		}
		if r.MaxPayload < 0 || r.MaxPayload > maxPacket {
			add(wrapf(ErrInvalid, "max_payload must be between 0 and %d", maxPacket), "ratelimit", "max_payload")
		}
		for _, fl := range []struct {
			key string
			f   *Failures
		}{{"auth_failures", r.AuthFailures}, {"user_failures", r.UserFailures}} {
			if fl.f == nil {
				continue
			}
			if fl.f.Ban < 0 || fl.f.MaxBan < 0 || fl.f.Slow < 0 || fl.f.Forget < 0 || (fl.f.MaxBan > 0 && fl.f.MaxBan < fl.f.Ban) {
				add(wrapf(ErrInvalid, "durations must be positive, and max_ban at least ban"), "ratelimit", fl.key)
			}
			if fl.f.Max == 1 && fl.f.SlowAfter == 0 {
				add(wrapf(ErrInvalid, "max must be at least 2 (the first failure slows the address, the next bans it)"), "ratelimit", fl.key, "max")
			}
			if fl.f.Max > 0 && fl.f.SlowAfter > 0 && fl.f.Max <= fl.f.SlowAfter {
				add(wrapf(ErrInvalid, "max must be above slow_after"), "ratelimit", fl.key, "max")
			}
		}
		if fp := r.Flapping; fp != nil && (fp.Window < 0 || fp.Ban < 0 || fp.MaxBan < 0) {
			add(wrapf(ErrInvalid, "durations must be positive"), "ratelimit", "flapping")
		}
		if r.IPv6Prefix < 0 || r.IPv6Prefix > 128 {
			add(wrapf(ErrInvalid, "ipv6_prefix must be between 1 and 128"), "ratelimit", "ipv6_prefix")
		}
		if v := r.Verification; v != nil && (v.MaxConcurrent < 0 || v.MaxQueue < 0 || v.PerIP < 0 || v.MaxWait < 0 ||
			math.IsNaN(v.CPU) || math.IsInf(v.CPU, 0)) {
			add(wrapf(ErrInvalid, "negative value"), "ratelimit", "verification")
		}
	}
	f.validateBridges(add)
	if r := f.Redis; r != nil {
		if err := validAddress(r.Address); err != nil {
			add(err, "redis", "address")
		} else if r.TLS == nil && !isLoopback(r.Address) && !r.InsecurePlaintext {
			add(wrapf(ErrInsecure, "Redis at the non-loopback address %q without TLS: whoever can read or write the traffic can end sessions and bind client IDs; add tls, or set insecure_plaintext: true", r.Address), "redis", "address")
		}
		if r.DB < 0 || r.Timeout < 0 || r.LeaseTTL < 0 {
			add(wrapf(ErrInvalid, "negative value"), "redis")
		}
		if t := r.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
			add(wrapf(ErrInvalid, "cert_file and key_file go together"), "redis", "tls")
		}
		if f.RateLimit != nil && f.RateLimit.BansFile != "" {
			add(wrapf(ErrInvalid, "bans_file with redis: the cluster's ban list lives in Redis; remove bans_file"), "ratelimit", "bans_file")
		}
	}
	// Broker bounds.
	b := f.Broker
	if b.MaxPacketSize < 0 || b.MaxPacketSize > maxPacket {
		add(wrapf(ErrInvalid, "max_packet_size must be between 0 and %d", maxPacket), "broker", "max_packet_size")
	} else if b.MaxPacketSize > 0 && b.MaxPacketSize <= f.MaxPayload() {
		add(wrapf(ErrInvalid, "max_packet_size %d does not leave room for a payload of max_payload %d bytes and its topic", b.MaxPacketSize, f.MaxPayload()), "broker", "max_packet_size")
	}
	if b.MaxSessionExpiry < 0 || b.MaxSessionExpiry > math.MaxUint32*time.Second {
		add(wrapf(ErrInvalid, "max_session_expiry must be between 0 and %s", time.Duration(math.MaxUint32)*time.Second), "broker", "max_session_expiry")
	}
	for _, v := range []struct {
		key string
		n   int
	}{{"max_clients", b.MaxClients}, {"max_connect_size", b.MaxConnectSize}, {"max_pending", b.MaxPending}, {"max_pending_per_ip", b.MaxPendingPerIP}} {
		if v.n < 0 {
			add(wrapf(ErrInvalid, "negative value"), "broker", v.key)
		}
	}
	if b.ConnectTimeout < 0 {
		add(wrapf(ErrInvalid, "negative duration"), "broker", "connect_timeout")
	}
	if b.MaxTopicLevels < 0 {
		add(wrapf(ErrInvalid, "negative value"), "broker", "max_topic_levels")
	}

	switch f.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		add(wrapf(ErrInvalid, "level %q: use debug, info, warn or error", f.Log.Level), "log", "level")
	}
	switch f.Log.Format {
	case "", "json", "text":
	default:
		add(wrapf(ErrInvalid, "format %q: use json or text", f.Log.Format), "log", "format")
	}
	if m := f.Metrics; m != nil {
		if err := validAddress(m.Address); err != nil {
			add(err, "metrics", "address")
		} else if !isLoopback(m.Address) && !m.InsecurePublic {
			add(wrapf(ErrInsecure, "metrics on the non-loopback address %q: the endpoint has no TLS nor authentication; use a loopback address (and a proxy), or set insecure_public: true", m.Address), "metrics", "address")
		}
	}
	return errors.Join(errs...)
}

// maxPacket is the largest packet MQTT can carry (256 MiB).
const maxPacket = 268435455

// MaxPayload returns the payload limit in bytes: ratelimit.max_payload, or
// [DefaultMaxPayload].
func (f *File) MaxPayload() int {
	if f.RateLimit != nil && f.RateLimit.MaxPayload > 0 {
		return f.RateLimit.MaxPayload
	}
	return DefaultMaxPayload
}

// MaxPacketSize returns the packet size limit in bytes: broker.max_packet_size,
// or the payload limit plus 128 KiB.
func (f *File) MaxPacketSize() int {
	if f.Broker.MaxPacketSize > 0 {
		return f.Broker.MaxPacketSize
	}
	return min(f.MaxPayload()+128<<10, maxPacket)
}

// ListenerName returns the name of listener i: its name, or its kind and
// index ("tls-1").
func (f *File) ListenerName(i int) string {
	l := f.Listeners[i]
	if l.Name != "" {
		return l.Name
	}
	kind := "tcp"
	switch {
	case l.Websocket && l.TLS != nil:
		kind = "wss"
	case l.Websocket:
		kind = "ws"
	case l.TLS != nil:
		kind = "tls"
	}
	return kind + "-" + strconv.Itoa(i)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validAddress checks a "host:port" address.
func validAddress(addr string) error {
	if addr == "" {
		return wrapf(ErrInvalid, "address is required (host:port)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return wrapf(ErrInvalid, "address %q: not host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return wrapf(ErrInvalid, "address %q: port must be a number from 0 to 65535", addr)
	}
	if strings.ContainsAny(host, " \t/\\%") {
		return wrapf(ErrInvalid, "address %q: invalid host", addr)
	}
	return nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// isLoopback reports whether addr listens on a loopback address only:
// an IP of 127.0.0.0/8 or ::1, or "localhost". An empty host (every
// interface) and other names are not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback() && ip.Zone() == ""
}

// Insecure returns the insecure_... switches the file sets, each as
// "key: what it accepts", in file order. They are logged at warn level on
// every start.
func (f *File) Insecure() []string {
	var out []string
	add := func(key, what string) { out = append(out, fmt.Sprintf("%s: %s", key, what)) }
	for i, l := range f.Listeners {
		if l.InsecurePlaintext {
			add(fmt.Sprintf("listeners[%d].insecure_plaintext", i), "plaintext listener on "+strconv.Quote(l.Address)+": credentials and messages are not encrypted")
		}
		if l.InsecureAnyOrigin {
			add(fmt.Sprintf("listeners[%d].insecure_any_origin", i), "web pages of any origin may connect through a browser")
		}
	}
	if m := f.Metrics; m != nil && m.InsecurePublic {
		add("metrics.insecure_public", "metrics served without TLS or authentication on "+strconv.Quote(m.Address))
	}
	if f.Auth.InsecureAnonymousPlaintext {
		add("auth.insecure_anonymous_plaintext", "anonymous clients on a plaintext network listener")
	}
	if j := f.Auth.JWT; j != nil {
		if j.InsecureJWKSHTTP {
			add("auth.jwt.insecure_jwks_http", "the JWK Set is fetched without TLS")
		}
		if j.InsecureAnyIssuer {
			add("auth.jwt.insecure_any_issuer", "tokens of any issuer are accepted")
		}
		if j.InsecureAnyAudience {
			add("auth.jwt.insecure_any_audience", "tokens for any audience are accepted")
		}
	}
	if f.ClientID != nil && f.ClientID.Takeover == "allow" {
		add("clientid.takeover", "allow: any user may take over another device's session")
	}
	if r := f.RateLimit; r != nil {
		if r.MaxConnectionsPerIP < 0 {
			add("ratelimit.max_connections_per_ip", "a negative value lifts the cap on connections per address")
		}
		if r.MaxConnectionsPerUser < 0 {
			add("ratelimit.max_connections_per_user", "a negative value lifts the cap on connections per user")
		}
		for _, fl := range []struct {
			key string
			f   *Failures
		}{{"auth_failures", r.AuthFailures}, {"user_failures", r.UserFailures}} {
			if fl.f != nil && (fl.f.Max < 0 || fl.f.SlowAfter < 0) {
				add("ratelimit."+fl.key, "a negative value turns off the throttling of failed logins")
			}
		}
		if r.Flapping != nil && r.Flapping.Max < 0 {
			add("ratelimit.flapping.max", "a negative value turns off the bans of flapping client IDs")
		}
		if r.Verification != nil && r.Verification.CPU < 0 {
			add("ratelimit.verification.cpu", "a negative value lifts the CPU budget of credential verifications")
		}
	}
	if l := f.Limits; l != nil {
		for _, v := range l.fields() {
			if v.lifted {
				add("limits."+v.key, "a negative value lifts this memory bound")
			}
		}
	}
	for i, b := range f.Bridges {
		for _, fd := range b.Findings() {
			add(fmt.Sprintf("bridges[%d]", i), fd.Message)
		}
	}
	if r := f.Redis; r != nil {
		if r.InsecurePlaintext {
			add("redis.insecure_plaintext", "the cluster's state crosses the network to Redis in clear")
		}
		if r.InsecureFailOpen {
			add("redis.insecure_fail_open", "CONNECTs are admitted while Redis is unreachable")
		}
	}
	if f.InsecureFilePermissions {
		add("insecure_file_permissions", "files others may read or change are accepted")
	}
	return slices.Clip(out)
}

// effectiveClientAuth returns ClientAuth with its default applied:
// "required" with a client CA, "none" without.
func (t *ListenerTLS) effectiveClientAuth() string {
	switch {
	case t.ClientAuth != "":
		return t.ClientAuth
	case t.ClientCAFile != "":
		return "required"
	}
	return "none"
}

type limitField struct {
	key    string
	lifted bool
}

// fields lists the keys of the section whose values are negative.
func (l *Limits) fields() []limitField {
	out := []limitField{
		{"retained_per_user", l.RetainedPerUser < 0}, {"retained_bytes_per_user", l.RetainedBytesPerUser < 0},
		{"retained", l.Retained < 0}, {"retained_bytes", l.RetainedBytes < 0},
		{"sessions_per_user", l.SessionsPerUser < 0}, {"sessions", l.Sessions < 0},
		{"drop_qos0_backlog", l.DropQoS0Backlog < 0}, {"client_backlog", l.ClientBacklog < 0},
		{"user_backlog", l.UserBacklog < 0}, {"outbound", l.Outbound < 0},
		{"queued_messages", l.QueuedMessages < 0}, {"queued_bytes", l.QueuedBytes < 0},
		{"subscriptions", l.Subscriptions < 0}, {"subscription_bytes", l.SubscriptionBytes < 0},
		{"filters_per_subscribe", l.FiltersPerSubscribe < 0}, {"topic_length", l.TopicLength < 0},
		{"property_bytes", l.PropertyBytes < 0}, {"inflight", l.Inflight < 0},
		{"writes_pending", l.WritesPending < 0}, {"topic_aliases", l.TopicAliases < 0},
		{"write_stall", l.WriteStall < 0}, {"write_timeout", l.WriteTimeout < 0},
		{"max_keepalive", l.MaxKeepAlive < 0}, {"inbound_budget", l.InboundBudget < 0},
		{"packet_timeout", l.PacketTimeout < 0},
	}
	return out
}

func (r *Rate) valid() bool {
	return r.Rate > 0 && !math.IsInf(r.Rate, 0) && !math.IsNaN(r.Rate) && r.Burst >= 1 && time.Duration(float64(time.Second)/r.Rate) > 0
}
