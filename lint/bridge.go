package lint

import (
	"net"
	"strings"

	"github.com/mqttsec/mqttsec/bridge"
)

// bridgeSection is a Mosquitto bridge: its "connection" line and the
// bridge options that follow it.
type bridgeSection struct {
	name string
	d    directive
	opts []directive
}

func (b bridgeSection) get(key string) (directive, bool) {
	var last directive
	found := false
	for _, d := range b.opts {
		if d.key == key {
			last, found = d, true
		}
	}
	return last, found
}

// bridge lints one bridge section with package bridge's importer, so that
// lint and bridge never disagree on what a bridge section means; the
// import notes that concern mqttsec's own bridge (MQTT v5, no explicit
// client ID, settings without an equivalent) are left out.
func (l *linter) bridge(b bridgeSection) {
	if d, ok := b.get("bridge_keyfile"); ok {
		l.secretFile(d)
	}
	lines := make([]bridge.MosquittoLine, 0, 1+len(b.opts))
	lines = append(lines, bridge.MosquittoLine{File: b.d.file, Line: b.d.line, Text: "connection " + b.d.value})
	for _, d := range b.opts {
		lines = append(lines, bridge.MosquittoLine{File: d.file, Line: d.line, Text: d.key + " " + d.value})
	}
	_, findings, err := bridge.ParseMosquittoLines(lines)
	if err != nil {
		l.add("bridge-invalid", b.d.file, b.d.line, "bridge %q: %v", b.name, err)
		l.bridgeDirect(b)
		return
	}
	for _, f := range findings {
		switch f.ID {
		case bridge.FindingInsecure, bridge.FindingPlaintextPassword, bridge.FindingPlaintext,
			bridge.FindingNoCA, bridge.FindingTLSVersion, bridge.FindingLoop:
			file, line := f.File, f.Line
			if file == "" {
				file, line = b.d.file, b.d.line
			}
			l.add(f.ID, file, line, "bridge %q: %s", b.name, f.Message)
		}
	}
}

// bridgeDirect checks the settings of a bridge section the importer cannot
// read (it is reported as bridge-invalid): the dangerous ones are still
// reported.
func (l *linter) bridgeDirect(b bridgeSection) {
	if d, ok := b.get("bridge_insecure"); ok && isTrue(d) {
		l.add("bridge-insecure", d.file, d.line, "bridge %q: bridge_insecure true", b.name)
	}
	if d, ok := b.get("remote_password"); ok {
		l.add("bridge-plaintext-password", d.file, d.line, "bridge %q: remote_password in clear in the configuration", b.name)
	}
	if d, ok := b.get("bridge_tls_version"); ok && weakTLSVersion(d.arg(0)) {
		l.add("tls-version", d.file, d.line, "bridge %q: bridge_tls_version %s", b.name, d.arg(0))
	}
	_, cafile := b.get("bridge_cafile")
	_, capath := b.get("bridge_capath")
	_, psk := b.get("bridge_psk")
	if cafile || capath || psk {
		return
	}
	for _, k := range []string{"bridge_certfile", "bridge_keyfile", "bridge_tls_version", "bridge_alpn", "bridge_require_ocsp"} {
		if d, ok := b.get(k); ok {
			l.add("bridge-no-ca", d.file, d.line, "bridge %q: %s without bridge_cafile or bridge_capath: the bridge does not use TLS", b.name, k)
			return
		}
	}
	for _, k := range []string{"address", "addresses"} {
		d, ok := b.get(k)
		if !ok {
			continue
		}
		for _, a := range strings.Fields(d.value) {
			host := a
			if h, _, err := net.SplitHostPort(a); err == nil {
				host = h
			}
			if !isLoopback(host) {
				l.add("bridge-plaintext", d.file, d.line, "bridge %q connects to %s without TLS", b.name, a)
				return
			}
		}
	}
}
