package bridge

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mqttsec/mqttsec/topic"
)

// FuzzParseMosquitto: the parser never panics, an error wraps ErrMosquitto,
// findings carry an ID, a severity and a line inside the file and never the
// password, and every imported mapping is one Mosquitto accepts.
func FuzzParseMosquitto(f *testing.F) {
	f.Add("connection a\naddress h:1883\ntopic # both 1 l/ r/\n")                                       // plain bridge
	f.Add("connection a\naddress ::1:8883\nbridge_cafile c\nremote_password pw\ntopic \"\" in 0 a b\n") // IPv6, direct remap
	f.Add("connection a\naddresses h i\nbridge_insecure true\nbridge_tls_version tlsv1.1\ntopic x out 2 # c\n")
	f.Add("topic a\n")                                     // outside a bridge
	f.Add("connection a\naddress h\ntopic a/# sideways\n") // bad direction
	f.Add("connection a\r\naddress h\r\ntopic + in 1 \"\" $SYS/\r\nrestart_timeout 1 2\r\n")
	f.Fuzz(func(t *testing.T, conf string) {
		cfgs, findings, err := ParseMosquitto(strings.NewReader(conf))
		if err != nil {
			if !errors.Is(err, ErrMosquitto) {
				t.Fatalf("error %v does not wrap ErrMosquitto", err)
			}
			return
		}
		lines := strings.Count(conf, "\n") + 1
		for _, fd := range findings {
			if fd.ID == "" || fd.Severity == "" || fd.Line < 1 || fd.Line > lines {
				t.Fatalf("bad finding %+v (file of %d lines)", fd, lines)
			}
			if strings.Contains(fd.Message, "remote_password ") && strings.Contains(conf, "remote_password ") {
				// The message names the setting, never its value.
				_, v, _ := strings.Cut(conf, "remote_password ")
				v, _, _ = strings.Cut(v, "\n")
				if v = strings.TrimSpace(v); len(v) > 3 && strings.Contains(fd.String(), v) {
					t.Fatalf("finding %q contains the password", fd)
				}
			}
		}
		for _, c := range cfgs {
			for _, m := range c.Topics {
				if m.Direction != In && m.Direction != Out && m.Direction != Both || m.QoS > 2 {
					t.Fatalf("bad mapping %+v", m)
				}
				if topic.HasWildcard(m.LocalPrefix) || topic.HasWildcard(m.RemotePrefix) {
					t.Fatalf("wildcard prefix %+v", m)
				}
				if m.Pattern != "" && topic.ValidateFilter(m.RemotePrefix+m.Pattern) != nil {
					t.Fatalf("invalid filter %+v", m)
				}
			}
			if c.InsecurePassword != "" || c.InsecurePlaintext {
				t.Fatalf("the import set an insecure field: %+v", c)
			}
			_ = c.Validate()
			_ = c.Findings()
		}
	})
}

// FuzzParseConfigs: ParseConfigs never panics, fails with ErrInvalid or
// returns configurations that validate; a valid result survives a YAML
// round trip unchanged.
func FuzzParseConfigs(f *testing.F) {
	f.Add(`bridges:
  - name: cloud
    remote: "mqtts://broker.example.com:8883"
    tls: { ca_file: ca.pem, cert_file: site.pem, key_file: site-key.pem }
    username: site1
    password_file: bridge.pass
    client_id: site1-bridge
    topics:
      - { pattern: "sensors/#", direction: out, qos: 1, local_prefix: "", remote_prefix: "site1/" }
      - { pattern: "cmd/#", direction: in, qos: 1, remote_prefix: "site1/" }
`)
	f.Add("- {name: a, remote: 'mqtt://127.0.0.1', insecure_plaintext: true, client_id: a, topics: [{pattern: '#', direction: both}]}\n")
	f.Add("- &b {name: a, remote: 'mqtts://h', client_id: a, topics: [{pattern: x, direction: in}]}\n- {<<: *b, name: c, client_id: c}\n")
	f.Add("bridges: [{name: a, tls: {cafile: x}}]")
	f.Add("- {name: a, remote: 'wss://h/p', client_id: a, session_expiry: 1h, topics: [{pattern: '', local_prefix: a, remote_prefix: b, direction: out}]}")
	f.Fuzz(func(t *testing.T, doc string) {
		cfgs, err := ParseConfigs([]byte(doc))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if err := ValidateAll(cfgs); err != nil {
			t.Fatalf("ParseConfigs returned invalid configurations: %v", err)
		}
		out, err := yaml.Marshal(map[string]any{"bridges": cfgs})
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseConfigs(out)
		if err != nil {
			t.Fatalf("round trip of\n%s\nfailed: %v", out, err)
		}
		for i := range cfgs {
			a, b := cfgs[i], again[i]
			a.line, b.line = 0, 0
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("round trip changed the configuration:\n%+v\n%+v", plainConfig(a), plainConfig(b))
			}
		}
	})
}

// plainConfig prints every field (Config.String hides the password).
type plainConfig Config

// FuzzFrameGuard compares the streaming framing check, fed in two chunks,
// with a parse of the whole stream.
func FuzzFrameGuard(f *testing.F) {
	f.Add([]byte{0xD0, 0x00, 0x30, 0x03, 0x00, 0x01, 'a'}, 5, 16)
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, 2, 1024)
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, 3, 1024)
	f.Fuzz(func(t *testing.T, stream []byte, split, limit int) {
		if limit < 2 || limit > 1<<28 {
			return
		}
		split = min(max(split, 0), len(stream))
		want := refScan(stream, limit)
		g := frameGuard{max: limit}
		got := g.scan(stream[:split])
		if got == nil {
			got = g.scan(stream[split:])
		}
		if !errors.Is(got, want) && !(got == nil && want == nil) {
			t.Fatalf("scan(%x | %x, max %d) = %v, want %v", stream[:split], stream[split:], limit, got, want)
		}
	})
}
