package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mqttsec/mqttsec/bridge"
)

// MaxFileSize is the largest configuration file [Load] reads.
const MaxFileSize = 1 << 20

// File is an mqttsec configuration file: the listeners of a broker and the
// parts of the [mqttsec.Guard] that decides for them. The zero value of
// each field is its documented default; every default is the secure choice.
// Relative paths in a File are taken from the folder of the file itself
// (not the working directory), so a file and the files it names can move
// together.
//
// A File is a plain value; [File.Open] does not modify it.
type File struct {
	// Listeners are the broker's network listeners; at least one.
	Listeners []Listener `yaml:"listeners"`
	// Auth says how clients authenticate.
	Auth Auth `yaml:"auth"`
	// ACL says what authenticated clients may publish and subscribe to.
	ACL ACL `yaml:"acl"`
	// ClientID is the client-ID policy and takeover mode.
	ClientID *ClientID `yaml:"clientid,omitempty"`
	// RateLimit bounds rates and message sizes.
	RateLimit *RateLimit `yaml:"ratelimit,omitempty"`
	// Limits are per-subject and broker-wide quotas.
	Limits *Limits `yaml:"limits,omitempty"`
	// Bridges connect this broker to others (bridge.Config: the keys are
	// its yaml tags; relative paths are taken from this file's folder).
	// They run inside the broker ([Runtime.Server]), each an MQTT client of
	// it on an in-memory listener, authenticated as "bridge:NAME" and
	// allowed exactly what its mappings need (bridge.Config.LocalGrants).
	Bridges []bridge.Config `yaml:"bridges,omitempty"`
	// Redis holds state shared by several brokers.
	Redis *Redis `yaml:"redis,omitempty"`
	// Broker bounds what the broker keeps and accepts.
	Broker Broker `yaml:"broker,omitempty"`
	// Log is the log and security-event output.
	Log Log `yaml:"log,omitempty"`
	// Metrics, when set, serves Prometheus metrics.
	Metrics *Metrics `yaml:"metrics,omitempty"`
	// InsecureFilePermissions accepts files that others may read (secrets)
	// or change: see [File.Check]. Leave it false.
	InsecureFilePermissions bool `yaml:"insecure_file_permissions,omitempty"`

	name   string     // the file's name, for messages
	dir    string     // the folder relative paths are taken from
	root   *yaml.Node // the document, for line numbers
	loaded bool       // name is the file Load read
}

// Listener is one network listener.
type Listener struct {
	// Name identifies the listener in logs and events (mqttsec.Client's
	// Listener). Empty means "tcp-N", "tls-N", "ws-N" or "wss-N", N being
	// its index. Names are unique.
	Name string `yaml:"name,omitempty"`
	// Address is "host:port". A plaintext listener (no TLS) must be on a
	// loopback address (127.0.0.0/8, ::1, localhost) unless
	// InsecurePlaintext is set; an empty host means every interface.
	Address string `yaml:"address"`
	// TLS, when set, makes the listener TLS (or wss).
	TLS *ListenerTLS `yaml:"tls,omitempty"`
	// Websocket serves MQTT over WebSocket (ws, or wss with TLS) instead of
	// raw TCP.
	Websocket bool `yaml:"websocket,omitempty"`
	// InsecurePlaintext accepts a plaintext listener on a non-loopback
	// address: passwords, tokens and messages cross the network readable
	// and modifiable by anyone on the path. Leave it false.
	InsecurePlaintext bool `yaml:"insecure_plaintext,omitempty"`
	// InsecureAnyOrigin accepts a websocket listener together with
	// anonymous access. The websocket listener accepts connections from
	// web pages of any origin, so any page a local user opens can talk
	// to the broker in the name of that browser (cross-site WebSocket
	// hijacking). Leave it false.
	InsecureAnyOrigin bool `yaml:"insecure_any_origin,omitempty"`
}

// ListenerTLS is the TLS side of a listener, built with package tlsconf:
// TLS 1.2 or later, AEAD suites only, files reloaded when they change.
type ListenerTLS struct {
	// CertFile and KeyFile are the server's PEM certificate chain (leaf
	// first) and private key. Required. The key file must not be
	// readable by others.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile is a PEM bundle of the CAs that sign client
	// certificates. With it, client certificates are verified (CA,
	// revocation lists, AllowedNames) and can authenticate clients (see
	// [Auth].Certificate).
	ClientCAFile string `yaml:"client_ca_file,omitempty"`
	// ClientAuth is "none", "optional" (a certificate is verified when the
	// client sends one) or "required". Empty means "required" with a
	// ClientCAFile and "none" without; "optional" and "required" need a
	// ClientCAFile.
	ClientAuth string `yaml:"client_auth,omitempty"`
	// CRLFiles are certificate revocation lists signed by a CA of
	// ClientCAFile; a client whose chain holds a listed certificate is
	// refused, and disconnected when a reloaded list revokes it.
	CRLFiles []string `yaml:"crl_files,omitempty"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `yaml:"min_version,omitempty"`
	// AllowedNames, when set, are the only client certificate names
	// accepted (needs ClientAuth "required").
	AllowedNames []string `yaml:"allowed_names,omitempty"`
}

// Auth configures authentication. The methods are tried in this order: a
// client certificate, a JWT (a password that has the shape of a token), a
// user name and password, then anonymous access; the first that applies
// decides. At least one method must be set.
type Auth struct {
	// Anonymous lets a client that sends no user name, no password and no
	// certificate connect, with no user name: in an acl_file, the rules
	// before the first "user" line apply to it. It is refused together
	// with a plaintext listener on a non-loopback address unless
	// InsecureAnonymousPlaintext is set, and together with a websocket
	// listener unless that listener sets insecure_any_origin.
	Anonymous bool `yaml:"anonymous,omitempty"`
	// PasswordFile is a password file in Mosquitto's format
	// (mosquitto_passwd or `mqttsec passwd` write it), reloaded when it
	// changes: a user removed or given a new password is disconnected.
	// It must not be readable by others.
	PasswordFile string `yaml:"password_file,omitempty"`
	// Certificate names clients by their verified TLS client certificate,
	// on the listeners with a client_ca_file.
	Certificate *Certificate `yaml:"certificate,omitempty"`
	// JWT verifies JSON Web Tokens sent as the password.
	JWT *JWT `yaml:"jwt,omitempty"`
	// InsecureAnonymousPlaintext accepts Anonymous together with a
	// plaintext listener on a non-loopback address: anyone on the network
	// may connect and read what the anonymous rules allow. Leave it false.
	InsecureAnonymousPlaintext bool `yaml:"insecure_anonymous_plaintext,omitempty"`
}

// Certificate configures authentication by client certificate (auth.X509).
type Certificate struct {
	// UsernameFrom is the certificate field that names the client: "cn"
	// (the default), "san-dns", "san-email", "san-uri" or "fingerprint"
	// (SHA-256, lower-case hex).
	UsernameFrom string `yaml:"username_from,omitempty"`
	// URIPrefix restricts "san-uri" to URIs with this prefix
	// ("spiffe://example.org/").
	URIPrefix string `yaml:"uri_prefix,omitempty"`
	// Pins, when set, are the only leaf certificate SHA-256 fingerprints
	// accepted.
	Pins []string `yaml:"pins,omitempty"`
	// MatchUsername requires a non-empty CONNECT user name to equal the
	// certificate's name.
	MatchUsername bool `yaml:"match_username,omitempty"`
}

// JWT configures token authentication (auth.JWTConfig; the keys are those
// of its yaml tags, plus the key files).
type JWT struct {
	// Algorithms is the allow-list of signing algorithms ("ES256",
	// "EdDSA", "RS256", "HS256", ...). Required.
	Algorithms []string `yaml:"algorithms"`
	// HMACSecretFile holds the HS* secret (a final newline is removed); it
	// must not be readable by others. HMACSecretEnv names an environment
	// variable holding it instead.
	HMACSecretFile string `yaml:"hmac_secret_file,omitempty"`
	HMACSecretEnv  string `yaml:"hmac_secret_env,omitempty"`
	// PublicKeyFile holds PEM public keys or certificates that verify
	// tokens.
	PublicKeyFile string `yaml:"public_key_file,omitempty"`
	// JWKSURL is a JWK Set URL (https, or http to a loopback address),
	// refreshed every JWKSRefresh.
	JWKSURL          string        `yaml:"jwks_url,omitempty"`
	InsecureJWKSHTTP bool          `yaml:"insecure_jwks_http,omitempty"`
	JWKSRefresh      time.Duration `yaml:"jwks_refresh,omitempty"`
	// Issuer must equal the "iss" claim; required with public keys or a
	// JWKS unless InsecureAnyIssuer.
	Issuer            string `yaml:"issuer,omitempty"`
	InsecureAnyIssuer bool   `yaml:"insecure_any_issuer,omitempty"`
	// Audience must be in the "aud" claim; required unless
	// InsecureAnyAudience.
	Audience            string `yaml:"audience,omitempty"`
	InsecureAnyAudience bool   `yaml:"insecure_any_audience,omitempty"`
	// Leeway is the clock skew allowed; zero means auth.DefaultLeeway.
	Leeway time.Duration `yaml:"leeway,omitempty"`
	// SubjectClaim names the claim that names the client ("sub").
	SubjectClaim string `yaml:"subject_claim,omitempty"`
	// MatchClientID compares the subject with the client ID instead of the
	// user name.
	MatchClientID bool `yaml:"match_client_id,omitempty"`
	// RolesClaim names a claim holding the client's roles.
	RolesClaim string `yaml:"roles_claim,omitempty"`
	// ACLClaim reads an EMQX-style "acl" claim into grants (see
	// [ACL].Grants).
	ACLClaim bool `yaml:"acl_claim,omitempty"`
	// MaxTokenSize and CacheSize are those of auth.JWTConfig.
	MaxTokenSize int `yaml:"max_token_size,omitempty"`
	CacheSize    int `yaml:"cache_size,omitempty"`
}

// ACL configures authorization. Rules come from an acl_file, a Casbin
// policy, or both: both are loaded into one policy of model acl.Model, in
// which a request is allowed when some allow rule of either file matches
// it and no deny rule of either does (deny wins). Each file is reloaded
// when it changes.
type ACL struct {
	// ACLFile is a Mosquitto acl_file (topic, user and pattern lines; the
	// topic lines before the first user line are for anonymous clients).
	ACLFile string `yaml:"acl_file,omitempty"`
	// CasbinPolicy is a Casbin CSV policy for acl.Model ("p, alice,
	// devices/%u/#, readwrite, allow"; "g, alice, operators").
	CasbinPolicy string `yaml:"casbin_policy,omitempty"`
	// Wildcard limits broad wildcard subscriptions.
	Wildcard Wildcard `yaml:"wildcard,omitempty"`
	// Grants says how the rules a token carries (auth.jwt.acl_claim)
	// combine with the files: "narrow" (the default: a token can only
	// take rights away), "widen" (a token's matching rule decides) or
	// "ignore".
	Grants string `yaml:"grants,omitempty"`
}

// Wildcard limits wildcard subscriptions before the rules are asked
// (acl.WildcardPolicy). Subscriptions to $SYS are refused except for
// SysSubjects.
type Wildcard struct {
	// DenyRootWildcards refuses filters that start with a wildcard ("#",
	// "+/#", "+/status") for everyone but Admins. Unset means true.
	DenyRootWildcards *bool `yaml:"deny_root_wildcards,omitempty"`
	// MinLevels, when above 1, requires that many literal levels before
	// the first wildcard ("site/+/#" needs 2).
	MinLevels int `yaml:"min_levels,omitempty"`
	// Admins are exempt from the wildcard limits (user names, certificate
	// or token subjects, or roles).
	Admins []string `yaml:"admins,omitempty"`
	// SysSubjects may subscribe to $SYS topics.
	SysSubjects []string `yaml:"sys_subjects,omitempty"`
}

// ClientID configures the client-ID policy (package clientid), applied
// before authentication, the binding of client IDs to identities, and what
// happens when a second connection uses a client ID that is in use. Without
// the section the defaults apply: IDs of 1 to 128 characters of
// clientid.DefaultChars, no binding, takeover by the owner only.
type ClientID struct {
	// Takeover is "owner" (the default: only the identity holding the ID
	// may take over its connection or resume its kept session), "deny"
	// (no second connection while one is live, even of the owner) or
	// "allow" (MQTT's rule: anyone may take over; insecure, logged at warn
	// on every start).
	Takeover string `yaml:"takeover,omitempty"`
	// MinLength and MaxLength bound client IDs, in bytes; zero means
	// clientid.DefaultMinLen and clientid.DefaultMaxLen.
	MinLength int `yaml:"min_length,omitempty"`
	MaxLength int `yaml:"max_length,omitempty"`
	// Pattern is a regular expression a client ID must match entirely,
	// instead of clientid.DefaultChars. '/', '+', '#', a leading '$' and
	// control characters stay refused whatever it says.
	Pattern string `yaml:"pattern,omitempty"`
	// Bind, when set, are templates that tie client IDs to identities:
	// "{username}-*" lets alice use "alice-phone" only, "{cn}" a device
	// only the common name of its certificate (see clientid.Template).
	Bind []string `yaml:"bind,omitempty"`
	// MaxIDs bounds the client IDs bound at once, live or kept; zero means
	// no bound beyond the broker's max_clients and session expiry.
	MaxIDs int `yaml:"max_ids,omitempty"`
}

// Rate is a token bucket: Rate events per second on average, bursts of up
// to Burst. Rate must be positive and Burst at least 1.
type Rate struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
}

// Failures throttles, then bans, a key (an address or a user name) whose
// logins fail (ratelimit.Throttle): from SlowAfter failures on it gets one
// attempt per Slow, at Max failures it is banned for Ban, twice as long at
// each new ban up to MaxBan; one failure is forgotten per Forget. Zero
// fields have ratelimit's defaults (per address: slowed after 5, banned
// after 10 for 1 minute, up to 24 hours; per user name: slowed after 20,
// banned after 100, up to 1 hour). With Max at or below the default
// SlowAfter and SlowAfter unset, SlowAfter is Max - 1.
type Failures struct {
	Max       int           `yaml:"max,omitempty"`
	Ban       time.Duration `yaml:"ban,omitempty"`
	MaxBan    time.Duration `yaml:"max_ban,omitempty"`
	SlowAfter int           `yaml:"slow_after,omitempty"`
	Slow      time.Duration `yaml:"slow,omitempty"`
	Forget    time.Duration `yaml:"forget,omitempty"`
}

// Flapping bans a client ID whose connections end more than Max times
// within Window, for Ban, doubling up to MaxBan. Zero fields have
// ratelimit's defaults (15 within a minute, 5 minutes, up to 1 hour).
type Flapping struct {
	Max    int           `yaml:"max,omitempty"`
	Window time.Duration `yaml:"window,omitempty"`
	Ban    time.Duration `yaml:"ban,omitempty"`
	MaxBan time.Duration `yaml:"max_ban,omitempty"`
}

// Verification bounds the credential verifications (password hashes) that
// run at once, so that a storm of logins leaves the broker its CPU
// (ratelimit.Gate). Zero fields have ratelimit's defaults.
type Verification struct {
	// CPU is the share of CPU time verifications may take, in CPUs.
	CPU float64 `yaml:"cpu,omitempty"`
	// MaxConcurrent bounds the verifications that run at once, MaxQueue
	// the CONNECTs waiting for one, PerIP those of one address; MaxWait is
	// the longest a CONNECT waits (then 0x89 server busy).
	MaxConcurrent int           `yaml:"max_concurrent,omitempty"`
	MaxQueue      int           `yaml:"max_queue,omitempty"`
	PerIP         int           `yaml:"per_ip,omitempty"`
	MaxWait       time.Duration `yaml:"max_wait,omitempty"`
}

// RateLimit bounds rates, message sizes and connections, and bans
// (package ratelimit). Every limit is on without the section; a key left
// out keeps ratelimit's default (go doc github.com/mqttsec/mqttsec/ratelimit
// Config): 5 CONNECTs per second per address (bursts of 20), 1000 overall,
// 1000 PUBLISH and 1 MiB per second per connection, 10 SUBSCRIBE filters per
// second, 1024 connections per address and per user, failed logins slowed
// and then banned, flapping client IDs banned.
type RateLimit struct {
	// ConnectPerIP is the CONNECT rate of one address (a /64 for IPv6,
	// see IPv6Prefix); Connect that of all clients together. Over them a
	// CONNECT is refused with 0x9F.
	ConnectPerIP *Rate `yaml:"connect_per_ip,omitempty"`
	Connect      *Rate `yaml:"connect,omitempty"`
	// Publish is the message rate of one connection (refused: 0x97 in a
	// v5 PUBACK, dropped for QoS 0 and 3.1.1), Bytes its payload byte
	// rate, Subscribe its rate of topic filters.
	Publish   *Rate `yaml:"publish,omitempty"`
	Bytes     *Rate `yaml:"bytes,omitempty"`
	Subscribe *Rate `yaml:"subscribe,omitempty"`
	// Flood is the rate of refused publishes beyond which a connection is
	// closed with 0x96; unset means the Publish rate.
	Flood *Rate `yaml:"flood,omitempty"`
	// MaxPayload is the largest PUBLISH or will payload in bytes; zero
	// means [DefaultMaxPayload].
	MaxPayload int `yaml:"max_payload,omitempty"`
	// MaxConnectionsPerIP and MaxConnectionsPerUser cap the live
	// connections of one address and of one user (0x97); zero means 1024,
	// negative no cap (logged at warn).
	MaxConnectionsPerIP   int `yaml:"max_connections_per_ip,omitempty"`
	MaxConnectionsPerUser int `yaml:"max_connections_per_user,omitempty"`
	// AuthFailures throttles and bans addresses whose logins fail;
	// UserFailures user names whose logins fail from any address.
	AuthFailures *Failures `yaml:"auth_failures,omitempty"`
	UserFailures *Failures `yaml:"user_failures,omitempty"`
	// Flapping bans client IDs that reconnect too often.
	Flapping *Flapping `yaml:"flapping,omitempty"`
	// IPv6Prefix is the prefix length that keys an IPv6 client; zero
	// means 64.
	IPv6Prefix int `yaml:"ipv6_prefix,omitempty"`
	// BansFile holds the administrator's bans (ratelimit.ParseBans: one
	// "KIND VALUE UNTIL [REASON]" per line, as `ip 198.51.100.0/24
	// never`), read at start and on every reload (SIGHUP); a missing file
	// holds none. A ban disconnects the sessions it covers.
	BansFile string `yaml:"bans_file,omitempty"`
	// Verification bounds concurrent credential verifications.
	Verification *Verification `yaml:"verification,omitempty"`
}

// Limits bound the memory authenticated clients can make the broker hold:
// retained messages and persistent sessions per user and in all
// (mqttsec.Quotas), what is queued for each client, user and in all, and
// the subscriptions, topics and properties a client may use (mochi.Limits),
// and how long a write to a client may block. Without the section, or for
// a key left out, the libraries' defaults apply (see go doc
// github.com/mqttsec/mqttsec/mochi Limits): every bound is on by default.
// A negative value lifts a bound; it is logged at warn on every start.
// "User" is the authenticated principal: a user name, a certificate name,
// a token subject.
type Limits struct {
	// RetainedPerUser and RetainedBytesPerUser bound the retained messages
	// the publishes of one user hold; Retained and RetainedBytes those of
	// all users. Over them a retained publish is refused with 0x97.
	RetainedPerUser      int   `yaml:"retained_per_user,omitempty"`
	RetainedBytesPerUser int64 `yaml:"retained_bytes_per_user,omitempty"`
	Retained             int   `yaml:"retained,omitempty"`
	RetainedBytes        int64 `yaml:"retained_bytes,omitempty"`
	// SessionsPerUser and Sessions bound persistent sessions (connected or
	// kept) of one user and of all; one more is refused with 0x97.
	SessionsPerUser int `yaml:"sessions_per_user,omitempty"`
	Sessions        int `yaml:"sessions,omitempty"`
	// DropQoS0Backlog is the bytes pending for a client beyond which QoS 0
	// messages to it are dropped; ClientBacklog the bytes beyond which it
	// is disconnected as a slow consumer; UserBacklog the bytes pending for
	// all the clients and kept sessions of one user; Outbound for all
	// clients together.
	DropQoS0Backlog int64 `yaml:"drop_qos0_backlog,omitempty"`
	ClientBacklog   int64 `yaml:"client_backlog,omitempty"`
	UserBacklog     int64 `yaml:"user_backlog,omitempty"`
	Outbound        int64 `yaml:"outbound,omitempty"`
	// QueuedMessages and QueuedBytes bound the QoS 1 and 2 messages queued
	// for a kept session while its client is offline.
	QueuedMessages int   `yaml:"queued_messages,omitempty"`
	QueuedBytes    int64 `yaml:"queued_bytes,omitempty"`
	// Subscriptions and SubscriptionBytes bound the topic filters of one
	// client; FiltersPerSubscribe those of one SUBSCRIBE.
	Subscriptions       int   `yaml:"subscriptions,omitempty"`
	SubscriptionBytes   int64 `yaml:"subscription_bytes,omitempty"`
	FiltersPerSubscribe int   `yaml:"filters_per_subscribe,omitempty"`
	// TopicLength is the longest topic name or filter in bytes;
	// PropertyBytes bounds the properties of a PUBLISH, or of a CONNECT and
	// its will.
	TopicLength   int `yaml:"topic_length,omitempty"`
	PropertyBytes int `yaml:"property_bytes,omitempty"`
	// Inflight, WritesPending and TopicAliases lower mochi's
	// MaximumInflight, MaximumClientWritesPending and TopicAliasMaximum.
	Inflight      int `yaml:"inflight,omitempty"`
	WritesPending int `yaml:"writes_pending,omitempty"`
	TopicAliases  int `yaml:"topic_aliases,omitempty"`
	// WriteStall is how long a publisher may wait for a client that does
	// not read before that client is disconnected; WriteTimeout is the
	// longest any write to a client may block.
	WriteStall   time.Duration `yaml:"write_stall,omitempty"`
	WriteTimeout time.Duration `yaml:"write_timeout,omitempty"`
	// MaxKeepAlive bounds the keep-alive clients may ask for: MQTT 5
	// clients are told the maximum, MQTT 3.1.1 clients asking for more (or
	// 0) are refused, as Mosquitto's max_keepalive (mochi.Limits).
	MaxKeepAlive time.Duration `yaml:"max_keepalive,omitempty"`
	// InboundBudget bounds the bytes of large packets (16 KiB or more) the
	// clients of one listener are sending at once; PacketTimeout the time
	// a client may take to send one packet (mochi.HardenConfig).
	InboundBudget int64         `yaml:"inbound_budget,omitempty"`
	PacketTimeout time.Duration `yaml:"packet_timeout,omitempty"`
}

// Redis is the Redis server that shares security state between the
// brokers of a cluster (package redisstore): client-ID ownership (a
// takeover across brokers is refused as on one broker), bans, the CONNECT
// and failed-login limits per address and per user name, and kicks.
// Each broker of the cluster has the same section. Whoever can write to
// this Redis can end any session and bind any client ID: protect it (an
// ACL user limited to the prefix, TLS, a private network).
type Redis struct {
	// Address is "host:port". A non-loopback address needs TLS unless
	// InsecurePlaintext is set.
	Address string `yaml:"address"`
	// Prefix starts every key and channel; the same on every broker of a
	// cluster. Empty means redisstore.DefaultPrefix ("mqttsec:").
	Prefix string `yaml:"prefix,omitempty"`
	// Username and PasswordFile (not readable by others) authenticate to
	// Redis (AUTH).
	Username     string `yaml:"username,omitempty"`
	PasswordFile string `yaml:"password_file,omitempty"`
	// DB is the database number.
	DB int `yaml:"db,omitempty"`
	// TLS connects with TLS (tlsconf client defaults): ca_file (empty: the
	// system roots), cert_file and key_file for a client certificate,
	// server_name.
	TLS *RedisTLS `yaml:"tls,omitempty"`
	// InsecurePlaintext accepts a non-loopback Address without TLS.
	InsecurePlaintext bool `yaml:"insecure_plaintext,omitempty"`
	// Timeout bounds each Redis operation of a decision; zero means
	// redisstore.DefaultTimeout.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// LeaseTTL is how long a dead broker's client IDs stay bound; zero
	// means redisstore.DefaultLeaseTTL.
	LeaseTTL time.Duration `yaml:"lease_ttl,omitempty"`
	// InsecureFailOpen admits CONNECTs while Redis is unreachable: client
	// IDs claimed on this broker's word alone, bans possibly stale. The
	// default refuses them with 0x88 (server unavailable).
	InsecureFailOpen bool `yaml:"insecure_fail_open,omitempty"`
	// RateFailClosed refuses CONNECTs (0x88) while Redis is unreachable
	// instead of limiting rates per broker.
	RateFailClosed bool `yaml:"rate_fail_closed,omitempty"`
}

// RedisTLS is the TLS of the connection to Redis.
type RedisTLS struct {
	CAFile     string `yaml:"ca_file,omitempty"`
	CertFile   string `yaml:"cert_file,omitempty"`
	KeyFile    string `yaml:"key_file,omitempty"`
	ServerName string `yaml:"server_name,omitempty"`
}

// Broker bounds what the broker accepts and keeps.
type Broker struct {
	// MaxPacketSize is the largest MQTT packet accepted, in bytes. Zero
	// means the payload limit plus 128 KiB (room for the topic and
	// properties), or 16 MiB without a payload limit.
	MaxPacketSize int `yaml:"max_packet_size,omitempty"`
	// MaxSessionExpiry is the longest time an offline session is kept.
	// Zero means [DefaultMaxSessionExpiry].
	MaxSessionExpiry time.Duration `yaml:"max_session_expiry,omitempty"`
	// MaxClients is the most clients connected at once. Zero means
	// [DefaultMaxClients].
	MaxClients int `yaml:"max_clients,omitempty"`
	// ConnectTimeout is the time a new connection has to finish its TLS
	// handshake and send CONNECT. Zero means mochi.DefaultConnectTimeout.
	ConnectTimeout time.Duration `yaml:"connect_timeout,omitempty"`
	// MaxConnectSize, MaxPending and MaxPendingPerIP bound connections
	// before they are authenticated (mochi.HardenConfig); zero means its
	// defaults. They cannot be switched off.
	MaxConnectSize  int `yaml:"max_connect_size,omitempty"`
	MaxPending      int `yaml:"max_pending,omitempty"`
	MaxPendingPerIP int `yaml:"max_pending_per_ip,omitempty"`
	// MaxTopicLevels is the most levels of a topic name or filter; zero
	// means mqttsec.DefaultMaxTopicLevels.
	MaxTopicLevels int `yaml:"max_topic_levels,omitempty"`
}

// Log configures the log, security events included.
type Log struct {
	// Level is "debug", "info" (the default), "warn" or "error".
	Level string `yaml:"level,omitempty"`
	// Format is "json" (the default: one JSON object per line) or "text".
	Format string `yaml:"format,omitempty"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Address is "host:port" of the HTTP server serving /metrics, without
	// TLS or authentication: a loopback address (for a local scraper or a
	// proxy) unless InsecurePublic is set.
	Address string `yaml:"address"`
	// InsecurePublic accepts a non-loopback Address: anyone who reaches it
	// reads the counts of the broker's security decisions and its
	// runtime statistics.
	InsecurePublic bool `yaml:"insecure_public,omitempty"`
}

// The defaults of the bounds a File puts on the broker.
const (
	// DefaultMaxPayload is the default of [RateLimit].MaxPayload.
	DefaultMaxPayload = 256 << 10
	// DefaultMaxSessionExpiry is the default of [Broker].MaxSessionExpiry:
	// mochi's own default keeps an offline session for 136 years.
	DefaultMaxSessionExpiry = 24 * time.Hour
	// DefaultMaxClients is the default of [Broker].MaxClients.
	DefaultMaxClients = 10000
)

// Load reads and parses the configuration file at path (see [Parse]).
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, &Error{File: path, Err: wrapf(ErrFile, "%w", err)}
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Err: wrapf(ErrFile, "%w", err)}
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Err: wrapf(ErrInvalid, "larger than %d bytes", MaxFileSize)}
	}
	f, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	f.loaded = true
	return f, nil
}

// Parse decodes a configuration document strictly and validates it
// without reading any other file: unknown keys, keys given twice, values
// of the wrong type, values out of range, contradicting keys and insecure
// combinations are errors ([*Error], naming the line and key; several
// problems are joined). name is the document's file name: it appears in
// errors, and relative paths are taken from its folder ("" means the
// working directory).
func Parse(data []byte, name string) (*File, error) {
	f := &File{name: name, dir: filepath.Dir(name)}
	if name == "" {
		f.dir = "."
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Err: wrapf(ErrInvalid, "larger than %d bytes", MaxFileSize)}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, f.yamlError(err)
	}
	f.root = &root
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Err: wrapf(ErrInvalid, "empty configuration")}
		}
		return nil, f.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{File: name, Line: extra.Line, Err: wrapf(ErrSyntax, "more than one YAML document")}
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// Name returns the file name given to [Parse] or [Load].
func (f *File) Name() string { return f.name }

// Path resolves a path of the file (relative to the file's folder).
func (f *File) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(f.dir, p)
}

// Marshal returns the file as YAML, with defaults left out. [Parse] of
// the result gives the same File.
func (f *File) Marshal() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(f); err != nil {
		return nil, err
	}
	for _, path := range durationKeys {
		shortenDuration(&n, path)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// durationKeys are the paths of the time.Duration fields of a File.
var durationKeys = [][]string{
	{"broker", "max_session_expiry"}, {"broker", "connect_timeout"},
	{"auth", "jwt", "jwks_refresh"}, {"auth", "jwt", "leeway"},
	{"ratelimit", "auth_failures", "ban"},
	{"limits", "write_stall"}, {"limits", "write_timeout"},
	{"redis", "timeout"}, {"redis", "lease_ttl"},
}

// shortenDuration rewrites the duration at path, as time.Duration writes
// it ("24h0m0s"), the way a person would ("24h").
func shortenDuration(n *yaml.Node, path []string) {
	for _, key := range path {
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			n = n.Content[0]
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return
		}
		n = next
	}
	if _, err := time.ParseDuration(n.Value); err != nil || n.Kind != yaml.ScalarNode {
		return
	}
	v := n.Value
	if strings.HasSuffix(v, "m0s") {
		v = v[:len(v)-2]
	}
	if strings.HasSuffix(v, "h0m") {
		v = v[:len(v)-2]
	}
	n.Value = v
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
var anyLine = regexp.MustCompile(`\bline (\d+)\b`)
var unknownField = regexp.MustCompile(`^field (\S+) not found in type`)
var typeMismatch = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")

// want describes the Go type a decoder wanted in the file's terms.
func want(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case goType == "time.Duration":
		return "a duration (10s, 5m, 24h)"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint"):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	}
	return "a mapping of keys"
}

// yamlError turns a decoder error into [*Error] values with lines and,
// for unknown keys, the key's path.
func (f *File) yamlError(err error) error {
	var te *yaml.TypeError
	var msgs []string
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var errs []error
	for _, m := range msgs {
		e := &Error{File: f.name, Err: wrapf(ErrSyntax, "%s", strings.TrimPrefix(m, "yaml: "))}
		if lm := anyLine.FindStringSubmatch(m); lm != nil && !yamlLine.MatchString(m) {
			e.Line, _ = strconv.Atoi(lm[1])
			if strings.Contains(m, "bridge") {
				e.Key = "bridges"
			}
		}
		if sm := yamlLine.FindStringSubmatch(m); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Err = wrapf(ErrSyntax, "%s", sm[2])
			if um := unknownField.FindStringSubmatch(sm[2]); um != nil {
				e.Key = f.keyAt(e.Line, um[1], false)
				e.Err = wrapf(ErrUnknownKey, "unknown key %q", um[1])
			} else if tm := typeMismatch.FindStringSubmatch(sm[2]); tm != nil {
				e.Key = f.keyAt(e.Line, tm[2], true)
				e.Err = wrapf(ErrSyntax, "%s is not %s", tm[2], want(tm[3]))
			}
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// keyAt returns the path of the mapping key named key on line (or, with
// byValue, of the key whose scalar value on line is key), or "".
func (f *File) keyAt(line int, key string, byValue bool) string {
	if f.root == nil {
		return key
	}
	var walk func(n *yaml.Node, path string) (string, bool)
	walk = func(n *yaml.Node, path string) (string, bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p, ok := walk(c, path); ok {
					return p, true
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := joinKey(path, k.Value)
				if !byValue && k.Line == line && k.Value == key {
					return p, true
				}
				if byValue && v.Line == line && v.Value == key && v.Kind == yaml.ScalarNode {
					return p, true
				}
				if r, ok := walk(v, p); ok {
					return r, true
				}
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				if p, ok := walk(c, fmt.Sprintf("%s[%d]", path, i)); ok {
					return p, true
				}
			}
		}
		return "", false
	}
	if p, ok := walk(f.root, ""); ok {
		return p
	}
	if byValue {
		return ""
	}
	return key
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// line returns the line of the key at path ("listeners", 1, "tls",
// "client_auth"), or of the deepest part of it the document has.
func (f *File) line(path ...any) int {
	if f.root == nil {
		return 0
	}
	n := f.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	best := 0
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return best
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == p {
					best = n.Content[i].Line
					next = n.Content[i+1]
					break
				}
			}
			if next == nil {
				return best
			}
			n = next
		case int:
			if n.Kind != yaml.SequenceNode || p < 0 || p >= len(n.Content) {
				return best
			}
			n = n.Content[p]
			best = n.Line
		}
	}
	return best
}

// errAt returns an [*Error] at path.
func (f *File) errAt(err error, path ...any) *Error {
	return &Error{File: f.name, Line: f.line(path...), Key: keyPath(path...), Err: err}
}

func keyPath(path ...any) string {
	var b strings.Builder
	for _, p := range path {
		switch p := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(p)
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		}
	}
	return b.String()
}
