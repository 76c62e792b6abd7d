package lint

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// lintConf lints conf (and files) in memory and returns "ID:line" of each
// finding in c.conf.
func lintConf(t *testing.T, conf string, files ...string) []string {
	t.Helper()
	m := memFS{"c.conf": conf}
	for i := 0; i+1 < len(files); i += 2 {
		m[files[i]] = files[i+1]
	}
	l := newLinter(m)
	require.NoError(t, l.mosquittoConf("c.conf", []byte(conf)))
	var out []string
	for _, f := range l.report().Findings {
		if f.File == "c.conf" && f.Line > 0 {
			out = append(out, f.ID+":"+itoa(f.Line))
		}
	}
	return out
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestListenerModel(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       []string
	}{
		{"no listener: loopback only", "allow_anonymous false\n", nil},
		{"port after a listener is the default listener's",
			"listener 8883\ncertfile s.pem\nmax_connections 10\nport 1883\n",
			[]string{"plaintext-listener:4", "no-connection-limit:4"}},
		{"bind_address keeps the default listener local", "port 1883\nbind_address 127.0.0.1\n", nil},
		{"bind_address anywhere", "port 1883\nbind_address 0.0.0.0\nmax_connections 5\n", []string{"plaintext-listener:1"}},
		{"loopback interface", "listener 1883\nbind_interface lo\n", nil},
		{"other interface", "listener 1883 127.0.0.1\nbind_interface eth0\nmax_connections 5\n", []string{"plaintext-listener:1"}},
		{"unix socket", "listener 0 /run/mosquitto.sock\n", nil},
		{"ipv6 loopback", "listener 1883 ::1\n", nil},
		{"psk listener is TLS", "listener 8883\npsk_hint hint\nmax_connections 5\n", nil},
		{"identity with require_certificate", "listener 8883\ncertfile s.pem\nrequire_certificate true\nuse_subject_as_username true\nmax_connections 5\n", nil},
		{"identity without", "listener 8883\ncertfile s.pem\nuse_subject_as_username true\nmax_connections 5\n", []string{"identity-without-certificate:3"}},
		{"anonymous in per-listener mode", "per_listener_settings true\nlistener 1883 127.0.0.1\nallow_anonymous true\nacl_file a\n", []string{"allow-anonymous:3"}},
		{"password file alone", "password_file p\n", []string{"no-acl:1"}},
		{"password file and plugin", "password_file p\nplugin /usr/lib/auth.so\n", nil},
		{"allow_anonymous false is no finding", "allow_anonymous false\ncheck_retain_source true\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lintConf(t, tc.conf, "s.pem", "", "p", "u:$2a$11$1rD0kSYKTIA/if6TiXl14unVODbRzs1yF7Aivji.hYvMVqP6Aqxf6\n", "a", "user u\ntopic u/#\n")
			require.ElementsMatch(t, tc.want, got)
		})
	}
}

func TestWeakCiphers(t *testing.T) {
	require.Empty(t, weakCiphers("ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!RC4:-3DES:!MD5:!EXP"))
	require.Equal(t, []string{"DES-CBC3-SHA", "RC4-SHA", "aNULL", "EXP-RC4-MD5", "DEFAULT@SECLEVEL=0"},
		weakCiphers("ECDHE-RSA-AES128-GCM-SHA256:DES-CBC3-SHA RC4-SHA,aNULL:EXP-RC4-MD5:DEFAULT@SECLEVEL=0"))
	for v, weak := range map[string]bool{"tlsv1": true, "tlsv1.1": true, "TLSv1.1": true, "tlsv1.2": false, "tlsv1.3": false} {
		require.Equal(t, weak, weakTLSVersion(v), v)
	}
}
