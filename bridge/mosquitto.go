package bridge

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqttsec/mqttsec/topic"
)

// MaxMosquittoLine bounds the length of a mosquitto.conf line ParseMosquitto
// accepts.
const MaxMosquittoLine = 64 << 10

// mosquittoBridge is one "connection" section as Mosquitto reads it.
type mosquittoBridge struct {
	name string
	line int

	addresses []string
	addrLine  int

	cafile, capath, certfile, keyfile, psk, identity string
	cafileLine, pskLine, capathLine                  int
	tlsOption                                        string // the first TLS option seen
	tlsOptionLine                                    int
	useOSCerts, insecure                             bool
	insecureLine                                     int
	tlsVersion                                       string
	tlsVersionLine                                   int
	alpn                                             string

	username, clientID, localClientID string
	passwordLine, localPasswordLine   int
	cleanSession                      bool
	keepalive                         int
	protocol                          string
	protocolLine                      int
	tryPrivate                        bool
	tryPrivateLine                    int
	notifications                     bool
	notificationTopic                 string
	restartBase, restartCap           int
	maxPacket                         int

	topics     []Mapping
	topicLines []int

	unsupported []Finding
	seen        map[string]int // string options already set, for Mosquitto's duplicate check
}

// ParseMosquitto reads the bridge sections of a mosquitto.conf (each starts
// at a "connection NAME" line; other settings are ignored) and imports them
// into Configs, with findings for their insecure settings:
//
//   - bridge_insecure true: [FindingInsecure] (the host name of the remote's
//     certificate is not verified; the import keeps verification on);
//   - remote_password, password, local_password: [FindingPlaintextPassword]
//     (the password is not imported: put it in a file and set password_file);
//   - no bridge_cafile, bridge_capath or bridge_tls_use_os_certs, so Mosquitto
//     connects in plaintext: [FindingPlaintext] for a host other than
//     loopback (the import keeps the mqtt:// URL without insecure_plaintext,
//     which Validate refuses until it is fixed, loopback included);
//   - TLS options (bridge_certfile, bridge_keyfile, bridge_tls_version,
//     bridge_alpn, bridge_require_ocsp) without a CA: [FindingNoCA];
//   - bridge_tls_version tlsv1.1: [FindingTLSVersion] (imported as TLS 1.2);
//   - try_private false with mappings that loop: [FindingLoop];
//   - a protocol other than mqttv50, no remote_clientid, and settings without an
//     equivalent (PSK, capath, several addresses, lazy start, ...): notes.
//
// The import never copies a secret and never sets an Insecure switch by
// itself. It fails, wrapping [ErrMosquitto] with the line, where Mosquitto
// itself would refuse the file: a bridge option before any connection, a
// duplicate connection name, an invalid topic line, a bridge without address
// or topics. Call [ValidateAll] on the result before starting it.
func ParseMosquitto(r io.Reader) ([]Config, []Finding, error) {
	var lines []MosquittoLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxMosquittoLine)
	for sc.Scan() {
		lines = append(lines, MosquittoLine{Line: len(lines) + 1, Text: sc.Text()})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrMosquitto, len(lines)+1, MaxMosquittoLine)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrMosquitto, err)
	}
	return ParseMosquittoLines(lines)
}

// MosquittoLine is one line of a Mosquitto configuration and where it comes
// from, for [ParseMosquittoLines].
type MosquittoLine struct {
	// File is the file the line comes from (reported in findings and
	// errors; may be empty).
	File string
	// Line is its line number in File.
	Line int
	// Text is the line, without its newline.
	Text string
}

// ParseMosquittoLines is [ParseMosquitto] for lines gathered by the caller,
// from several files (include_dir) or only a bridge's section: findings and
// errors carry each line's File and Line.
func ParseMosquittoLines(lines []MosquittoLine) ([]Config, []Finding, error) {
	var (
		bridges []*mosquittoBridge
		cur     *mosquittoBridge
	)
	// Positions are indexes into lines, plus one, until the end.
	where := func(pos int) string {
		if pos < 1 || pos > len(lines) {
			return "line ?"
		}
		l := lines[pos-1]
		if l.File != "" {
			return fmt.Sprintf("%s:%d", l.File, l.Line)
		}
		return fmt.Sprintf("line %d", l.Line)
	}
	lineNo := 0
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrMosquitto, where(lineNo), fmt.Sprintf(format, args...))
	}
	for _, ml := range lines {
		lineNo++
		if len(ml.Text) > MaxMosquittoLine {
			return nil, nil, fail("longer than %d bytes", MaxMosquittoLine)
		}
		line := strings.TrimRight(ml.Text, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		toks := strings.Split(line, " ")
		i := 0
		next := func() (string, bool) {
			for i < len(toks) && toks[i] == "" {
				i++
			}
			if i == len(toks) {
				return "", false
			}
			i++
			return toks[i-1], true
		}
		rest := func() string {
			return strings.Trim(strings.Join(toks[min(i, len(toks)):], " "), " \t")
		}
		key, ok := next()
		if !ok {
			continue
		}
		if key == "connection" {
			name, ok := next()
			if !ok {
				return nil, nil, fail("empty connection name")
			}
			for _, b := range bridges {
				if b.name == name {
					return nil, nil, fail("duplicate bridge name %q", name)
				}
			}
			cur = &mosquittoBridge{name: name, line: lineNo, keepalive: 60, tryPrivate: true, notifications: true, protocol: "mqttv311", seen: map[string]int{}}
			bridges = append(bridges, cur)
			continue
		}
		if !mosquittoBridgeKeys[key] {
			continue
		}
		if cur == nil {
			return nil, nil, fail("%s outside a bridge (no connection line before it)", key)
		}
		str := func() (string, error) {
			v := rest()
			if v == "" {
				return "", fail("empty %s value", key)
			}
			if !utf8.ValidString(v) || len(v) > 65535 {
				return "", fail("malformed %s value", key)
			}
			canon := canonicalKey(key)
			if _, dup := cur.seen[canon]; dup {
				return "", fail("duplicate %s value", key)
			}
			cur.seen[canon] = lineNo
			return v, nil
		}
		boolean := func() (bool, error) {
			v, _ := next()
			switch v {
			case "true", "1":
				return true, nil
			case "false", "0":
				return false, nil
			case "":
				return false, fail("empty %s value", key)
			}
			return false, fail("invalid %s value %q", key, v)
		}
		var err error
		switch key {
		case "bridge_certfile", "bridge_keyfile", "bridge_tls_version", "bridge_alpn", "bridge_require_ocsp":
			if cur.tlsOption == "" {
				cur.tlsOption, cur.tlsOptionLine = key, lineNo
			}
		}
		switch key {
		case "address", "addresses":
			if cur.addresses != nil {
				return nil, nil, fail("a bridge has one address line")
			}
			for {
				t, ok := next()
				if !ok || t[0] == '#' {
					break
				}
				cur.addresses = append(cur.addresses, t)
			}
			if len(cur.addresses) == 0 {
				return nil, nil, fail("empty address value")
			}
			for _, a := range cur.addresses {
				if _, _, err := splitMosquittoAddress(a); err != nil {
					return nil, nil, fail("%v", err)
				}
			}
			cur.addrLine = lineNo
		case "bridge_cafile":
			cur.cafile, err = str()
			cur.cafileLine = lineNo
		case "bridge_capath":
			cur.capath, err = str()
			cur.capathLine = lineNo
		case "bridge_certfile":
			cur.certfile, err = str()
		case "bridge_keyfile":
			cur.keyfile, err = str()
		case "bridge_psk":
			cur.psk, err = str()
			cur.pskLine = lineNo
		case "bridge_identity":
			cur.identity, err = str()
		case "bridge_alpn":
			cur.alpn, err = str()
		case "bridge_tls_version":
			cur.tlsVersion, err = str()
			cur.tlsVersionLine = lineNo
		case "bridge_insecure":
			cur.insecure, err = boolean()
			cur.insecureLine = lineNo
		case "bridge_tls_use_os_certs":
			cur.useOSCerts, err = boolean()
		case "bridge_protocol_version":
			v := rest()
			switch v {
			case "mqttv31", "mqttv311", "mqttv50":
				cur.protocol, cur.protocolLine = v, lineNo
			case "":
				err = fail("empty bridge_protocol_version value")
			default:
				err = fail("invalid bridge_protocol_version value %q", v)
			}
		case "remote_username", "username":
			cur.username, err = str()
		case "remote_password", "password":
			_, err = str() // never kept
			cur.passwordLine = lineNo
		case "local_password":
			_, err = str()
			cur.localPasswordLine = lineNo
		case "local_username":
			_, err = str()
		case "remote_clientid", "clientid":
			cur.clientID, err = str()
		case "local_clientid":
			cur.localClientID, err = str()
		case "cleansession":
			cur.cleanSession, err = boolean()
		case "local_cleansession", "bridge_attempt_unsubscribe", "bridge_outgoing_retain", "notifications_local_only", "bridge_require_ocsp":
			var v bool
			v, err = boolean()
			if err == nil && (key == "bridge_outgoing_retain" && !v || key == "notifications_local_only" && v || key == "bridge_require_ocsp" && v) {
				cur.note(lineNo, fmt.Sprintf("%s %t has no equivalent and is ignored", key, v))
			}
		case "try_private":
			cur.tryPrivate, err = boolean()
			cur.tryPrivateLine = lineNo
		case "notifications":
			cur.notifications, err = boolean()
		case "notification_topic":
			cur.notificationTopic, err = str()
		case "keepalive_interval":
			v, ok := next()
			if !ok {
				err = fail("empty keepalive_interval value")
				break
			}
			cur.keepalive = max(atoi(v), 5)
		case "restart_timeout":
			v, ok := next()
			if !ok {
				err = fail("empty restart_timeout value")
				break
			}
			cur.restartBase = max(atoi(v), 1)
			if c, ok := next(); ok {
				cur.restartCap = atoi(c)
				if cur.restartCap < cur.restartBase {
					err = fail("restart_timeout cap below its base")
				}
			}
		case "bridge_max_packet_size":
			v, ok := next()
			if !ok {
				err = fail("empty bridge_max_packet_size value")
				break
			}
			cur.maxPacket = atoi(v)
			if cur.maxPacket < 0 {
				err = fail("invalid bridge_max_packet_size value %q", v)
			}
		case "start_type":
			v, _ := next()
			switch v {
			case "automatic":
			case "lazy", "once":
				cur.note(lineNo, fmt.Sprintf("start_type %s is not supported: the bridge always starts and reconnects", v))
			default:
				err = fail("invalid start_type value %q", v)
			}
		case "round_robin", "idle_timeout", "threshold", "bridge_bind_address", "bridge_keyform", "bridge_tcp_keepalive", "bridge_receive_maximum", "bridge_session_expiry_interval":
			cur.note(lineNo, key+" has no equivalent and is ignored")
		case "topic":
			err = cur.topic(toks[min(i, len(toks)):], fail)
			cur.topicLines = append(cur.topicLines, lineNo)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	var (
		cfgs     []Config
		findings []Finding
	)
	for _, b := range bridges {
		if len(b.addresses) == 0 {
			return nil, nil, fmt.Errorf("%w: %s: bridge %q has no address", ErrMosquitto, where(b.line), b.name)
		}
		if len(b.topics) == 0 {
			return nil, nil, fmt.Errorf("%w: %s: bridge %q has no topic", ErrMosquitto, where(b.line), b.name)
		}
		c, fs := b.convert()
		c.line = lines[b.line-1].Line
		cfgs = append(cfgs, c)
		findings = append(findings, fs...)
	}
	for i := range findings {
		if p := findings[i].Line; p >= 1 && p <= len(lines) {
			findings[i].File, findings[i].Line = lines[p-1].File, lines[p-1].Line
		}
	}
	return cfgs, findings, nil
}

// canonicalKey folds the legacy spellings of an option into one.
func canonicalKey(k string) string {
	switch k {
	case "username":
		return "remote_username"
	case "password":
		return "remote_password"
	case "clientid":
		return "remote_clientid"
	}
	return k
}

var mosquittoBridgeKeys = map[string]bool{
	"address": true, "addresses": true, "bridge_alpn": true, "bridge_attempt_unsubscribe": true,
	"bridge_bind_address": true, "bridge_cafile": true, "bridge_capath": true, "bridge_certfile": true,
	"bridge_identity": true, "bridge_insecure": true, "bridge_keyfile": true, "bridge_keyform": true,
	"bridge_max_packet_size": true, "bridge_outgoing_retain": true, "bridge_protocol_version": true,
	"bridge_psk": true, "bridge_require_ocsp": true, "bridge_tls_version": true, "bridge_tls_use_os_certs": true,
	"bridge_tcp_keepalive": true, "bridge_receive_maximum": true, "bridge_session_expiry_interval": true,
	"cleansession": true, "local_cleansession": true, "clientid": true, "remote_clientid": true,
	"idle_timeout": true, "keepalive_interval": true, "local_clientid": true, "local_password": true,
	"local_username": true, "notifications": true, "notifications_local_only": true, "notification_topic": true,
	"password": true, "remote_password": true, "restart_timeout": true, "round_robin": true, "start_type": true,
	"threshold": true, "topic": true, "try_private": true, "username": true, "remote_username": true,
}

func (b *mosquittoBridge) note(line int, msg string) {
	b.unsupported = append(b.unsupported, Finding{ID: FindingUnsupported, Severity: SeverityInfo, Bridge: b.name, Line: line,
		Message: msg, Remediation: "check that the bridge does not depend on it"})
}

// topic parses "topic pattern [[[out|in|both] qos] local-prefix remote-prefix]"
// as Mosquitto does: space-separated tokens, "" for an empty value, and a
// token starting with '#' after the QoS ending the line as a comment.
func (b *mosquittoBridge) topic(toks []string, fail func(string, ...any) error) error {
	var ts []string
	for _, t := range toks {
		if t != "" {
			ts = append(ts, t)
		}
	}
	if len(ts) == 0 {
		return fail("empty topic value")
	}
	m := Mapping{Pattern: ts[0], Direction: Out}
	if m.Pattern == `""` {
		m.Pattern = ""
	}
	var local, remote *string
	if len(ts) > 1 {
		switch strings.ToLower(ts[1]) {
		case "out":
			m.Direction = Out
		case "in":
			m.Direction = In
		case "both":
			m.Direction = Both
		default:
			return fail("invalid bridge topic direction %q", ts[1])
		}
		if len(ts) > 2 {
			q := atoi(ts[2])
			if q < 0 || q > 2 {
				return fail("invalid bridge QoS level %q", ts[2])
			}
			m.QoS = byte(q)
			if ts[2][0] != '#' && len(ts) > 3 {
				l := ts[3]
				if l[0] != '#' {
					if l != `""` {
						local = &l
					}
					if len(ts) > 4 && ts[4][0] != '#' && ts[4] != `""` {
						r := ts[4]
						remote = &r
					}
				}
			}
		}
	}
	for _, p := range []*string{local, remote} {
		if p != nil && (topic.HasWildcard(*p) || !utf8.ValidString(*p) || len(*p) > topic.MaxLen) {
			return fail("invalid bridge topic prefix %q", *p)
		}
	}
	if m.Pattern == "" && (local == nil || remote == nil) {
		return fail("invalid bridge remapping: an empty pattern needs both prefixes")
	}
	if local != nil {
		m.LocalPrefix = *local
	}
	if remote != nil {
		m.RemotePrefix = *remote
	}
	if m.Pattern != "" {
		for _, f := range []string{m.Pattern, m.LocalPrefix + m.Pattern, m.RemotePrefix + m.Pattern} {
			if topic.ValidateFilter(f) != nil {
				return fail("invalid bridge topic %q", f)
			}
		}
	}
	b.topics = append(b.topics, m)
	return nil
}

// splitMosquittoAddress splits "host[:port]" at the last colon, as Mosquitto
// does (an IPv6 address therefore needs its port).
func splitMosquittoAddress(a string) (host string, port int, err error) {
	host, p, ok := cutLast(a, ":")
	if !ok {
		return a, 1883, nil
	}
	port = atoi(p)
	if port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port value %q", p)
	}
	if host == "" {
		return "", 0, fmt.Errorf("address %q has no host", a)
	}
	return host, port, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// atoi converts like C's atoi: optional sign, leading digits, 0 otherwise.
func atoi(s string) int {
	s = strings.TrimLeft(s, " \t")
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	n := 0
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
		if n > 1<<31 {
			n = 1 << 31
		}
	}
	if neg {
		return -n
	}
	return n
}

// convert turns a Mosquitto bridge into a Config and its findings.
func (b *mosquittoBridge) convert() (Config, []Finding) {
	var fs []Finding
	add := func(id string, sev Severity, line int, msg, fix string) {
		fs = append(fs, Finding{ID: id, Severity: sev, Bridge: b.name, Line: line, Message: msg, Remediation: fix})
	}
	c := Config{Name: b.name, line: b.line, Username: b.username, ClientID: b.clientID, LocalClientID: b.localClientID,
		CleanStart: b.cleanSession, Topics: b.topics}
	useTLS := b.cafile != "" || b.capath != "" || b.psk != "" || b.useOSCerts
	host, port, _ := splitMosquittoAddress(b.addresses[0])
	scheme := "mqtt"
	if useTLS {
		scheme = "mqtts"
	}
	c.Remote = scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port))
	if len(b.addresses) > 1 {
		b.note(b.addrLine, fmt.Sprintf("%d addresses: only the first, %s, is imported", len(b.addresses), b.addresses[0]))
	}
	if !useTLS {
		if b.tlsOption != "" {
			add(FindingNoCA, SeverityHigh, b.tlsOptionLine,
				fmt.Sprintf("%s is set but neither bridge_cafile nor bridge_capath: Mosquitto does not enable TLS and the bridge connects in plaintext", b.tlsOption),
				"set bridge_cafile to the CA that signs the remote broker's certificate")
		}
		if !isLoopback(host) {
			add(FindingPlaintext, SeverityHigh, b.addrLine,
				fmt.Sprintf("the bridge connects to %s without TLS (no bridge_cafile, bridge_capath or bridge_tls_use_os_certs): messages and credentials cross the network in clear", net.JoinHostPort(host, strconv.Itoa(port))),
				"enable TLS on the remote listener and set bridge_cafile (mqttsec: remote mqtts://, tls.ca_file)")
		}
	} else {
		c.TLS.CAFile = b.cafile
		c.TLS.CertFile, c.TLS.KeyFile = b.certfile, b.keyfile
		if b.alpn != "" {
			c.TLS.ALPN = []string{b.alpn}
		}
		if b.cafile == "" && b.capath != "" {
			b.note(b.capathLine, "bridge_capath is not supported: the import trusts the system roots; concatenate the CA certificates into one file and set tls.ca_file")
		}
		if b.psk != "" {
			b.note(b.pskLine, "TLS-PSK (bridge_psk, bridge_identity) is not supported: the import uses certificate-based TLS with the system roots")
		}
	}
	if b.insecure {
		add(FindingInsecure, SeverityHigh, b.insecureLine,
			"bridge_insecure true: the host name in the remote's certificate is not verified, so anyone able to get a certificate from the same CA can impersonate the remote",
			"remove bridge_insecure and give the remote a certificate for its name (mqttsec always verifies it)")
	}
	switch b.tlsVersion {
	case "tlsv1.3":
		if useTLS {
			c.TLS.MinVersion = "1.3"
		}
	case "tlsv1.1", "tlsv1":
		add(FindingTLSVersion, SeverityMedium, b.tlsVersionLine,
			fmt.Sprintf("bridge_tls_version %s allows a deprecated TLS version (RFC 8996)", b.tlsVersion),
			"use tlsv1.2 or tlsv1.3 (the import uses TLS 1.2 at least)")
	}
	if b.passwordLine != 0 {
		add(FindingPlaintextPassword, SeverityHigh, b.passwordLine,
			"remote_password is written in the configuration file in clear (not imported)",
			"write the password to a file readable only by the bridge (chmod 600) and set password_file")
	}
	if b.localPasswordLine != 0 {
		add(FindingPlaintextPassword, SeverityMedium, b.localPasswordLine,
			"local_password is written in the configuration file in clear (not imported)",
			"give the bridge's local connection its credentials from a file or the environment")
	}
	if b.protocol != "mqttv50" {
		line := b.protocolLine
		if line == 0 {
			line = b.line
		}
		add(FindingProtocol, SeverityInfo, line,
			fmt.Sprintf("protocol %s: imported as MQTT v5 (no-local subscriptions and the loop marker need it)", b.protocol),
			"check that the remote broker supports MQTT v5")
		if !b.tryPrivate && len(loops(b.topics)) > 0 {
			add(FindingLoop, SeverityMedium, b.tryPrivateLine,
				"try_private false with mappings that forward messages back: without MQTT v5 no-local the bridge can loop",
				"set bridge_protocol_version mqttv50 or try_private true, or make the in and out topics disjoint")
		}
	}
	if b.clientID == "" {
		c.ClientID = b.name
		add(FindingClientID, SeverityInfo, b.line,
			fmt.Sprintf("no remote_clientid: Mosquitto uses %q plus the host name; imported as %q", b.name+".", b.name),
			"set remote_clientid (client_id) to a value unique on the remote broker")
	}
	c.KeepAlive = time.Duration(b.keepalive) * time.Second
	if b.notifications && b.notificationTopic != "" {
		c.StatusTopic = b.notificationTopic
	}
	if b.restartBase > 0 {
		c.ReconnectMin = time.Duration(b.restartBase) * time.Second
		c.ReconnectMax = c.ReconnectMin
		if b.restartCap > 0 {
			c.ReconnectMax = time.Duration(b.restartCap) * time.Second
		}
	}
	if b.maxPacket > 0 {
		c.MaxPacketSize = b.maxPacket
	}
	return c, append(fs, b.unsupported...)
}
