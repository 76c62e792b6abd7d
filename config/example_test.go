package config_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/mqttsec/mqttsec/config"
)

// A file with a typo and an insecure listener is refused at once, with the
// file, the line and the key of each problem.
func ExampleParse() {
	_, err := config.Parse([]byte(`listeners:
  - address: "0.0.0.0:1883"
auth:
  password_file: passwd
acl:
  acl_file: aclfile
  wildcard: { admins: [admin] }
log: { level: verbose }
`), "mqttsec.yaml")
	fmt.Println(err)
	// Output:
	// mqttsec.yaml:2: listeners[0].address: plaintext listener on the non-loopback address "0.0.0.0:1883": passwords and messages would cross the network in clear; add tls (cert_file, key_file), use a loopback address, or set insecure_plaintext: true
	// mqttsec.yaml:8: log.level: level "verbose": use debug, info, warn or error
}

// Unknown keys are errors, never ignored.
func ExampleParse_unknownKey() {
	_, err := config.Parse([]byte(`listeners:
  - address: "127.0.0.1:1883"
auth:
  password_file: passwd
acl:
  acl_file: aclfile
  wildcard: { deny_root_wildcard: true }
`), "mqttsec.yaml")
	fmt.Println(err)
	// Output:
	// mqttsec.yaml:7: acl.wildcard.deny_root_wildcard: unknown key "deny_root_wildcard"
}

// A program with its own broker builds the Guard of mqttsec serve from the
// same file: the Guard, the TLS configuration of each listener, and the
// watchers that reload passwords, policies and certificates into it.
func ExampleFile_Open() {
	f, err := config.Load("mqttsec.yaml")
	if err != nil {
		slog.Error("configuration", "error", err)
		os.Exit(1)
	}
	rt, err := f.Open(context.Background(), config.Options{})
	if err != nil {
		slog.Error("configuration", "error", err)
		os.Exit(1)
	}
	defer rt.Close()
	guard := rt.Guard()       // give it to your broker's adapter
	tlsCfg := rt.ServerTLS(0) // listener 0's TLS, nil for plaintext
	_, _ = guard, tlsCfg
}

// The whole broker of mqttsec serve: mochi-mqtt with exactly one hook,
// bounded capabilities and hardened listeners.
func ExampleRuntime_Server() {
	f, err := config.Load("mqttsec.yaml")
	if err != nil {
		slog.Error("configuration", "error", err)
		os.Exit(1)
	}
	rt, err := f.Open(context.Background(), config.Options{})
	if err != nil {
		slog.Error("configuration", "error", err)
		os.Exit(1)
	}
	defer rt.Close()
	srv, err := rt.Server()
	if err != nil {
		slog.Error("listen", "error", err)
		os.Exit(1)
	}
	if err := srv.Serve(); err != nil {
		slog.Error("serve", "error", err)
		os.Exit(1)
	}
	defer srv.Close() // MQTT 5 clients get a DISCONNECT 0x8B
	// ... until SIGTERM; call rt.Reload() on SIGHUP.
}
