package lint

import (
	"fmt"
	"net"
	"strings"
)

// listener is a Mosquitto listener and the options that apply to it.
type listener struct {
	d        directive // the line that created it: "listener", "port" or its first option
	explicit bool      // a "listener" line
	opts     map[string]directive
	sec      security // with per_listener_settings true
}

// security holds the options that apply globally, or per listener with
// per_listener_settings true.
type security struct {
	opts    map[string]directive
	plugins []directive
}

func newSecurity() security { return security{opts: map[string]directive{}} }

func (s *security) set(d directive) {
	if d.key == "plugin" || d.key == "auth_plugin" {
		s.plugins = append(s.plugins, d)
		return
	}
	s.opts[d.key] = d
}

// mosquitto is a parsed Mosquitto configuration.
type mosquitto struct {
	main        string
	perListener bool
	global      map[string]directive
	globalSec   security
	def         *listener // the default listener, created by "port" or options before any "listener"
	listeners   []*listener
	bridges     []bridgeSection
}

var listenerKeys = keySet(`bind_interface certfile keyfile cafile capath tls_version ciphers
ciphers_tls1.3 require_certificate use_identity_as_username use_subject_as_username psk_hint max_connections
protocol socket_domain mount_point http_dir crlfile dhparamfile tls_engine tls_keyform max_qos max_topic_alias
websockets_headers_size`)

var securityKeys = keySet(`allow_anonymous password_file acl_file plugin auth_plugin psk_file
allow_zero_length_clientid auto_id_prefix use_username_as_clientid auth_plugin_deny_special_chars`)

var bridgeKeys = keySet(`address addresses topic cleansession clientid start_type keepalive_interval
notifications notifications_local_only notification_topic try_private round_robin restart_timeout
idle_timeout threshold`)

func keySet(s string) map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(s) {
		m[k] = true
	}
	return m
}

func isBridgeKey(k string) bool {
	return bridgeKeys[k] || strings.HasPrefix(k, "bridge_") || strings.HasPrefix(k, "remote_") || strings.HasPrefix(k, "local_")
}

func buildMosquitto(main string, dirs []directive) *mosquitto {
	m := &mosquitto{main: main, global: map[string]directive{}, globalSec: newSecurity()}
	for _, d := range dirs {
		if d.key == "per_listener_settings" {
			m.perListener = isTrue(d)
		}
	}
	var cur *listener
	var bridge *bridgeSection
	current := func(d directive) *listener {
		if cur != nil {
			return cur
		}
		if m.def == nil {
			m.def = &listener{d: d, opts: map[string]directive{}, sec: newSecurity()}
		}
		return m.def
	}
	for _, d := range dirs {
		switch {
		case d.key == "listener":
			cur = &listener{d: d, explicit: true, opts: map[string]directive{}, sec: newSecurity()}
			m.listeners = append(m.listeners, cur)
		case d.key == "port" || d.key == "bind_address":
			// Options of the default listener wherever they appear.
			if m.def == nil {
				m.def = &listener{d: d, opts: map[string]directive{}, sec: newSecurity()}
			}
			if d.key == "port" {
				m.def.d = d
			}
			m.def.opts[d.key] = d
		case d.key == "connection":
			m.bridges = append(m.bridges, bridgeSection{name: d.value, d: d})
			bridge = &m.bridges[len(m.bridges)-1]
		case isBridgeKey(d.key) && bridge != nil:
			bridge.opts = append(bridge.opts, d)
		case listenerKeys[d.key]:
			current(d).opts[d.key] = d
		case securityKeys[d.key] || strings.HasPrefix(d.key, "plugin_opt_") || strings.HasPrefix(d.key, "auth_opt_"):
			if m.perListener {
				current(d).sec.set(d)
			} else {
				m.globalSec.set(d)
			}
		default:
			m.global[d.key] = d
		}
	}
	return m
}

// active returns the listeners Mosquitto opens: the explicit ones, and the
// default one when it was configured. With none, Mosquitto 2.0 listens on
// the loopback interface only.
func (m *mosquitto) active() []*listener {
	var out []*listener
	if m.def != nil && (hasOpt(m.def, "port") || hasOpt(m.def, "bind_address") || hasOpt(m.def, "certfile") || hasOpt(m.def, "protocol")) {
		out = append(out, m.def)
	}
	return append(out, m.listeners...)
}

func hasOpt(l *listener, k string) bool { _, ok := l.opts[k]; return ok }

func isTrue(d directive) bool { return strings.EqualFold(d.arg(0), "true") }

// name describes a listener for evidence.
func (l *listener) name() string {
	if l.explicit {
		return "listener " + strings.Join(strings.Fields(l.d.value), " ")
	}
	port := "1883"
	if d, ok := l.opts["port"]; ok {
		port = d.arg(0)
	}
	return "default listener (port " + port + ")"
}

// local reports whether the listener is reachable only from this host:
// bound to a loopback address or interface, or a Unix socket.
func (l *listener) local() bool {
	addr := ""
	if l.explicit {
		addr = l.d.arg(1)
	} else if d, ok := l.opts["bind_address"]; ok {
		addr = d.arg(0)
	}
	if d, ok := l.opts["bind_interface"]; ok && d.arg(0) != "lo" {
		return false
	} else if ok {
		return true
	}
	if strings.HasPrefix(addr, "/") || (l.explicit && l.d.arg(0) == "0") {
		return true // a Unix socket
	}
	return isLoopback(addr)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (l *listener) tls() bool { return hasOpt(l, "certfile") || hasOpt(l, "psk_hint") }

// mosquittoConf lints a mosquitto.conf and the files it includes and
// references.
func (l *linter) mosquittoConf(path string, data []byte) error {
	m := buildMosquitto(path, l.loadConf(path, data, 0))
	exposed := false
	for _, ln := range m.active() {
		if !ln.local() {
			exposed = true
		}
		l.listenerChecks(ln)
	}
	contexts := []security{m.globalSec}
	if m.perListener {
		contexts = nil
		if m.def != nil {
			contexts = append(contexts, m.def.sec)
		}
		for _, ln := range m.listeners {
			contexts = append(contexts, ln.sec)
		}
	}
	for _, sec := range contexts {
		l.securityChecks(m, sec)
	}
	if d, ok := m.global["check_retain_source"]; ok && !isTrue(d) {
		l.add("retain-source-unchecked", d.file, d.line, "check_retain_source %s", d.value)
	}
	if exposed {
		if !positive(m.global, "message_size_limit") && !positive(m.global, "max_packet_size") {
			l.add("no-message-size-limit", path, 0, "neither message_size_limit nor max_packet_size is set: messages of up to 256 MB are accepted")
		}
		if !positive(m.global, "max_keepalive") {
			l.add("no-keepalive-limit", path, 0, "max_keepalive is not set: clients may ask for keep-alives of up to 65535 s")
		}
		if !positive(m.global, "max_queued_bytes") {
			l.add("no-queue-limit", path, 0, "max_queued_bytes is not set: queued messages per client are bounded by count only")
		}
	}
	for _, b := range m.bridges {
		l.bridge(b)
	}
	return nil
}

// positive reports whether key is set to a number above zero.
func positive(opts map[string]directive, key string) bool {
	d, ok := opts[key]
	if !ok {
		return false
	}
	var n int64
	_, err := fmt.Sscan(d.arg(0), &n)
	return err == nil && n > 0
}

func (l *linter) listenerChecks(ln *listener) {
	if !ln.tls() && !ln.local() {
		proto := ""
		if d, ok := ln.opts["protocol"]; ok && d.arg(0) == "websockets" {
			proto = " (websockets)"
		}
		l.add("plaintext-listener", ln.d.file, ln.d.line, "%s%s listens on a network interface without certfile", ln.name(), proto)
	}
	if d, ok := ln.opts["tls_version"]; ok && weakTLSVersion(d.arg(0)) {
		l.add("tls-version", d.file, d.line, "tls_version %s on %s", d.arg(0), ln.name())
	}
	if d, ok := ln.opts["ciphers"]; ok {
		if weak := weakCiphers(d.value); len(weak) > 0 {
			l.add("tls-ciphers", d.file, d.line, "ciphers on %s include %s", ln.name(), strings.Join(weak, ", "))
		}
	}
	for _, k := range []string{"use_identity_as_username", "use_subject_as_username"} {
		if d, ok := ln.opts[k]; ok && isTrue(d) {
			if rc, ok := ln.opts["require_certificate"]; !ok || !isTrue(rc) {
				l.add("identity-without-certificate", d.file, d.line, "%s true on %s without require_certificate true: a client without a certificate connects with no user name", k, ln.name())
			}
		}
	}
	if !ln.local() && !positive(ln.opts, "max_connections") {
		l.add("no-connection-limit", ln.d.file, ln.d.line, "%s has no max_connections", ln.name())
	}
	for _, k := range []string{"certfile", "cafile", "crlfile"} {
		if d, ok := ln.opts[k]; ok {
			l.mustExist(d)
		}
	}
	if d, ok := ln.opts["keyfile"]; ok {
		l.secretFile(d)
	}
}

func (l *linter) securityChecks(m *mosquitto, sec security) {
	if d, ok := sec.opts["allow_anonymous"]; ok && isTrue(d) {
		l.add("allow-anonymous", d.file, d.line, "allow_anonymous true: clients without credentials connect")
	}
	bound := false
	for _, opts := range []map[string]directive{sec.opts, m.global} {
		if d, ok := opts["use_username_as_clientid"]; ok && isTrue(d) {
			bound = true
		}
	}
	if d, ok := sec.opts["password_file"]; ok {
		if p, data, ok := l.referenced(d); ok {
			l.secretMode(d, p)
			l.passwordFile(p, data)
		}
	}
	if d, ok := sec.opts["psk_file"]; ok {
		l.secretFile(d)
	}
	if d, ok := sec.opts["acl_file"]; ok {
		if p, data, ok := l.referenced(d); ok {
			if err := l.mosquittoACL(p, data, aclContext{fromConf: true, clientIDBound: bound}); err != nil {
				l.add("file-error", d.file, d.line, "acl_file %q: %v", d.value, err)
			}
		}
	}
	_, acl := sec.opts["acl_file"]
	if acl || len(sec.plugins) > 0 {
		return
	}
	for _, k := range []string{"password_file", "psk_file", "allow_anonymous"} {
		if d, ok := sec.opts[k]; ok && (k != "allow_anonymous" || isTrue(d)) {
			l.add("no-acl", d.file, d.line, "%s without acl_file or plugin: every client that connects may read and write every topic", k)
			return
		}
	}
}

func weakTLSVersion(v string) bool {
	switch strings.ToLower(v) {
	case "tlsv1", "tlsv1.0", "tlsv1.1", "sslv3":
		return true
	}
	return false
}

// weakCiphers returns the elements of an OpenSSL cipher list that enable
// broken or unauthenticated suites (excluded elements, "!X" and "-X", are
// ignored).
func weakCiphers(list string) []string {
	var weak []string
	for _, tok := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		if tok[0] == '!' || tok[0] == '-' {
			continue
		}
		u := strings.ToUpper(strings.TrimPrefix(tok, "+"))
		for _, w := range []string{"RC4", "RC2", "DES", "MD5", "NULL", "EXP", "ADH", "AECDH", "ANON", "LOW", "@SECLEVEL=0"} {
			if strings.Contains(u, w) {
				weak = append(weak, tok)
				break
			}
		}
	}
	return weak
}

// referenced reads a file a directive names. A missing or unreadable
// file is a finding at the directive.
func (l *linter) referenced(d directive) (string, []byte, bool) {
	p := resolve(d.file, d.value)
	if l.seen[p] {
		return p, nil, false
	}
	l.seen[p] = true
	data, err := l.fs.readFile(p)
	if err != nil {
		l.add("file-error", d.file, d.line, "%s %q: %v", d.key, d.value, err)
		return p, nil, false
	}
	l.read(p)
	return p, data, true
}

// mustExist reports a file a directive names that cannot be found.
func (l *linter) mustExist(d directive) {
	if _, err := l.fs.mode(resolve(d.file, d.value)); err != nil {
		l.add("file-error", d.file, d.line, "%s %q: %v", d.key, d.value, err)
	}
}

// secretFile reports a secret file a directive names that is missing or
// readable by every local user.
func (l *linter) secretFile(d directive) {
	p := resolve(d.file, d.value)
	if _, err := l.fs.mode(p); err != nil {
		l.add("file-error", d.file, d.line, "%s %q: %v", d.key, d.value, err)
		return
	}
	l.secretMode(d, p)
}

func (l *linter) secretMode(d directive, p string) {
	if mode, err := l.fs.mode(p); err == nil && mode&0o004 != 0 {
		l.add("world-readable-file", d.file, d.line, "%s %q is readable by every local user (mode %04o)", d.key, d.value, mode)
	}
}
