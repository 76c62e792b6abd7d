package bridge_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/tlsconf"
)

func validConfig() bridge.Config {
	return bridge.Config{
		Name:         "cloud",
		Remote:       "mqtts://broker.example.com:8883",
		TLS:          tlsconf.Config{CAFile: "ca.pem"},
		Username:     "site1",
		PasswordFile: "bridge.pass",
		ClientID:     "site1-bridge",
		Topics: []bridge.Mapping{
			{Pattern: "sensors/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "site1/"},
			{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, RemotePrefix: "site1/"},
		},
	}
}

func TestValidateAcceptsIssueExample(t *testing.T) {
	require.NoError(t, validConfig().Validate())
	c := validConfig()
	c.Remote = "wss://broker.example.com/mqtt"
	require.NoError(t, c.Validate())
	c = validConfig()
	c.Remote = "mqtt://127.0.0.1:1883"
	c.TLS = tlsconf.Config{}
	c.InsecurePlaintext = true
	require.NoError(t, c.Validate(), "plaintext with the explicit switch")
}

func TestValidateRefuses(t *testing.T) {
	cases := []struct {
		name   string
		change func(*bridge.Config)
		kind   error
		want   string
	}{
		{"plaintext to a remote host", func(c *bridge.Config) { c.Remote = "mqtt://broker.example.com"; c.TLS = tlsconf.Config{} },
			bridge.ErrInsecure, `plaintext to host "broker.example.com"`},
		{"plaintext to loopback without the switch", func(c *bridge.Config) { c.Remote = "mqtt://localhost:1883"; c.TLS = tlsconf.Config{} },
			bridge.ErrInsecure, "insecure_plaintext"},
		{"plaintext websocket", func(c *bridge.Config) { c.Remote = "ws://broker.example.com/mqtt"; c.TLS = tlsconf.Config{} },
			bridge.ErrInsecure, "plaintext"},
		{"tls with a plaintext remote", func(c *bridge.Config) { c.Remote = "mqtt://127.0.0.1"; c.InsecurePlaintext = true },
			bridge.ErrInvalid, "tls settings with a plaintext remote"},
		{"insecure_plaintext on TLS", func(c *bridge.Config) { c.InsecurePlaintext = true }, bridge.ErrInvalid, "insecure_plaintext with a TLS remote"},
		{"credentials in the URL", func(c *bridge.Config) { c.Remote = "mqtts://user:hunter2@broker.example.com" }, bridge.ErrInvalid, "credentials in the URL"},
		{"unknown scheme", func(c *bridge.Config) { c.Remote = "tcp://broker.example.com" }, bridge.ErrInvalid, `scheme "tcp"`},
		{"no host", func(c *bridge.Config) { c.Remote = "mqtts://:8883" }, bridge.ErrInvalid, "no host"},
		{"bad port", func(c *bridge.Config) { c.Remote = "mqtts://h:99999" }, bridge.ErrInvalid, "port"},
		{"path on mqtts", func(c *bridge.Config) { c.Remote = "mqtts://h/x" }, bridge.ErrInvalid, "no path"},
		{"missing CA with system roots disabled", func(c *bridge.Config) { c.TLS.CAFile = ""; c.DisableSystemRoots = true },
			bridge.ErrInvalid, "disable_system_roots needs tls.ca_file"},
		{"client_auth", func(c *bridge.Config) { c.TLS.ClientAuth = tlsconf.ClientAuthRequire }, bridge.ErrInvalid, "server setting"},
		{"bad tls", func(c *bridge.Config) { c.TLS.CertFile = "a.pem" }, bridge.ErrInvalid, "cert_file and key_file"},
		{"two password sources", func(c *bridge.Config) { c.PasswordEnv = "P" }, bridge.ErrInvalid, "set one of"},
		{"bad env name", func(c *bridge.Config) { c.PasswordFile = ""; c.PasswordEnv = "1A-B" }, bridge.ErrInvalid, "not an environment variable"},
		{"no client id", func(c *bridge.Config) { c.ClientID = "" }, bridge.ErrInvalid, "client_id is required"},
		{"wildcard client id", func(c *bridge.Config) { c.ClientID = "a+b" }, bridge.ErrInvalid, "client_id"},
		{"$ client id", func(c *bridge.Config) { c.ClientID = "$SYS" }, bridge.ErrInvalid, "client_id"},
		{"bad name", func(c *bridge.Config) { c.Name = "a b" }, bridge.ErrInvalid, "name must be"},
		{"no topics", func(c *bridge.Config) { c.Topics = nil }, bridge.ErrInvalid, "at least one mapping"},
		{"invalid pattern", func(c *bridge.Config) { c.Topics[0].Pattern = "a/#/b" }, bridge.ErrInvalid, `pattern "a/#/b"`},
		{"wildcard in prefix", func(c *bridge.Config) { c.Topics[0].RemotePrefix = "site/+/" }, bridge.ErrInvalid, "must not contain the wildcards"},
		{"prefix and pattern that do not combine", func(c *bridge.Config) { c.Topics[0].Pattern = "#"; c.Topics[0].RemotePrefix = "site1" },
			bridge.ErrInvalid, `make "site1#"`},
		{"missing direction", func(c *bridge.Config) { c.Topics[0].Direction = "" }, bridge.ErrInvalid, "direction is required"},
		{"bad direction", func(c *bridge.Config) { c.Topics[0].Direction = "up" }, bridge.ErrInvalid, `direction "up"`},
		{"qos 3", func(c *bridge.Config) { c.Topics[0].QoS = 3 }, bridge.ErrInvalid, "qos 3"},
		{"empty pattern needs both prefixes", func(c *bridge.Config) { c.Topics[0].Pattern = "" }, bridge.ErrInvalid, "set both"},
		{"shared subscription", func(c *bridge.Config) { c.Topics[0].Pattern = "$share/g/a" }, bridge.ErrInvalid, "shared"},
		{"duplicate mapping", func(c *bridge.Config) { c.Topics = append(c.Topics, c.Topics[0]) }, bridge.ErrInvalid, "duplicates topics[0]"},
		{"# both ways without loop prevention", func(c *bridge.Config) {
			c.DisableLoopPrevention = true
			c.Topics = []bridge.Mapping{{Pattern: "#", Direction: bridge.Both, QoS: 1}}
		}, bridge.ErrLoop, `topics[0] ("#" both ways)`},
		{"overlapping out and in without loop prevention", func(c *bridge.Config) {
			c.DisableLoopPrevention = true
			c.Topics = []bridge.Mapping{{Pattern: "a/#", Direction: bridge.Out}, {Pattern: "+/b", Direction: bridge.In}}
		}, bridge.ErrLoop, "topics[0] (out) and topics[1] (in)"},
		{"bad status topic", func(c *bridge.Config) { c.StatusTopic = "a/#" }, bridge.ErrInvalid, "status_topic"},
		{"keep alive too short", func(c *bridge.Config) { c.KeepAlive = time.Second }, bridge.ErrInvalid, "keep_alive"},
		{"reconnect range", func(c *bridge.Config) { c.ReconnectMin = time.Minute; c.ReconnectMax = time.Second }, bridge.ErrInvalid, "reconnect_max"},
		{"buffer", func(c *bridge.Config) { c.Buffer = -1 }, bridge.ErrInvalid, "buffer"},
		{"max packet", func(c *bridge.Config) { c.MaxPacketSize = 10 }, bridge.ErrInvalid, "max_packet_size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			c.Topics = append([]bridge.Mapping(nil), c.Topics...)
			tc.change(&c)
			err := c.Validate()
			require.Error(t, err)
			require.ErrorIs(t, err, tc.kind)
			require.ErrorIs(t, err, bridge.ErrInvalid)
			require.Contains(t, err.Error(), tc.want)
			require.Contains(t, err.Error(), `bridge "`)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validConfig()
	c.ClientID = ""
	c.Topics[0].QoS = 5
	c.Remote = "mqtt://broker.example.com"
	err := c.Validate()
	for _, want := range []string{"client_id is required", "qos 5", "plaintext"} {
		require.Contains(t, err.Error(), want)
	}
}

func TestValidateAllDuplicates(t *testing.T) {
	a, b := validConfig(), validConfig()
	b.Name = "other"
	err := bridge.ValidateAll([]bridge.Config{a, b})
	require.ErrorIs(t, err, bridge.ErrInvalid)
	require.Contains(t, err.Error(), `client_id "site1-bridge" is used by bridge "cloud"`)
	b.ClientID = "site2-bridge"
	require.NoError(t, bridge.ValidateAll([]bridge.Config{a, b}))
	b.Name = "cloud"
	require.ErrorContains(t, bridge.ValidateAll([]bridge.Config{a, b}), "name used by bridges[0]")
	// Same client ID on another remote is fine, but not the same local ID.
	b.Name, b.ClientID, b.Remote = "other", "site1-bridge", "mqtts://elsewhere.example.com"
	require.ErrorContains(t, bridge.ValidateAll([]bridge.Config{a, b}), `local client ID "local.site1-bridge"`)
	b.LocalClientID = "local.other"
	require.NoError(t, bridge.ValidateAll([]bridge.Config{a, b}))
}

const issueYAML = `
bridges:
  - name: cloud
    remote: "mqtts://broker.example.com:8883"
    tls: { ca_file: ca.pem, cert_file: site.pem, key_file: site-key.pem }
    username: site1
    password_file: bridge.pass        # or password_env: BRIDGE_PASSWORD
    client_id: site1-bridge
    topics:
      - { pattern: "sensors/#", direction: out, qos: 1, local_prefix: "", remote_prefix: "site1/" }
      - { pattern: "cmd/#", direction: in, qos: 1, remote_prefix: "site1/" }
`

func TestParseConfigsIssueExample(t *testing.T) {
	cfgs, err := bridge.ParseConfigs([]byte(issueYAML))
	require.NoError(t, err)
	require.Len(t, cfgs, 1)
	c := cfgs[0]
	require.Equal(t, "cloud", c.Name)
	require.Equal(t, "site.pem", c.TLS.CertFile)
	require.Equal(t, "bridge.pass", c.PasswordFile)
	require.Equal(t, bridge.Mapping{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, RemotePrefix: "site1/"}, c.Topics[1])
	require.Equal(t, 3, c.Line())

	// A bare list works too, and durations decode.
	cfgs, err = bridge.ParseConfigs([]byte(`
- name: a
  remote: mqtts://h
  client_id: a
  session_expiry: 2h
  keep_alive: 30s
  topics: [{pattern: x, direction: both}]
`))
	require.NoError(t, err)
	require.Equal(t, 2*time.Hour, cfgs[0].SessionExpiry)
	require.Equal(t, 30*time.Second, cfgs[0].KeepAlive)
}

func TestParseConfigsStrict(t *testing.T) {
	cases := []struct{ doc, want string }{
		{strings.Replace(issueYAML, "password_file:", "pasword_file:", 1), `bridge "cloud": line 7: unknown key "pasword_file" in the bridge`},
		{strings.Replace(issueYAML, "ca_file:", "cafile:", 1), `bridge "cloud": line 5: unknown key "cafile" in tls`},
		{strings.Replace(issueYAML, "direction: in", "dir: in", 1), `bridge "cloud": line 11: unknown key "dir" in a topic mapping`},
		{strings.Replace(issueYAML, "qos: 1, local", "qos: high, local", 1), `bridge "cloud"`},
		{strings.Replace(issueYAML, "bridges:", "bridgez:", 1), `unknown key "bridgez"`},
		{issueYAML + "    username: again\n", `already defined`},
		{"bridges: {name: x}", "want a list of bridges"},
		{"bridges: []", "no bridges"},
		{"", "no bridges"},
		{"bridges:\n  - name: x\n    client_id: y\n", `bridge "x"`},
		{issueYAML + "---\nbridges: []\n", "one YAML document"},
	}
	for _, tc := range cases {
		_, err := bridge.ParseConfigs([]byte(tc.doc))
		require.ErrorIs(t, err, bridge.ErrInvalid, tc.want)
		require.ErrorContains(t, err, tc.want)
	}
}

// TestDecodeSection shows how a larger configuration file decodes its
// bridges: section straight into []bridge.Config with a strict decoder, and
// gets the same named errors.
func TestDecodeSection(t *testing.T) {
	type file struct {
		Listeners []map[string]string `yaml:"listeners"`
		Bridges   []bridge.Config     `yaml:"bridges"`
	}
	doc := "listeners: [{address: ':8883'}]\n" + strings.TrimPrefix(issueYAML, "\n")
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var f file
	require.NoError(t, dec.Decode(&f))
	require.NoError(t, bridge.ValidateAll(f.Bridges))
	require.Equal(t, "site1-bridge", f.Bridges[0].ClientID)

	// Strict even through a non-strict decoder.
	bad := strings.Replace(doc, "client_id:", "clientid:", 1)
	err := yaml.Unmarshal([]byte(bad), &f)
	require.ErrorIs(t, err, bridge.ErrInvalid)
	require.ErrorContains(t, err, `bridge "cloud": line 8: unknown key "clientid"`)
}

func TestFindings(t *testing.T) {
	c := validConfig()
	require.Empty(t, c.Findings())
	c.Remote, c.TLS, c.InsecurePlaintext = "mqtt://10.0.0.1", tlsconf.Config{}, true
	c.PasswordFile, c.InsecurePassword = "", "hunter2"
	c.DisableLoopPrevention = true
	require.NoError(t, c.Validate())
	ids := map[string]bridge.Severity{}
	for _, f := range c.Findings() {
		ids[f.ID] = f.Severity
		require.NotContains(t, f.String(), "hunter2")
	}
	require.Equal(t, map[string]bridge.Severity{
		bridge.FindingPlaintext:         bridge.SeverityHigh,
		bridge.FindingPlaintextPassword: bridge.SeverityHigh,
		bridge.FindingLoop:              bridge.SeverityLow,
	}, ids)
}

func TestPasswordFileChecks(t *testing.T) {
	dir := t.TempDir()
	c := validConfig()
	c.Remote, c.TLS, c.InsecurePlaintext = "mqtt://127.0.0.1:1", tlsconf.Config{}, true
	local := bridge.Local{URL: "mqtt://127.0.0.1:1"}

	c.PasswordFile = filepath.Join(dir, "missing")
	_, err := bridge.Start(t.Context(), c, local)
	require.ErrorIs(t, err, bridge.ErrCredentials)

	p := filepath.Join(dir, "pass")
	require.NoError(t, os.WriteFile(p, []byte("s3cret\n"), 0o644))
	c.PasswordFile = p
	_, err = bridge.Start(t.Context(), c, local)
	require.ErrorIs(t, err, bridge.ErrInsecure)
	require.ErrorContains(t, err, "chmod 600")
	require.NotContains(t, err.Error(), "s3cret")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	c.PasswordFile = filepath.Join(dir, "empty")
	_, err = bridge.Start(t.Context(), c, local)
	require.ErrorContains(t, err, "empty")

	c.PasswordFile, c.PasswordEnv = "", "MQTTSEC_BRIDGE_TEST_UNSET"
	_, err = bridge.Start(t.Context(), c, local)
	require.ErrorIs(t, err, bridge.ErrCredentials)
	require.True(t, errors.Is(err, bridge.ErrInvalid))
}

func TestGrants(t *testing.T) {
	c := validConfig()
	c.Topics = append(c.Topics, bridge.Mapping{Pattern: "shared/#", Direction: bridge.Both, QoS: 1, LocalPrefix: "s/"})
	c.StatusTopic, c.RemoteStatusTopic = "bridges/cloud", "bridges/site1"
	lg, err := c.LocalGrants()
	require.NoError(t, err)
	require.Equal(t, []mqttsec.Grant{
		{Allow: true, Access: mqttsec.Subscribe, Topic: "sensors/#"},
		{Allow: true, Access: mqttsec.Publish, Topic: "cmd/#"},
		{Allow: true, Access: mqttsec.Subscribe | mqttsec.Publish, Topic: "s/shared/#"},
		{Allow: true, Access: mqttsec.Publish, Topic: "bridges/cloud"},
	}, lg)
	rg, err := c.RemoteGrants()
	require.NoError(t, err)
	require.Equal(t, []mqttsec.Grant{
		{Allow: true, Access: mqttsec.Publish, Topic: "site1/sensors/#"},
		{Allow: true, Access: mqttsec.Subscribe, Topic: "site1/cmd/#"},
		{Allow: true, Access: mqttsec.Publish | mqttsec.Subscribe, Topic: "shared/#"},
		{Allow: true, Access: mqttsec.Publish, Topic: "bridges/site1"},
	}, rg)
	c.Topics[0].LocalPrefix = "%u/"
	_, err = c.LocalGrants()
	require.ErrorContains(t, err, "placeholder")
}

func TestStringHidesPassword(t *testing.T) {
	c := validConfig()
	c.PasswordFile, c.InsecurePassword = "", "hunter2"
	l := bridge.Local{URL: "mqtt://127.0.0.1:1883", Username: "bridge", Password: []byte("hunter3")}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v %#v", c, c), fmt.Sprint(l), fmt.Sprintf("%+v %#v", l, l), fmt.Sprint([]bridge.Config{c})} {
		require.NotContains(t, s, "hunter")
	}
	require.Equal(t, `bridge "cloud" to mqtts://broker.example.com:8883 as "site1-bridge" (2 mappings)`, c.String())
}
