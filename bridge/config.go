package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/mqttsec/mqttsec/topic"
)

// Defaults applied to zero fields of a [Config] when a bridge starts.
const (
	DefaultSessionExpiry  = time.Hour
	DefaultKeepAlive      = 60 * time.Second
	DefaultBuffer         = 1024
	DefaultBufferBytes    = 64 << 20
	DefaultMaxPacketSize  = 1 << 20
	DefaultMaxInflight    = 32
	DefaultReconnectMin   = time.Second
	DefaultReconnectMax   = time.Minute
	DefaultConnectTimeout = 30 * time.Second
	DefaultMaxHops        = 8
)

// LoopKey is the MQTT v5 user property a bridge adds to every message it
// forwards, with the bridge's [Config.LoopID] as value. A bridge drops a
// message that already carries its own ID, or [Config.MaxHops] of them.
const LoopKey = "mqttsec-bridge"

// Direction is the way messages of a [Mapping] travel.
type Direction string

// The directions of a mapping.
const (
	// In forwards messages from the remote broker to the local one.
	In Direction = "in"
	// Out forwards messages from the local broker to the remote one.
	Out Direction = "out"
	// Both forwards in both directions.
	Both Direction = "both"
)

func (d Direction) in() bool  { return d == In || d == Both }
func (d Direction) out() bool { return d == Out || d == Both }

// Mapping is one topic line of a bridge, with Mosquitto's remapping
// semantics: the local topics are LocalPrefix+Pattern, the remote ones
// RemotePrefix+Pattern. A message forwarded out loses LocalPrefix and gains
// RemotePrefix; one forwarded in loses RemotePrefix and gains LocalPrefix.
// An empty Pattern maps the single topic LocalPrefix to the single topic
// RemotePrefix (both are then required).
//
//	pattern      local_prefix  remote_prefix  local topic     remote topic
//	sensors/#    ""            site1/         sensors/a       site1/sensors/a
//	cmd/#        local/        site1/         local/cmd/x     site1/cmd/x
//	""           a/b           c/d            a/b             c/d
//
// Prefixes contain no wildcard; they usually end with '/'.
type Mapping struct {
	// Pattern is a topic filter (wildcards allowed), or "" with both
	// prefixes set.
	Pattern string `yaml:"pattern"`
	// Direction is in, out or both. It is required: a default that
	// forwards out could publish local data to a remote broker.
	Direction Direction `yaml:"direction"`
	// QoS is the subscription QoS on the source side and the highest QoS
	// a message is forwarded with: 0, 1 or 2. QoS 1 and 2 messages are
	// acknowledged to the source only after the destination acknowledged
	// them (at least once across the bridge).
	QoS byte `yaml:"qos"`
	// LocalPrefix and RemotePrefix are prepended to Pattern on each side.
	LocalPrefix  string `yaml:"local_prefix,omitempty"`
	RemotePrefix string `yaml:"remote_prefix,omitempty"`
}

// Config is one bridge: the remote broker it connects to, how it
// authenticates there, and the topics it forwards. It is loaded from YAML
// (see [ParseConfigs]; the keys are the yaml tags) or filled in code, and
// checked by [Config.Validate]. Zero fields mean the documented defaults,
// which are the secure choice.
//
// A Config is a plain value: Start copies it.
type Config struct {
	// Name identifies the bridge in errors, events and findings: letters,
	// digits, '-', '_' and '.', at most 64 bytes.
	Name string `yaml:"name"`

	// Remote is the remote broker's URL: "mqtts://host:8883" or
	// "wss://host/mqtt". Plaintext "mqtt://" and "ws://" are refused
	// unless InsecurePlaintext is set. No user or password in the URL.
	// The port defaults to 8883 (mqtts), 443 (wss), 1883 (mqtt), 80 (ws).
	Remote string `yaml:"remote"`

	// TLS is the TLS configuration for the remote: CA bundle (ca_file; empty
	// means the system roots), client certificate (cert_file, key_file),
	// pinned keys (pinned_spki), server_name, min_version, CRLs. The files
	// are watched and reloaded. client_auth is a server setting and is
	// refused here. The server's name is always verified.
	TLS tlsconf.Config `yaml:"tls,omitempty"`

	// DisableSystemRoots asserts that the remote's certificate must chain
	// to tls.ca_file: a Config with it and without a CA file is refused
	// instead of trusting the system roots.
	DisableSystemRoots bool `yaml:"disable_system_roots,omitempty"`

	// InsecurePlaintext allows a plaintext remote (mqtt://, ws://):
	// messages and credentials cross the network readable and modifiable
	// by anyone on the path. Even on a loopback address it must be set.
	InsecurePlaintext bool `yaml:"insecure_plaintext,omitempty"`

	// Username is sent in CONNECT to the remote broker.
	Username string `yaml:"username,omitempty"`
	// PasswordFile is a file holding the password (one line; a final
	// newline is removed). It must not be readable by others (mode 0600 or
	// 0640). It is read again at every connection attempt, so a rotated
	// password is picked up.
	PasswordFile string `yaml:"password_file,omitempty"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `yaml:"password_env,omitempty"`
	// InsecurePassword is the password itself, inline: it then sits in
	// the configuration file, its backups and its history. Use
	// PasswordFile or PasswordEnv.
	InsecurePassword string `yaml:"insecure_password,omitempty"`

	// ClientID is the bridge's client ID on the remote broker. Required:
	// two bridges with one ID take over each other's session. It follows
	// [mqttsec.DefaultClientIDPolicy].
	ClientID string `yaml:"client_id"`
	// LocalClientID is the bridge's client ID on the local broker. Empty
	// means "local." + ClientID (as Mosquitto).
	LocalClientID string `yaml:"local_client_id,omitempty"`

	// CleanStart discards the sessions of a previous run on the first
	// connection to each broker. By default they are resumed, so that
	// messages queued for the bridge while it was down are forwarded.
	CleanStart bool `yaml:"clean_start,omitempty"`
	// SessionExpiry is how long each broker keeps the bridge's session
	// (subscriptions and queued messages) after a disconnection. Zero
	// means one hour.
	SessionExpiry time.Duration `yaml:"session_expiry,omitempty"`
	// KeepAlive is the MQTT keep-alive, 5 s to 65535 s. Zero means 60 s.
	KeepAlive time.Duration `yaml:"keep_alive,omitempty"`

	// Topics are the mappings, in order: a message is forwarded by the
	// first mapping (of its direction) that matches it, as in Mosquitto.
	Topics []Mapping `yaml:"topics"`

	// StatusTopic, when set, receives on the local broker a retained "1"
	// while the bridge is connected to the remote and "0" otherwise (also
	// as the will of the local connection), as Mosquitto's notifications.
	StatusTopic string `yaml:"status_topic,omitempty"`
	// RemoteStatusTopic is the same on the remote broker: "1" once
	// connected, "0" as the will and at Close.
	RemoteStatusTopic string `yaml:"remote_status_topic,omitempty"`

	// Buffer bounds the messages held per direction. When it is full, QoS
	// 0 messages are dropped (counted), and for a QoS 1 or 2 message the
	// bridge stops reading from the source until there is room: the source
	// broker keeps the rest queued in the bridge's session. The bridge also
	// announces Buffer (at most 65535) as its Receive Maximum, so a source
	// broker sends no more unacknowledged messages than that.
	//
	// Zero means 1024. With a mochi-mqtt v2.7.9 source keep Buffer at
	// least its Capabilities.MaximumInflight (1024 by default): a smaller
	// Receive Maximum makes mochi lose messages once that many are
	// unacknowledged (a message sent when quota frees is removed from its
	// inflight store before it is acknowledged).
	Buffer int `yaml:"buffer,omitempty"`
	// BufferBytes bounds the payload and topic bytes held per direction,
	// with the same policy (one message is always let through, however
	// large). Zero means 64 MiB.
	BufferBytes int `yaml:"buffer_bytes,omitempty"`
	// MaxPacketSize is the largest packet the bridge accepts from either
	// broker (announced in CONNECT; a larger one closes the connection
	// before it is read). Zero means 1 MiB.
	MaxPacketSize int `yaml:"max_packet_size,omitempty"`
	// MaxInflight bounds the messages published to a destination and not
	// yet acknowledged. Zero means 32.
	MaxInflight int `yaml:"max_inflight,omitempty"`

	// ReconnectMin and ReconnectMax bound the exponential, jittered delay
	// between connection attempts. Zero means 1 s and 60 s.
	ReconnectMin time.Duration `yaml:"reconnect_min,omitempty"`
	ReconnectMax time.Duration `yaml:"reconnect_max,omitempty"`
	// ConnectTimeout bounds a connection attempt (dial, TLS, CONNACK) and
	// the wait for an acknowledgement. Zero means 30 s.
	ConnectTimeout time.Duration `yaml:"connect_timeout,omitempty"`

	// LoopID is the value of the [LoopKey] user property this bridge adds.
	// Empty means a hash of Name, ClientID and Remote (see [Config.LoopIDOrDefault]).
	LoopID string `yaml:"loop_id,omitempty"`
	// MaxHops drops a message that crossed this many bridges already.
	// Zero means 8.
	MaxHops int `yaml:"max_hops,omitempty"`
	// DisableLoopPrevention turns off no-local subscriptions and the loop
	// marker. Validate then refuses mappings that would form a loop (a
	// "both" mapping, an "out" and an "in" mapping that overlap).
	DisableLoopPrevention bool `yaml:"disable_loop_prevention,omitempty"`

	line int // the line of the bridge in its YAML file, for findings
}

// String describes the bridge without its credentials, so a Config can be
// logged: `bridge "cloud" to mqtts://broker.example.com:8883 as "site1-bridge" (2 mappings)`.
func (c Config) String() string {
	return fmt.Sprintf("bridge %q to %s as %q (%d mappings)", c.Name, redactURL(c.Remote), c.ClientID, len(c.Topics))
}

// GoString is String: %#v must not print InsecurePassword either.
func (c Config) GoString() string { return c.String() }

// Line returns the line of the bridge in the YAML document it was decoded
// from, or 0.
func (c Config) Line() int { return c.line }

// LoopIDOrDefault returns LoopID, or when it is empty the first 16 hex
// digits of SHA-256 over Name, ClientID and Remote: stable across restarts,
// distinct for distinct bridges, and revealing none of them.
func (c Config) LoopIDOrDefault() string {
	if c.LoopID != "" {
		return c.LoopID
	}
	h := sha256.Sum256([]byte(c.Name + "\x00" + c.ClientID + "\x00" + c.Remote))
	return hex.EncodeToString(h[:8])
}

// localClientID returns the local client ID.
func (c Config) localClientID() string {
	if c.LocalClientID != "" {
		return c.LocalClientID
	}
	return "local." + c.ClientID
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.SessionExpiry, DefaultSessionExpiry)
	def(&c.KeepAlive, DefaultKeepAlive)
	def(&c.ReconnectMin, DefaultReconnectMin)
	def(&c.ReconnectMax, DefaultReconnectMax)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	defInt(&c.Buffer, DefaultBuffer)
	defInt(&c.BufferBytes, DefaultBufferBytes)
	defInt(&c.MaxPacketSize, DefaultMaxPacketSize)
	defInt(&c.MaxInflight, DefaultMaxInflight)
	defInt(&c.MaxHops, DefaultMaxHops)
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = c.ReconnectMin
	}
	c.LoopID = c.LoopIDOrDefault()
	c.LocalClientID = c.localClientID()
	return c
}

// Validate checks c without reading any file or connecting: every problem
// is reported (joined with [errors.Join]), each naming the bridge and
// wrapping [ErrInvalid], [ErrInsecure] or [ErrLoop]. It refuses:
//
//   - a plaintext remote (mqtt://, ws://) without InsecurePlaintext, and
//     credentials or TLS settings that a plaintext remote would ignore or leak;
//   - DisableSystemRoots without tls.ca_file, a server-only TLS setting;
//   - more than one password source, an invalid client ID;
//   - an invalid pattern, a prefix with a wildcard, a pattern and prefix that
//     do not combine into a valid filter, a missing direction, QoS above 2,
//     duplicate mappings;
//   - with DisableLoopPrevention, mappings that form a loop ("#" both ways);
//   - out-of-range durations and sizes.
//
// Duplicate names and client IDs across bridges are checked by [ValidateAll].
func (c Config) Validate() error {
	v := validator{name: c.Name}
	c.validate(&v)
	return v.err()
}

type validator struct {
	name string
	errs []error
}

func (v *validator) add(kind error, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%w: bridge %q: %s", kind, v.name, fmt.Sprintf(format, args...)))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

const maxNameLen = 64

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

func validEnvName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b == '_' || i > 0 && b >= '0' && b <= '9') {
			return false
		}
	}
	return true
}

func (c *Config) validate(v *validator) {
	if !validName(c.Name) {
		v.add(ErrInvalid, "name must be 1 to %d letters, digits, '-', '_' or '.'", maxNameLen)
	}
	u, err := parseURL(c.Remote)
	if err != nil {
		v.add(ErrInvalid, "remote: %v", err)
	} else if !secureScheme(u.Scheme) {
		host := u.Hostname()
		switch {
		case !c.InsecurePlaintext && isLoopback(host):
			v.add(ErrInsecure, "remote %q is plaintext: use mqtts:// or wss://, or set insecure_plaintext: true for a loopback broker", c.Remote)
		case !c.InsecurePlaintext:
			v.add(ErrInsecure, "remote %q is plaintext to host %q: messages and credentials would cross the network in clear; use mqtts:// or wss://", c.Remote, host)
		}
		if !isZeroTLS(c.TLS) || c.DisableSystemRoots {
			v.add(ErrInvalid, "tls settings with a plaintext remote %q would be ignored: use mqtts:// or wss://", c.Remote)
		}
	} else if c.InsecurePlaintext {
		v.add(ErrInvalid, "insecure_plaintext with a TLS remote %q: remove it", c.Remote)
	}
	if err := c.TLS.Validate(); err != nil {
		v.add(ErrInvalid, "tls: %v", err)
	}
	if c.TLS.ClientAuth != "" {
		v.add(ErrInvalid, "tls.client_auth is a server setting; a bridge is a client")
	}
	if c.DisableSystemRoots && c.TLS.CAFile == "" {
		v.add(ErrInvalid, "disable_system_roots needs tls.ca_file: with no CA the remote cannot be verified")
	}

	sources := 0
	for _, s := range []string{c.PasswordFile, c.PasswordEnv, c.InsecurePassword} {
		if s != "" {
			sources++
		}
	}
	if sources > 1 {
		v.add(ErrInvalid, "set one of password_file, password_env and insecure_password")
	}
	if c.PasswordEnv != "" && !validEnvName(c.PasswordEnv) {
		v.add(ErrInvalid, "password_env %q is not an environment variable name", c.PasswordEnv)
	}
	if len(c.Username) > 65535 || !utf8.ValidString(c.Username) || strings.ContainsRune(c.Username, 0) {
		v.add(ErrInvalid, "username is not a valid MQTT string")
	}
	if len(c.InsecurePassword) > 65535 {
		v.add(ErrInvalid, "insecure_password is longer than 65535 bytes")
	}

	if c.ClientID == "" {
		v.add(ErrInvalid, "client_id is required: a unique ID for this bridge on the remote broker (two bridges with one ID take over each other's session)")
	} else if err := validClientID(c.ClientID); err != nil {
		v.add(ErrInvalid, "client_id %q: %v", c.ClientID, err)
	}
	if c.LocalClientID != "" {
		if err := validClientID(c.LocalClientID); err != nil {
			v.add(ErrInvalid, "local_client_id %q: %v", c.LocalClientID, err)
		}
	} else if c.ClientID != "" {
		if err := validClientID(c.localClientID()); err != nil {
			v.add(ErrInvalid, "local_client_id %q (the default): %v", c.localClientID(), err)
		}
	}

	c.validateTopics(v)

	for _, st := range []struct{ key, val string }{{"status_topic", c.StatusTopic}, {"remote_status_topic", c.RemoteStatusTopic}} {
		if st.val != "" {
			if err := topic.ValidateName(st.val); err != nil {
				v.add(ErrInvalid, "%s %q: %v", st.key, st.val, err)
			}
		}
	}

	durs := []struct {
		key      string
		d        time.Duration
		min, max time.Duration
	}{
		{"session_expiry", c.SessionExpiry, time.Second, time.Duration(1<<32-1) * time.Second},
		{"keep_alive", c.KeepAlive, 5 * time.Second, 65535 * time.Second},
		{"reconnect_min", c.ReconnectMin, time.Millisecond, 24 * time.Hour},
		{"reconnect_max", c.ReconnectMax, time.Millisecond, 24 * time.Hour},
		{"connect_timeout", c.ConnectTimeout, 100 * time.Millisecond, time.Hour},
	}
	for _, d := range durs {
		if d.d != 0 && (d.d < d.min || d.d > d.max) {
			v.add(ErrInvalid, "%s %s out of range [%s, %s]", d.key, d.d, d.min, d.max)
		}
	}
	if c.ReconnectMin != 0 && c.ReconnectMax != 0 && c.ReconnectMax < c.ReconnectMin {
		v.add(ErrInvalid, "reconnect_max %s is below reconnect_min %s", c.ReconnectMax, c.ReconnectMin)
	}
	ints := []struct {
		key      string
		n        int
		min, max int
	}{
		{"buffer", c.Buffer, 1, 1 << 20},
		{"buffer_bytes", c.BufferBytes, 1024, 1 << 40},
		{"max_packet_size", c.MaxPacketSize, 128, 268435460},
		{"max_inflight", c.MaxInflight, 1, 65535},
		{"max_hops", c.MaxHops, 1, 64},
	}
	for _, n := range ints {
		if n.n != 0 && (n.n < n.min || n.n > n.max) {
			v.add(ErrInvalid, "%s %d out of range [%d, %d]", n.key, n.n, n.min, n.max)
		}
	}
	if c.LoopID != "" && (len(c.LoopID) > 64 || !utf8.ValidString(c.LoopID) || strings.ContainsRune(c.LoopID, 0)) {
		v.add(ErrInvalid, "loop_id must be at most 64 bytes of valid UTF-8")
	}
}

func (c *Config) validateTopics(v *validator) {
	if len(c.Topics) == 0 {
		v.add(ErrInvalid, "topics: at least one mapping is required")
	}
	for i, m := range c.Topics {
		where := fmt.Sprintf("topics[%d]", i)
		switch m.Direction {
		case In, Out, Both:
		case "":
			v.add(ErrInvalid, "%s: direction is required (in, out or both)", where)
		default:
			v.add(ErrInvalid, "%s: direction %q: want in, out or both", where, m.Direction)
		}
		if m.QoS > 2 {
			v.add(ErrInvalid, "%s: qos %d: want 0, 1 or 2", where, m.QoS)
		}
		for _, p := range []struct{ key, val string }{{"local_prefix", m.LocalPrefix}, {"remote_prefix", m.RemotePrefix}} {
			if err := checkPrefix(p.val); err != nil {
				v.add(ErrInvalid, "%s: %s %q: %v", where, p.key, p.val, err)
			}
		}
		if m.Pattern == "" {
			if m.LocalPrefix == "" || m.RemotePrefix == "" {
				v.add(ErrInvalid, "%s: an empty pattern maps the topic local_prefix to the topic remote_prefix: set both", where)
			} else {
				for _, p := range []struct{ key, val string }{{"local_prefix", m.LocalPrefix}, {"remote_prefix", m.RemotePrefix}} {
					if err := topic.ValidateName(p.val); err != nil {
						v.add(ErrInvalid, "%s: %s %q is not a topic name: %v", where, p.key, p.val, err)
					}
				}
			}
			continue
		}
		if err := checkFilter(m.Pattern); err != nil {
			v.add(ErrInvalid, "%s: pattern %q: %v", where, m.Pattern, err)
			continue
		}
		for _, p := range []struct{ key, val string }{{"local_prefix", m.LocalPrefix}, {"remote_prefix", m.RemotePrefix}} {
			if p.val == "" {
				continue
			}
			if err := checkFilter(p.val + m.Pattern); err != nil {
				v.add(ErrInvalid, "%s: %s %q and pattern %q make %q: %v", where, p.key, p.val, m.Pattern, p.val+m.Pattern, err)
			}
		}
	}
	for i, a := range c.Topics {
		for j := 0; j < i; j++ {
			b := c.Topics[j]
			if a.Pattern == b.Pattern && a.LocalPrefix == b.LocalPrefix && a.RemotePrefix == b.RemotePrefix &&
				(a.Direction.in() && b.Direction.in() || a.Direction.out() && b.Direction.out()) {
				v.add(ErrInvalid, "topics[%d] duplicates topics[%d]", i, j)
			}
		}
	}
	if c.DisableLoopPrevention {
		for _, l := range loops(c.Topics) {
			if l[0] == l[1] {
				v.add(ErrLoop, "topics[%d] (%q both ways) sends every message back where it came from: loop prevention is disabled", l[0], c.Topics[l[0]].Pattern)
			} else {
				v.add(ErrLoop, "topics[%d] (out) and topics[%d] (in) overlap on both brokers: a message would come back; loop prevention is disabled", l[0], l[1])
			}
		}
	}
}

// checkFilter refuses an invalid filter and a shared subscription, which
// cannot be combined with no-local and whose group level would be remapped.
func checkFilter(f string) error {
	if err := topic.ValidateFilter(f); err != nil {
		return err
	}
	if _, shared := topic.Unshare(f); shared || strings.HasPrefix(f, "$share/") || strings.HasPrefix(f, "$queue/") {
		return errors.New("shared subscriptions cannot be bridged")
	}
	return nil
}

func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if topic.HasWildcard(p) {
		return errors.New("a prefix must not contain the wildcards '+' or '#'")
	}
	if len(p) > topic.MaxLen || !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
		return errors.New("not a valid MQTT string")
	}
	if strings.HasPrefix(p, "$share/") || strings.HasPrefix(p, "$queue/") {
		return errors.New("shared subscriptions cannot be bridged")
	}
	return nil
}

// loops returns the pairs of mappings (out index, in index) whose remote
// topics and local topics both overlap: without no-local and the loop
// marker, a message would travel out by the first and back in by the second.
// A "both" mapping pairs with itself.
func loops(ms []Mapping) [][2]int {
	var out [][2]int
	for i, o := range ms {
		if !o.Direction.out() {
			continue
		}
		for j, in := range ms {
			if !in.Direction.in() {
				continue
			}
			if overlaps(mappedFilter(o.RemotePrefix, o.Pattern), mappedFilter(in.RemotePrefix, in.Pattern)) &&
				overlaps(mappedFilter(o.LocalPrefix, o.Pattern), mappedFilter(in.LocalPrefix, in.Pattern)) {
				out = append(out, [2]int{i, j})
			}
		}
	}
	return out
}

func mappedFilter(prefix, pattern string) string { return prefix + pattern }

func validClientID(id string) error {
	return mqttsec.DefaultClientIDPolicy().ValidateClientID(&mqttsec.Client{ID: id})
}

// ValidateAll validates each configuration and checks them together:
// names must be unique, and so must remote client IDs (per remote broker) and
// local client IDs, since two bridges with one ID take over each other's
// session. It returns every problem, joined.
func ValidateAll(cfgs []Config) error {
	var errs []error
	names := map[string]int{}
	remoteIDs := map[[2]string]int{}
	localIDs := map[string]int{}
	for i, c := range cfgs {
		if err := c.Validate(); err != nil {
			errs = append(errs, err)
		}
		if j, ok := names[c.Name]; ok && c.Name != "" {
			errs = append(errs, fmt.Errorf("%w: bridge %q: name used by bridges[%d] too", ErrInvalid, c.Name, j))
		} else {
			names[c.Name] = i
		}
		if c.ClientID != "" {
			key := [2]string{remoteKey(c.Remote), c.ClientID}
			if j, ok := remoteIDs[key]; ok {
				errs = append(errs, fmt.Errorf("%w: bridge %q: client_id %q is used by bridge %q for the same remote too: they would take over each other's session", ErrInvalid, c.Name, c.ClientID, cfgs[j].Name))
			} else {
				remoteIDs[key] = i
			}
			lid := c.localClientID()
			if j, ok := localIDs[lid]; ok {
				errs = append(errs, fmt.Errorf("%w: bridge %q: local client ID %q is used by bridge %q too", ErrInvalid, c.Name, lid, cfgs[j].Name))
			} else {
				localIDs[lid] = i
			}
		}
	}
	return errors.Join(errs...)
}

// remoteKey normalizes a remote URL to host:port for duplicate detection.
func remoteKey(raw string) string {
	u, err := parseURL(raw)
	if err != nil {
		return raw
	}
	return strings.ToLower(u.Host)
}

// parseURL parses and normalizes a broker URL: scheme mqtt, mqtts, ws or
// wss, a host, a default port, no credentials, and for mqtt(s) no path.
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("a broker URL is required (mqtts://host:8883 or wss://host/path)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", stripURL(err))
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.User != nil {
		return nil, errors.New("credentials in the URL are refused (they leak into logs): use username and password_file")
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", redactURL(raw))
	}
	var port string
	switch u.Scheme {
	case "mqtts":
		port = "8883"
	case "mqtt":
		port = "1883"
	case "wss":
		port = "443"
	case "ws":
		port = "80"
	default:
		return nil, fmt.Errorf("scheme %q: want mqtts, wss, mqtt or ws", u.Scheme)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q out of range", p)
		}
	} else {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if u.Fragment != "" {
		return nil, errors.New("a broker URL has no fragment")
	}
	if (u.Scheme == "mqtt" || u.Scheme == "mqtts") && (u.Path != "" && u.Path != "/" || u.RawQuery != "") {
		return nil, fmt.Errorf("%s:// URLs have no path or query", u.Scheme)
	}
	return u, nil
}

// stripURL drops the URL text from a url.Error: it may hold credentials.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redactURL removes any user information from a URL string.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		u.User = nil
		return u.String()
	}
	return raw
}

func secureScheme(s string) bool { return s == "mqtts" || s == "wss" }

// isLoopback reports whether host is "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isZeroTLS(c tlsconf.Config) bool {
	return c.CertFile == "" && c.KeyFile == "" && c.CAFile == "" && len(c.CRLFiles) == 0 &&
		c.ClientAuth == "" && c.MinVersion == "" && !c.InsecureAllowTLS11 && c.ServerName == "" &&
		len(c.ALPN) == 0 && len(c.PinnedSPKI) == 0 && len(c.AllowedNames) == 0 && c.ExpiryWarning == 0 &&
		!c.DisableSessionTickets && c.Watch == "" && c.PollInterval == 0
}
