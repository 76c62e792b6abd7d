package bridge_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/tlsconf"
)

func TestParseMosquittoFixture(t *testing.T) {
	f, err := os.Open("testdata/mosquitto-bridges.conf")
	require.NoError(t, err)
	defer f.Close()
	cfgs, findings, err := bridge.ParseMosquitto(f)
	require.NoError(t, err)
	require.Len(t, cfgs, 3)

	weak, good, notes := cfgs[0], cfgs[1], cfgs[2]
	require.Equal(t, "weak", weak.Name)
	require.Equal(t, "mqtt://broker.example.com:1883", weak.Remote)
	require.Equal(t, "site1", weak.Username)
	require.Empty(t, weak.InsecurePassword, "a password is never imported")
	require.Empty(t, weak.PasswordFile)
	require.False(t, weak.InsecurePlaintext, "the import never sets an insecure switch")
	require.Equal(t, "weak", weak.ClientID)
	require.Equal(t, []bridge.Mapping{
		{Pattern: "sensors/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "site1/"},
		{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, RemotePrefix: "site1/"},
		{Pattern: "#", Direction: bridge.Both},
	}, weak.Topics)
	err = weak.Validate()
	require.ErrorIs(t, err, bridge.ErrInsecure, "the plaintext import is refused until fixed")

	require.Equal(t, bridge.Config{
		Name:         "good",
		Remote:       "mqtts://cloud.example.com:8883",
		TLS:          tlsconf.Config{CAFile: "/etc/mosquitto/ca.pem", MinVersion: "1.3"},
		Username:     "site1",
		ClientID:     "site1-good",
		CleanStart:   true,
		KeepAlive:    30 * time.Second,
		StatusTopic:  "bridges/good/state",
		ReconnectMin: 5 * time.Second,
		ReconnectMax: 30 * time.Second,
		Topics: []bridge.Mapping{
			{Pattern: "sensors/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "site1/"},
			{Pattern: "", Direction: bridge.In, QoS: 2, LocalPrefix: "local/cmd", RemotePrefix: "remote/cmd/site1"},
			{Pattern: "clients/total", Direction: bridge.In, QoS: 0, LocalPrefix: "test/mosquitto/org/", RemotePrefix: "$SYS/broker/"},
		},
	}, stripLine(good))
	require.Equal(t, 18, good.Line())
	require.NoError(t, good.Validate())

	require.Equal(t, "mqtts://10.0.0.1:8883", notes.Remote)
	require.Empty(t, notes.TLS.CAFile)
	require.Empty(t, notes.TLS.MinVersion)

	type key struct {
		bridge, id string
		line       int
	}
	got := map[key]bridge.Severity{}
	for _, f := range findings {
		got[key{f.Bridge, f.ID, f.Line}] = f.Severity
		require.NotContains(t, f.String(), "hunter2")
		require.NotContains(t, f.String(), "also-secret")
		require.NotEmpty(t, f.Remediation)
	}
	want := map[key]bridge.Severity{
		{"weak", bridge.FindingPlaintext, 7}:           bridge.SeverityHigh,
		{"weak", bridge.FindingNoCA, 8}:                bridge.SeverityHigh,
		{"weak", bridge.FindingPlaintextPassword, 11}:  bridge.SeverityHigh,
		{"weak", bridge.FindingInsecure, 12}:           bridge.SeverityHigh,
		{"weak", bridge.FindingProtocol, 6}:            bridge.SeverityInfo,
		{"weak", bridge.FindingLoop, 16}:               bridge.SeverityMedium,
		{"weak", bridge.FindingClientID, 6}:            bridge.SeverityInfo,
		{"notes", bridge.FindingUnsupported, 34}:       bridge.SeverityInfo, // two addresses
		{"notes", bridge.FindingUnsupported, 35}:       bridge.SeverityInfo, // capath
		{"notes", bridge.FindingTLSVersion, 36}:        bridge.SeverityMedium,
		{"notes", bridge.FindingUnsupported, 37}:       bridge.SeverityInfo, // lazy start
		{"notes", bridge.FindingPlaintextPassword, 38}: bridge.SeverityMedium,
		{"notes", bridge.FindingProtocol, 33}:          bridge.SeverityInfo,
		{"notes", bridge.FindingClientID, 33}:          bridge.SeverityInfo,
	}
	require.Equal(t, want, got)
}

func stripLine(c bridge.Config) bridge.Config {
	// Line is unexported state; compare the rest through a copy that
	// went through a round of field assignments.
	var out bridge.Config
	out.Name, out.Remote, out.TLS, out.Username, out.ClientID = c.Name, c.Remote, c.TLS, c.Username, c.ClientID
	out.CleanStart, out.KeepAlive, out.StatusTopic = c.CleanStart, c.KeepAlive, c.StatusTopic
	out.ReconnectMin, out.ReconnectMax, out.Topics = c.ReconnectMin, c.ReconnectMax, c.Topics
	out.LocalClientID, out.PasswordFile, out.InsecurePassword, out.MaxPacketSize = c.LocalClientID, c.PasswordFile, c.InsecurePassword, c.MaxPacketSize
	return out
}

func TestParseMosquittoErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{"topic a out\n", "line 1: topic outside a bridge"},
		{"connection a\naddress h\ntopic x\nconnection a\n", `line 4: duplicate bridge name "a"`},
		{"connection a\naddress h\ntopic x sideways\n", `invalid bridge topic direction "sideways"`},
		{"connection a\naddress h\ntopic x out 3\n", `invalid bridge QoS level "3"`},
		{"connection a\naddress h\ntopic x out -1\n", `invalid bridge QoS level`},
		{"connection a\naddress h\ntopic \"\" out 1 local\n", "empty pattern needs both prefixes"},
		{"connection a\naddress h\ntopic # out 1 a/+/ b/\n", `invalid bridge topic prefix "a/+/"`},
		{"connection a\naddress h\ntopic # out 1 a b/\n", `invalid bridge topic "a#"`},
		{"connection a\naddress h:0\ntopic x\n", `invalid port value "0"`},
		{"connection a\naddress h\naddress i\ntopic x\n", "one address line"},
		{"connection a\naddress h\ntopic x\nbridge_insecure maybe\n", `invalid bridge_insecure value "maybe"`},
		{"connection a\naddress h\ntopic x\nbridge_cafile\n", "empty bridge_cafile value"},
		{"connection a\naddress h\nbridge_cafile a\nbridge_cafile b\ntopic x\n", "duplicate bridge_cafile"},
		{"connection a\naddress h\nusername u\nremote_username v\ntopic x\n", "duplicate remote_username"},
		{"connection a\ntopic x\n", `bridge "a" has no address`},
		{"connection a\naddress h\n", `bridge "a" has no topic`},
		{"connection a\naddress h\ntopic x\nbridge_protocol_version mqttv6\n", "invalid bridge_protocol_version"},
		{"connection a\naddress h\ntopic x\nstart_type sometimes\n", "invalid start_type"},
		{"connection a\naddress h\ntopic x\nrestart_timeout 10 5\n", "cap below its base"},
		{"connection a\naddress h\ntopic x\n" + strings.Repeat("x", bridge.MaxMosquittoLine+1) + "\n", "longer than"},
	}
	for _, tc := range cases {
		_, _, err := bridge.ParseMosquitto(strings.NewReader(tc.conf))
		require.ErrorIs(t, err, bridge.ErrMosquitto, tc.conf)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestParseMosquittoPlaintextLoopback(t *testing.T) {
	cfgs, findings, err := bridge.ParseMosquitto(strings.NewReader("connection local\naddress 127.0.0.1:1884\nbridge_protocol_version mqttv50\nremote_clientid x\nbridge_tls_version tlsv1.2\ntopic # out\n"))
	require.NoError(t, err)
	require.Len(t, findings, 1, "plaintext to loopback is not a finding, a TLS setting without CA is")
	require.Equal(t, bridge.FindingNoCA, findings[0].ID)
	require.Equal(t, 5, findings[0].Line)
	require.ErrorIs(t, cfgs[0].Validate(), bridge.ErrInsecure, "but the import still needs insecure_plaintext to run")
}

func TestParseMosquittoDetails(t *testing.T) {
	conf := "# comment\r\n" +
		"connection v6\r\n" +
		"address ::1:8883\r\n" +
		"bridge_cafile /ca.pem\r\n" +
		"   topic   a/#   IN   2   #comment\r\n" +
		"topic b/# both 1 # comment\r\n" +
		"bridge_max_packet_size 2048\r\n" +
		"notifications false\r\n" +
		"notification_topic x/y\r\n" +
		"listener 1884\r\n" + // a general option does not end the section (Mosquitto)
		"remote_clientid late\r\n"
	cfgs, findings, err := bridge.ParseMosquitto(strings.NewReader(conf))
	require.NoError(t, err)
	require.Len(t, cfgs, 1)
	c := cfgs[0]
	require.Equal(t, "mqtts://[::1]:8883", c.Remote)
	require.Equal(t, []bridge.Mapping{
		{Pattern: "a/#", Direction: bridge.In, QoS: 2},
		{Pattern: "b/#", Direction: bridge.Both, QoS: 1},
	}, c.Topics)
	require.Equal(t, 2048, c.MaxPacketSize)
	require.Empty(t, c.StatusTopic, "notifications false")
	require.Equal(t, "late", c.ClientID)
	require.NoError(t, c.Validate())
	for _, f := range findings {
		require.NotEqual(t, bridge.FindingPlaintext, f.ID)
	}
}

// TestParseMosquittoLines parses a bridge whose section spans two files (an
// include_dir): findings and errors name the file and line of each setting.
func TestParseMosquittoLines(t *testing.T) {
	lines := []bridge.MosquittoLine{
		{File: "mosquitto.conf", Line: 40, Text: "connection cloud"},
		{File: "mosquitto.conf", Line: 41, Text: "address broker.example.com:8883"},
		{File: "conf.d/cloud.conf", Line: 3, Text: "bridge_insecure true"},
		{File: "conf.d/cloud.conf", Line: 4, Text: "bridge_cafile /ca.pem"},
		{File: "conf.d/cloud.conf", Line: 5, Text: "topic a/# out 1"},
	}
	cfgs, findings, err := bridge.ParseMosquittoLines(lines)
	require.NoError(t, err)
	require.Equal(t, 40, cfgs[0].Line())
	var insecure bridge.Finding
	for _, f := range findings {
		if f.ID == bridge.FindingInsecure {
			insecure = f
		}
	}
	require.Equal(t, "conf.d/cloud.conf", insecure.File)
	require.Equal(t, 3, insecure.Line)
	require.True(t, strings.HasPrefix(insecure.String(), `conf.d/cloud.conf:3: bridge "cloud": bridge-insecure (high)`))

	lines[4].Text = "topic a/# sideways"
	_, _, err = bridge.ParseMosquittoLines(lines)
	require.ErrorContains(t, err, "conf.d/cloud.conf:5: invalid bridge topic direction")
}
