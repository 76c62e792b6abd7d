package lint

import (
	"net"
	"strings"
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

// bridge lints one bridge section.
//
// This is the seam for package bridge: once its Mosquitto bridge-section
// importer exists, feed it the section's lines (b.d and b.opts, in order)
// and map its findings here; the checks below that it covers (insecure,
// plaintext password, TLS options without a CA, plaintext to a remote
// host) then go, so that lint and bridge never disagree on what a bridge
// section means.
func (l *linter) bridge(b bridgeSection) {
	if d, ok := b.get("bridge_insecure"); ok && isTrue(d) {
		l.add("bridge-insecure", d.file, d.line, "bridge %q: bridge_insecure true", b.name)
	}
	if d, ok := b.get("remote_password"); ok {
		l.add("bridge-plaintext-password", d.file, d.line, "bridge %q: remote_password in clear in the configuration", b.name)
	}
	if d, ok := b.get("bridge_tls_version"); ok && weakTLSVersion(d.arg(0)) {
		l.add("tls-version", d.file, d.line, "bridge %q: bridge_tls_version %s", b.name, d.arg(0))
	}
	if d, ok := b.get("bridge_keyfile"); ok {
		l.secretFile(d)
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
