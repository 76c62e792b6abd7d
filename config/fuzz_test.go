package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mqttsec/mqttsec/config"
)

// FuzzParse feeds arbitrary documents to Parse: it must not panic, and a
// document it accepts must survive Marshal and Parse unchanged (the
// second Marshal equals the first), so --print-config never prints a file
// that reads differently.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"listeners: [{address: \"127.0.0.1:1883\"}]\nauth: {password_file: p}\nacl: {acl_file: a}\n",
		"listeners:\n  - address: :8883\n    tls: {cert_file: c, key_file: k, client_ca_file: ca}\nauth:\n  certificate: {username_from: cn}\nacl: {casbin_policy: p}\n",
		"a: &a [*a, *a]\n",           // an alias cycle
		"listeners: !!binary AAAA\n", // a tag of the wrong type
		"broker: {max_session_expiry: 9999999999h}\n",
	} {
		f.Add([]byte(seed))
	}
	if data, err := os.ReadFile(filepath.Join("testdata", "full.yaml")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		out, err := cfg.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted file: %v", err)
		}
		again, err := config.Parse(out, "fuzz.yaml")
		if err != nil {
			t.Fatalf("Parse of Marshal's output: %v\n%s", err, out)
		}
		out2, err := again.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != string(out2) {
			t.Fatalf("Marshal is not stable:\n%s\n---\n%s", out, out2)
		}
	})
}
