package lint

import (
	"path/filepath"
	"slices"
	"strings"
)

// directive is one line of a Mosquitto configuration: a key and the rest
// of the line.
type directive struct {
	file  string
	line  int
	key   string
	value string // the rest of the line, trimmed
}

// arg returns the i-th space-separated token of the value, or "".
func (d directive) arg(i int) string {
	f := strings.Fields(d.value)
	if i < len(f) {
		return f[i]
	}
	return ""
}

// parseConf splits a Mosquitto configuration into directives as Mosquitto
// 2.0 reads it: one directive per line, leading and trailing white space
// ignored, lines starting with '#' are comments (a '#' later in a line is
// part of the value: "topic # both"). It never fails: a line Mosquitto
// would refuse is still a directive, with whatever key it has.
func parseConf(file string, data []byte) []directive {
	var out []directive
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.Trim(line, " \t\r\v\f")
		if line == "" || line[0] == '#' {
			continue
		}
		key, value := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			key, value = line[:i], strings.Trim(line[i+1:], " \t")
		}
		out = append(out, directive{file: file, line: n + 1, key: key, value: value})
	}
	return out
}

// maxIncludeDepth bounds include_dir nesting.
const maxIncludeDepth = 8

// loadConf parses path and, where it says include_dir, the ".conf" files
// of that folder in alphabetical order (as Mosquitto does), each once.
func (l *linter) loadConf(path string, data []byte, depth int) []directive {
	l.seen[path] = true
	var out []directive
	for _, d := range parseConf(path, data) {
		out = append(out, d)
		if d.key != "include_dir" {
			continue
		}
		dir := resolve(path, d.value)
		names, err := l.fs.readDir(dir)
		if err != nil {
			l.add("file-error", d.file, d.line, "include_dir %q: %v", d.value, err)
			continue
		}
		slices.Sort(names)
		for _, name := range names {
			if !strings.HasSuffix(name, ".conf") {
				continue
			}
			p := filepath.Join(dir, name)
			if l.seen[p] {
				continue
			}
			if depth >= maxIncludeDepth {
				l.add("file-error", d.file, d.line, "include_dir %q: nested more than %d deep", d.value, maxIncludeDepth)
				break
			}
			b, err := l.fs.readFile(p)
			if err != nil {
				l.add("file-error", d.file, d.line, "include_dir %q: %v", d.value, err)
				continue
			}
			l.read(p)
			out = append(out, l.loadConf(p, b, depth+1)...)
		}
	}
	return out
}

// resolve interprets a path named in file: an absolute path as it is, a
// relative one against file's folder. (Mosquitto itself resolves relative
// paths against its working directory, which a linter cannot know; the
// configuration's folder is the usual one.)
func resolve(file, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(file), p)
}

// confKeys are the Mosquitto 2.0 configuration keys, for format detection.
var confKeys = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, k := range strings.Fields(`
acl_file address addresses allow_anonymous allow_duplicate_messages allow_zero_length_clientid
auth_plugin auth_plugin_deny_special_chars auto_id_prefix autosave_interval autosave_on_changes
bind_address bind_interface bridge_alpn bridge_attempt_unsubscribe bridge_bind_address bridge_cafile
bridge_capath bridge_certfile bridge_identity bridge_insecure bridge_keyfile bridge_max_packet_size
bridge_outgoing_retain bridge_protocol_version bridge_psk bridge_require_ocsp bridge_tls_version
cafile capath certfile check_retain_source ciphers ciphers_tls1.3 cleansession clientid clientid_prefixes
connection connection_messages crlfile dhparamfile enable_control_api http_dir idle_timeout include_dir
keepalive_interval keyfile listener local_clientid local_password local_username log_dest log_facility
log_timestamp log_timestamp_format log_type max_connections max_inflight_bytes max_inflight_messages
max_keepalive max_packet_size max_qos max_queued_bytes max_queued_messages memory_limit message_size_limit
mount_point notification_topic notifications notifications_local_only ocsp_data password_file per_listener_settings
persistence persistence_file persistence_location persistent_client_expiration pid_file plugin port protocol
psk_file psk_hint queue_qos0_messages remote_clientid remote_password remote_username require_certificate
restart_timeout retain_available round_robin set_tcp_nodelay socket_domain start_type sys_interval threshold
tls_engine tls_engine_kpass_sha1 tls_keyform tls_version topic try_private upgrade_outgoing_qos use_identity_as_username
use_subject_as_username use_username_as_clientid user websockets_headers_size websockets_log_level
`) {
		m[k] = struct{}{}
	}
	return m
}()
