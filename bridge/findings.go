package bridge

import (
	"fmt"
	"net/url"
)

// Severity ranks a [Finding].
type Severity string

// The severities of findings, as the lint and scan reports use them.
const (
	SeverityHigh   Severity = "high"
	SeverityMedium Severity = "medium"
	SeverityLow    Severity = "low"
	SeverityInfo   Severity = "info"
)

// Finding IDs. They are stable: reports, suppressions and CI rules may
// refer to them.
const (
	// FindingInsecure: Mosquitto's bridge_insecure true, the remote's
	// certificate host name is not verified.
	FindingInsecure = "bridge-insecure"
	// FindingPlaintextPassword: a password written in the configuration
	// (remote_password, local_password, insecure_password).
	FindingPlaintextPassword = "bridge-plaintext-password"
	// FindingPlaintext: the bridge connects without TLS.
	FindingPlaintext = "bridge-plaintext"
	// FindingNoCA: TLS settings (a client certificate, a TLS version, ALPN,
	// OCSP) without a CA file or path: Mosquitto then does not enable TLS at
	// all.
	FindingNoCA = "bridge-no-ca"
	// FindingTLSVersion: TLS 1.1 or lower allowed (the ID the lint
	// package uses for listeners too).
	FindingTLSVersion = "tls-version"
	// FindingLoop: mappings that can forward a message back, without
	// loop prevention.
	FindingLoop = "bridge-loop"
	// FindingProtocol: a bridge that is not MQTT v5 (mqttsec bridges are).
	FindingProtocol = "bridge-protocol"
	// FindingClientID: no explicit remote client ID.
	FindingClientID = "bridge-client-id"
	// FindingUnsupported: a Mosquitto setting without an equivalent here.
	FindingUnsupported = "bridge-unsupported"
)

// Finding is a weakness or an import note about one bridge, in the shape
// the lint package reports: a stable ID, a severity, where it is, what is
// wrong and what to do. It never contains a password.
type Finding struct {
	ID       string
	Severity Severity
	// Bridge is the bridge's name (Mosquitto's connection name).
	Bridge string
	// File is the file of the setting, when the caller named it
	// ([MosquittoLine.File]).
	File string
	// Line is the line of the setting in its file, 0 when unknown.
	Line int
	// Message says what is wrong.
	Message string
	// Remediation says how to fix it.
	Remediation string
}

// String returns "FILE:N: bridge NAME: ID (severity): message", or
// "line N: ..." without a file.
func (f Finding) String() string {
	at := fmt.Sprintf("line %d", f.Line)
	if f.File != "" {
		at = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return fmt.Sprintf("%s: bridge %q: %s (%s): %s", at, f.Bridge, f.ID, f.Severity, f.Message)
}

// Findings reports the insecure settings a valid Config may still carry,
// because their loudly named switch allows them: a plaintext remote, an
// inline password, TLS 1.1, loop prevention turned off. Line is the bridge's
// line when it was decoded from YAML.
func (c Config) Findings() []Finding {
	var fs []Finding
	add := func(id string, sev Severity, msg, fix string) {
		fs = append(fs, Finding{ID: id, Severity: sev, Bridge: c.Name, Line: c.line, Message: msg, Remediation: fix})
	}
	if u, err := parseURL(c.Remote); err == nil && !secureScheme(u.Scheme) {
		sev := SeverityHigh
		if isLoopback(u.Hostname()) {
			sev = SeverityMedium
		}
		add(FindingPlaintext, sev, fmt.Sprintf("remote %s is plaintext (insecure_plaintext): messages and credentials are readable on the path", hostOf(u)),
			"use mqtts:// or wss:// with tls.ca_file and remove insecure_plaintext")
	}
	if c.InsecurePassword != "" {
		add(FindingPlaintextPassword, SeverityHigh, "the password is written in the configuration (insecure_password)",
			"move it to a file readable only by the bridge (chmod 600) and set password_file, or set password_env")
	}
	if c.TLS.InsecureAllowTLS11 || c.TLS.MinVersion == "1.1" {
		add(FindingTLSVersion, SeverityMedium, "TLS 1.1 is allowed (insecure_allow_tls11)", "remove min_version 1.1 and insecure_allow_tls11")
	}
	if c.DisableLoopPrevention {
		add(FindingLoop, SeverityLow, "loop prevention is disabled: no no-local subscriptions, no loop marker",
			"remove disable_loop_prevention unless the remote broker rejects no-local subscriptions")
	}
	return fs
}

func hostOf(u *url.URL) string { return u.Scheme + "://" + u.Host }
