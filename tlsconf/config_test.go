package tlsconf_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestParseConfig(t *testing.T) {
	hexPin := strings.Repeat("ab", 32)
	b64Pin := "sha256/" + strings.Repeat("A", 43) + "="
	for _, tc := range []struct {
		name string
		yaml string
		want string // substring of the error; "" means valid
	}{
		{"empty", "", ""},
		{"full", `
cert_file: /etc/mqtt/server.pem
key_file: /etc/mqtt/server.key
ca_file: /etc/mqtt/ca.pem
crl_files: [/etc/mqtt/ca.crl]
client_auth: require
min_version: "1.3"
alpn: [mqtt]
pinned_spki: ["` + hexPin + `", "` + b64Pin + `"]
allowed_names: [sensor-1]
expiry_warning: 720h
disable_session_tickets: true
watch: poll
poll_interval: 2s
`, ""},
		{"unknown key", "cert: x", "field cert not found"},
		{"insecure skip verify does not exist", "insecure_skip_verify: true", "not found"},
		{"bad client_auth", "client_auth: maybe\nca_file: ca.pem", `client_auth "maybe"`},
		{"require needs ca", "client_auth: require", "needs ca_file"},
		{"verify-if-given needs ca", "client_auth: verify-if-given", "needs ca_file"},
		{"tls 1.1 refused", `min_version: "1.1"`, "insecure_allow_tls11"},
		{"tls 1.1 when insecure", "min_version: \"1.1\"\ninsecure_allow_tls11: true", ""},
		{"tls 1.0 never", "min_version: \"1.0\"\ninsecure_allow_tls11: true", "want 1.2 or 1.3"},
		{"float version", "min_version: 1.2", ""},
		{"cert without key", "cert_file: a.pem", "go together"},
		{"key without cert", "key_file: a.key", "go together"},
		{"short pin", "pinned_spki: [abc]", "pinned_spki"},
		{"bad hex pin", "pinned_spki: [" + strings.Repeat("zz", 32) + "]", "pinned_spki"},
		{"crl without ca", "crl_files: [a.crl]", "need ca_file"},
		{"empty crl", "ca_file: ca.pem\ncrl_files: ['']", "empty crl_files"},
		{"empty alpn", "alpn: ['']", "alpn"},
		{"bad watch", "watch: inotify", "watch"},
		{"negative poll", "poll_interval: -1s", "poll_interval"},
		{"bad duration", "expiry_warning: soon", "into time.Duration"},
		{"not a map", "- a\n- b", "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tlsconf.ParseConfig([]byte(tc.yaml))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tlsconf.ErrConfig)
			require.ErrorContains(t, err, tc.want)
			require.Zero(t, c.CertFile)
		})
	}

	c, err := tlsconf.ParseConfig([]byte("expiry_warning: 72h\nclient_auth: none"))
	require.NoError(t, err)
	require.Equal(t, 72*time.Hour, c.ExpiryWarning)
	require.Equal(t, tlsconf.ClientAuthNone, c.ClientAuth)
}

func TestConfigRoundTrip(t *testing.T) {
	in := tlsconf.Config{CertFile: "a.pem", KeyFile: "a.key", CAFile: "ca.pem", ClientAuth: tlsconf.ClientAuthRequire,
		MinVersion: "1.3", ExpiryWarning: time.Hour, PinnedSPKI: []string{strings.Repeat("0", 64)}}
	out, err := yaml.Marshal(in)
	require.NoError(t, err)
	back, err := tlsconf.ParseConfig(out)
	require.NoError(t, err)
	require.Equal(t, in, back)
}
