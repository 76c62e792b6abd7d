package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/config"
)

// minimal is the smallest valid body after listeners.
const minimal = "auth: {password_file: passwd}\nacl: {acl_file: aclfile}\n"

// TestParseErrors checks that every refusal names the file, the line and
// the key, and wraps the right sentinel.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // each a line of the joined error
		is        error
	}{
		{"unknown top key", "listners: []\n", []string{`m.yaml:1: listners: unknown key "listners"`}, config.ErrUnknownKey},
		{"unknown nested key", "listeners:\n  - address: 127.0.0.1:1\n    tls:\n      cert: x\n" + minimal,
			[]string{`m.yaml:4: listeners[0].tls.cert: unknown key "cert"`}, config.ErrUnknownKey},
		{"duplicate key", "auth: {}\nauth: {}\n", []string{`m.yaml:2: mapping key "auth" already defined at line 1`}, config.ErrSyntax},
		{"wrong type", "listeners:\n  - address: 127.0.0.1:1\nbroker:\n  max_clients: many\n" + minimal,
			[]string{"m.yaml:4: broker.max_clients: many is not an integer"}, config.ErrSyntax},
		{"duration as a number", "listeners: [{address: \"127.0.0.1:1\"}]\nbroker: {connect_timeout: 10}\n" + minimal,
			[]string{"m.yaml:2: broker.connect_timeout: 10 is not a duration (10s, 5m, 24h)"}, config.ErrSyntax},
		{"not yaml", "listeners: [\n", []string{"m.yaml:"}, config.ErrSyntax},
		{"empty", "", []string{"m.yaml: empty configuration"}, config.ErrInvalid},
		{"two documents", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "---\nauth: {}\n", []string{"m.yaml:4: more than one YAML document"}, config.ErrSyntax},
		{"no listener", minimal, []string{"m.yaml: listeners: at least one listener is required"}, config.ErrInvalid},
		{"bad address", "listeners: [{address: \"localhost\"}]\n" + minimal, []string{`m.yaml:1: listeners[0].address: address "localhost": not host:port`}, config.ErrInvalid},
		{"plaintext on the network", "listeners:\n  - address: 0.0.0.0:1883\n" + minimal,
			[]string{`m.yaml:2: listeners[0].address: plaintext listener on the non-loopback address "0.0.0.0:1883"`, "set insecure_plaintext: true"}, config.ErrInsecure},
		{"plaintext on every interface", "listeners:\n  - address: :1883\n" + minimal,
			[]string{`m.yaml:2: listeners[0].address: plaintext listener on the non-loopback address ":1883"`}, config.ErrInsecure},
		{"anonymous on the network", "listeners:\n  - address: 10.0.0.1:1883\n    insecure_plaintext: true\nauth:\n  anonymous: true\nacl: {acl_file: a}\n",
			[]string{`m.yaml:5: auth.anonymous: anonymous access with the plaintext listener listeners[0] on the non-loopback address "10.0.0.1:1883"`, "insecure_anonymous_plaintext: true"}, config.ErrInsecure},
		{"public metrics", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "metrics: {address: \"0.0.0.0:9100\"}\n",
			[]string{`metrics.address: metrics on the non-loopback address "0.0.0.0:9100"`, "insecure_public: true"}, config.ErrInsecure},
		{"anonymous on websocket", "listeners:\n  - address: 127.0.0.1:8083\n    websocket: true\nauth: {anonymous: true}\nacl: {acl_file: a}\n",
			[]string{`m.yaml:4: auth.anonymous: anonymous access with the websocket listener listeners[0]`, "insecure_any_origin: true"}, config.ErrInsecure},
		{"client certificates on websocket", "listeners:\n  - address: :8084\n    websocket: true\n    tls: {cert_file: c, key_file: k, client_ca_file: ca}\n" + minimal,
			[]string{"m.yaml:4: listeners[0].tls.client_ca_file: client certificates are not available on a websocket listener"}, config.ErrInvalid},
		{"tls without key", "listeners:\n  - address: :8883\n    tls: {cert_file: c}\n" + minimal, []string{"m.yaml:3: listeners[0].tls: key_file is required"}, config.ErrInvalid},
		{"client_auth value", "listeners:\n  - address: :8883\n    tls: {cert_file: c, key_file: k, client_ca_file: ca, client_auth: maybe}\n" + minimal,
			[]string{`m.yaml:3: listeners[0].tls.client_auth: client_auth "maybe": use none, optional or required`}, config.ErrInvalid},
		{"client_auth without CA", "listeners:\n  - address: :8883\n    tls: {cert_file: c, key_file: k, client_auth: required}\n" + minimal,
			[]string{`m.yaml:3: listeners[0].tls.client_auth: client_auth "required" needs client_ca_file`}, config.ErrInvalid},
		{"duplicate names", "listeners:\n  - {name: a, address: \"127.0.0.1:1\"}\n  - {name: a, address: \"127.0.0.1:2\"}\n" + minimal,
			[]string{`m.yaml:3: listeners[1].name: name "a" is also listeners[0]'s`}, config.ErrInvalid},
		{"no authentication", "listeners: [{address: \"127.0.0.1:1\"}]\nauth: {}\nacl: {acl_file: a}\n",
			[]string{"m.yaml:2: auth: no authentication method"}, config.ErrInvalid},
		{"certificate without client CA", "listeners: [{address: \"127.0.0.1:1\"}]\nauth:\n  certificate: {username_from: cn}\nacl: {acl_file: a}\n",
			[]string{"m.yaml:3: auth.certificate: certificate authentication needs a TLS listener with client_ca_file"}, config.ErrInvalid},
		{"username_from", "listeners:\n  - address: :8883\n    tls: {cert_file: c, key_file: k, client_ca_file: ca}\nauth:\n  certificate: {username_from: serial}\nacl: {acl_file: a}\n",
			[]string{`m.yaml:5: auth.certificate.username_from: username_from "serial"`}, config.ErrInvalid},
		{"jwt without audience", "listeners: [{address: \"127.0.0.1:1\"}]\nauth:\n  jwt: {algorithms: [HS256], hmac_secret_file: s}\nacl: {acl_file: a}\n",
			[]string{"m.yaml:3: auth.jwt: audience is required"}, config.ErrInvalid},
		{"no rules", "listeners: [{address: \"127.0.0.1:1\"}]\nauth: {password_file: p}\n",
			[]string{"m.yaml: acl: no rules: set acl_file or casbin_policy"}, config.ErrInvalid},
		{"grants", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "", nil, nil},
		{"clientid template", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "clientid:\n  bind: [\"{username}*\"]\n",
			[]string{"m.yaml:5: clientid.bind[0]: clientid: invalid template"}, config.ErrInvalid},
		{"clientid pattern", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "clientid:\n  pattern: \"[a-z\"\n",
			[]string{"m.yaml:5: clientid.pattern: "}, config.ErrInvalid},
		{"clientid lengths", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "clientid: {min_length: 10, max_length: 5}\n",
			[]string{"m.yaml:4: clientid.max_length: min_length and max_length must satisfy"}, config.ErrInvalid},
		{"clientid takeover value", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "clientid:\n  takeover: steal\n",
			[]string{`m.yaml:5: clientid.takeover: takeover "steal": use owner, deny or allow`}, config.ErrInvalid},
		{"auth failures", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "ratelimit:\n  auth_failures: {max: 1}\n",
			[]string{"m.yaml:5: ratelimit.auth_failures.max: max must be at least 2"}, config.ErrInvalid},
		{"rate value", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "ratelimit:\n  bytes: {rate: 0, burst: 1}\n",
			[]string{"m.yaml:5: ratelimit.bytes: rate must be positive and burst at least 1"}, config.ErrInvalid},
		{"limits", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "limits: {sessions: 10, retained_per_subject: 3}\n",
			[]string{`m.yaml:4: limits.retained_per_subject: unknown key "retained_per_subject"`}, config.ErrUnknownKey},
		{"bridge key", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "bridges:\n  - name: up\n    remot: x\n",
			[]string{"m.yaml:6: bridges: ", `"remot"`}, config.ErrSyntax},
		{"bridge plaintext", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "bridges:\n  - name: up\n    remote: mqtt://cloud:1883\n    client_id: b\n    topics: [{pattern: a/#}]\n",
			[]string{"m.yaml:5: bridges[0]: ", "plaintext"}, config.ErrInsecure},
		{"bridge packet size", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "ratelimit: {max_payload: 1000}\nbridges:\n  - name: up\n    remote: mqtts://cloud:8883\n    client_id: b\n    max_packet_size: 2000\n    topics: [{pattern: a/#}]\n",
			[]string{"m.yaml:9: bridges[0].max_packet_size: max_packet_size 2000 is above ratelimit.max_payload 1000"}, config.ErrInvalid},
		{"redis in clear", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "redis: {address: \"10.0.0.5:6379\"}\n",
			[]string{`m.yaml:4: redis.address: Redis at the non-loopback address "10.0.0.5:6379" without TLS`, "insecure_plaintext: true"}, config.ErrInsecure},
		{"redis and bans file", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "redis: {address: \"127.0.0.1:6379\"}\nratelimit: {bans_file: bans}\n",
			[]string{"m.yaml:5: ratelimit.bans_file: bans_file with redis"}, config.ErrInvalid},
		{"packet size", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "ratelimit: {max_payload: 1000}\nbroker: {max_packet_size: 1000}\n",
			[]string{"m.yaml:5: broker.max_packet_size: max_packet_size 1000 does not leave room for a payload of max_payload 1000 bytes"}, config.ErrInvalid},
		{"log level", "listeners: [{address: \"127.0.0.1:1\"}]\n" + minimal + "log: {level: loud}\n",
			[]string{`m.yaml:4: log.level: level "loud": use debug, info, warn or error`}, config.ErrInvalid},
		{"several problems", "listeners:\n  - address: 0.0.0.0:1\nauth: {}\n",
			[]string{"m.yaml:2: listeners[0].address: plaintext listener", "m.yaml:3: auth: no authentication method", "m.yaml: acl: no rules"}, config.ErrInsecure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := config.Parse([]byte(tc.doc), "m.yaml")
			if tc.want == nil {
				require.NoError(t, err)
				require.NotNil(t, f)
				return
			}
			require.Error(t, err)
			require.Nil(t, f)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.ErrorIs(t, err, tc.is)
			var ce *config.Error
			require.True(t, errors.As(err, &ce), "%T", err)
			require.Equal(t, "m.yaml", ce.File)
		})
	}
}

// TestParseAccepts checks configurations that must pass, and the insecure
// switches they report.
func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		insecure  []string
	}{
		{"loopback plaintext", "listeners: [{address: \"127.0.0.1:1883\"}, {address: \"[::1]:1884\"}, {address: \"localhost:1885\"}]\n" + minimal, nil},
		{"anonymous on loopback", "listeners: [{address: \"127.0.0.1:1883\"}]\nauth: {anonymous: true}\nacl: {acl_file: a}\n", nil},
		{"plaintext switch", "listeners: [{address: \"0.0.0.0:1883\", insecure_plaintext: true}]\n" + minimal,
			[]string{`listeners[0].insecure_plaintext: plaintext listener on "0.0.0.0:1883"`}},
		{"anonymous switch", "listeners: [{address: \"0.0.0.0:1883\", insecure_plaintext: true}]\nauth: {anonymous: true, insecure_anonymous_plaintext: true}\nacl: {acl_file: a}\ninsecure_file_permissions: true\n",
			[]string{"listeners[0].insecure_plaintext", "auth.insecure_anonymous_plaintext", "insecure_file_permissions"}},
		{"jwt widen without files", "listeners: [{address: \"127.0.0.1:1883\"}]\nauth:\n  jwt: {algorithms: [HS256], hmac_secret_env: S, audience: mqtt, acl_claim: true}\nacl: {grants: widen}\n", nil},
		{"tls on every interface", "listeners:\n  - address: :8883\n    tls: {cert_file: c, key_file: k, client_ca_file: ca, client_auth: optional}\nauth:\n  certificate: {username_from: fingerprint}\n" + "acl: {casbin_policy: p}\n", nil},
		{"clientid", "listeners: [{address: \"127.0.0.1:1883\"}]\n" + minimal + "clientid: {takeover: deny, max_length: 64, bind: [\"{username}-*\", \"{cn}\"], max_ids: 1000}\n", nil},
		{"clientid allow", "listeners: [{address: \"127.0.0.1:1883\"}]\n" + minimal + "clientid: {takeover: allow}\n",
			[]string{"clientid.takeover: allow: any user may take over another device's session"}},
		{"limits", "listeners: [{address: \"127.0.0.1:1883\"}]\n" + minimal + "limits: {sessions: 10, outbound: -1, write_timeout: 5s}\n",
			[]string{"limits.outbound: a negative value lifts this memory bound"}},
		{"rate limits", "listeners: [{address: \"127.0.0.1:1883\"}]\n" + minimal + "ratelimit:\n  connect_per_ip: {rate: 10, burst: 20}\n  publish: {rate: 100, burst: 200}\n  bytes: {rate: 1048576, burst: 2097152}\n  max_payload: 262144\n  auth_failures: {max: 5, ban: 5m}\n  max_connections_per_user: -1\n",
			[]string{"ratelimit.max_connections_per_user: a negative value lifts the cap"}},
		{"bridge", "listeners: [{address: \"127.0.0.1:1883\"}]\n" + minimal + "bridges:\n  - name: up\n    remote: mqtt://cloud:1883\n    insecure_plaintext: true\n    client_id: b\n    topics: [{pattern: a/#, direction: both}]\n",
			[]string{"bridges[0]: "}},
		{"redis", "listeners: [{address: \"127.0.0.1:1883\"}]\n" + minimal + "redis: {address: \"10.0.0.5:6379\", insecure_plaintext: true, insecure_fail_open: true, prefix: \"site:\"}\n",
			[]string{"redis.insecure_plaintext", "redis.insecure_fail_open"}},
		{"max_payload wired", "listeners: [{address: \"127.0.0.1:1883\"}]\n" + minimal + "ratelimit: {max_payload: 1024}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := config.Parse([]byte(tc.doc), "m.yaml")
			require.NoError(t, err)
			got := f.Insecure()
			require.Len(t, got, len(tc.insecure), "%q", got)
			for i, w := range tc.insecure {
				require.Contains(t, got[i], w)
			}
		})
	}
}

// TestMarshalRoundTrip checks that a file written by Marshal parses to a
// file that marshals the same, and that defaults are left out.
func TestMarshalRoundTrip(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	require.NoError(t, err)
	f, err := config.Parse(data, "testdata/full.yaml")
	require.NoError(t, err)
	out, err := f.Marshal()
	require.NoError(t, err)
	g, err := config.Parse(out, "again.yaml")
	require.NoError(t, err, "%s", out)
	again, err := g.Marshal()
	require.NoError(t, err)
	require.Equal(t, string(out), string(again))
	require.Equal(t, f.Listeners, g.Listeners)
	require.Equal(t, f.Auth, g.Auth)
	require.Equal(t, f.ACL, g.ACL)
	require.Equal(t, f.Broker, g.Broker)
	require.NotContains(t, string(out), "insecure", "false switches are left out")
	require.Equal(t, 65536, g.MaxPayload())
	require.Equal(t, 65536+128<<10, g.MaxPacketSize())
	require.Equal(t, "tls-1", g.ListenerName(1))
	require.Equal(t, "plain", g.ListenerName(0))
	require.True(t, strings.HasSuffix(g.Path("x"), "x"))
}

// TestMarshalDurations checks that durations are written as a person
// would write them.
func TestMarshalDurations(t *testing.T) {
	f, err := config.Parse([]byte("listeners: [{address: \"127.0.0.1:1\", name: 5m0s}]\nacl: {acl_file: a}\n"+
		"broker: {max_session_expiry: 24h, connect_timeout: 90s}\nauth:\n  password_file: passwd\n  jwt: {algorithms: [HS256], hmac_secret_env: S, audience: a, leeway: 1500ms, jwks_refresh: 1h30m}\n"), "m.yaml")
	require.NoError(t, err)
	out, err := f.Marshal()
	require.NoError(t, err)
	for _, want := range []string{"max_session_expiry: 24h\n", "connect_timeout: 1m30s\n", "leeway: 1.5s\n", "jwks_refresh: 1h30m\n", "name: 5m0s\n"} {
		require.Contains(t, string(out), want)
	}
}
