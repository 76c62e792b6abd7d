package lint

import (
	"slices"
	"strings"
)

// Rule describes one kind of finding: its stable ID, title, severity and
// remediation. A Rule is a plain value.
type Rule struct {
	ID          string
	Title       string
	Severity    Severity
	Remediation string
}

// Rules returns every rule lint can report, sorted by ID.
func Rules() []Rule {
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.ID, b.ID) })
	return out
}

var rules = func() map[string]Rule {
	m := map[string]Rule{}
	for _, r := range []Rule{
		// Listeners and authentication.
		{"allow-anonymous", "Anonymous clients allowed", High,
			"Set allow_anonymous false and authenticate every client (password_file, certificates or a plugin)."},
		{"plaintext-listener", "Listener without TLS on a network interface", High,
			"Give the listener certfile and keyfile (port 8883), or bind it to 127.0.0.1 or a Unix socket. Without TLS, passwords and messages cross the network in clear."},
		{"tls-version", "TLS version below 1.2 allowed", Medium,
			"Use tls_version tlsv1.2 (or tlsv1.3). TLS 1.0 and 1.1 are deprecated by RFC 8996."},
		{"tls-ciphers", "Weak TLS ciphers allowed", Medium,
			"Allow ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 only, e.g. ciphers ECDHE+AESGCM:ECDHE+CHACHA20; never RC4, DES, 3DES, MD5, NULL, EXPORT or anonymous suites."},
		{"identity-without-certificate", "Certificate identity used without requiring a certificate", High,
			"Set require_certificate true (with cafile) on a listener that uses use_identity_as_username or use_subject_as_username."},
		{"no-acl", "Authentication without an ACL", Medium,
			"Add an acl_file (or an ACL plugin): without one, every client that connects may read and write every topic, $SYS included."},
		{"retain-source-unchecked", "Retained messages not re-checked against their source", Medium,
			"Remove check_retain_source false: with it, a retained message stays readable after its publisher lost the right to publish it."},
		{"clientid-pattern-unbound", "%c ACL patterns while clients choose their client IDs", Medium,
			"Bind client IDs to users (use_username_as_clientid true, or a plugin) or use %u instead of %c: a client picks its own client ID and with it the topics %c gives."},
		// Limits.
		{"no-message-size-limit", "No message size limit", Low,
			"Set message_size_limit (or max_packet_size) to what devices need; the default accepts 256 MB per message."},
		{"no-keepalive-limit", "No keep-alive limit", Low,
			"Set max_keepalive (e.g. 300) so that a client cannot hold a session for 18 hours of silence."},
		{"no-connection-limit", "No connection limit on a network listener", Low,
			"Set max_connections on each network listener to what it must serve."},
		{"no-queue-limit", "No limit on queued bytes per client", Low,
			"Set max_queued_bytes so that a slow or offline client cannot make the broker queue without bound."},
		// Files.
		{"world-readable-file", "Secret file readable by every local user", Medium,
			"chmod 600 (or 640 with the broker's group) key files, password files and PSK files."},
		{"file-error", "Referenced file missing, unreadable or unparsable", Medium,
			"Fix the path or the file: Mosquitto refuses to start, or starts without the protection the file was meant to give."},
		// Password files.
		{"weak-password-hash", "Weak password hash", Medium,
			"Re-hash with a slow function: mqttsec passwd (bcrypt) or mosquitto_passwd with many iterations. $6$ is one round of SHA-512 and $7$ with 101 iterations is cracked almost as fast when the file leaks."},
		{"password-not-hashed", "Password file line not in a hash format", High,
			"Store only hashes: run mosquitto_passwd -U on the file or set the password again with mqttsec passwd. A line that is not a hash is a plaintext password or a broken entry."},
		// ACLs.
		{"anonymous-wildcard-acl", "Anonymous clients granted a wildcard", High,
			"Remove topic # (and +/#) from the anonymous section of the acl_file: anonymous clients would read or write every topic."},
		{"broad-wildcard-grant", "ACL grants a broad wildcard to a user or role", Medium,
			"Grant the topics the principal needs (devices/%u/#, plant/+/alarm), not # or +/#: a broad wildcard reads or writes every other device's data."},
		{"template-share-prefix", "ACL template a value can complete to a $share filter", Medium,
			"Do not start a rule with a placeholder after $ ($%c/...): a user or client name could turn it into a shared subscription."},
		{"pattern-without-placeholder", "ACL pattern without %u or %c", Medium,
			"Use a topic line in the user's section, or add %u or %c: a pattern applies to every client alike."},
		{"acl-shadowed", "ACL rule that never changes a decision", Low,
			"Remove the rule, or fix the rule that covers it: a policy that says more than it does is misread."},
		{"acl-invalid-rule", "ACL rule that never matches", Medium,
			"Fix the act, effect or topic filter of the rule: as written it is ignored."},
		{"acl-finding", "ACL finding", Medium,
			"See the evidence."},
		// Bridges.
		{"bridge-insecure", "Bridge does not verify the remote certificate", High,
			"Remove bridge_insecure true: anyone on the path can impersonate the remote broker and read everything bridged."},
		{"bridge-plaintext-password", "Bridge password stored in the configuration", Medium,
			"Keep bridge credentials out of mosquitto.conf (use a client certificate, bridge_certfile and bridge_keyfile, or restrict the file to the broker's user)."},
		{"bridge-no-ca", "TLS bridge options without a CA", High,
			"Give bridge_cafile or bridge_capath: Mosquitto enables TLS on a bridge only with one, so this bridge connects in clear despite its TLS options."},
		{"bridge-loop", "Bridge mappings that can forward messages back", Medium,
			"Keep try_private true (the default) or map each direction to its own topics: a message a bridge forwards must not come back to it."},
		{"bridge-invalid", "Bridge section that does not parse", Medium,
			"Fix the bridge section: Mosquitto refuses to start, or runs the bridge without the settings it could not read."},
		{"bridge-plaintext", "Bridge to a remote host without TLS", High,
			"Connect the bridge with TLS (bridge_cafile, port 8883); otherwise its credentials and every bridged message cross the network in clear."},
	} {
		m[r.ID] = r
	}
	return m
}()
