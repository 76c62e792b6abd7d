package mochi_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/casbin/casbin/v2"
	fileadapter "github.com/casbin/casbin/v2/persist/file-adapter"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/mochi"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// broker is the wiring the README shows ("Use in your broker"): a password
// file and a Casbin policy, both reloaded on change with every reload
// reaching the Guard (a removed user is disconnected), TLS that reloads its
// certificate, and a mochi server with bounded packets and sessions whose
// one authorization hook is the Guard's. The caller serves and closes it.
func broker(passwdFile, policyFile string, tlsFiles tlsconf.Config, addr string) (*mqtt.Server, func(), error) {
	var closers []func() error
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			_ = closers[i]()
		}
	}
	fail := func(err error) (*mqtt.Server, func(), error) { closeAll(); return nil, nil, err }

	// The Guard denies everything until Reload gives it its parts; it is
	// the event sink of every watcher, so a credential reload revalidates
	// the live sessions.
	guard := new(mqttsec.Guard)

	passwords := auth.NewPasswords(nil, auth.PasswordsConfig{})
	pw, err := auth.WatchPasswordFile(passwdFile, passwords, auth.WatchOptions{Events: guard}) // mosquitto_passwd files work
	if err != nil {
		return fail(err)
	}
	closers = append(closers, pw.Close)

	enforcer, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(policyFile))
	if err != nil {
		return fail(err)
	}
	policy, err := acl.NewCasbin(enforcer)
	if err != nil {
		return fail(err)
	}
	fw, err := acl.WatchFile(enforcer, policyFile, acl.WithEvents(guard))
	if err != nil {
		return fail(err)
	}
	closers = append(closers, fw.Close)

	tlsFiles.Events = guard
	certs, err := tlsconf.NewReloader(tlsFiles) // TLS 1.2+, AEAD suites, reloaded on change
	if err != nil {
		return fail(err)
	}
	closers = append(closers, certs.Close)
	tlsCfg, err := certs.Server()
	if err != nil {
		return fail(err)
	}

	guard.Reload(mqttsec.Config{Authenticator: passwords, Authorizer: policy, Logger: slog.Default()})

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 1 << 20          // mochi otherwise allocates what any header claims
	caps.MaximumSessionExpiryInterval = 86400 // mochi otherwise keeps offline sessions for 136 years
	caps.MaximumClients = 10000
	server := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: mochi.Logger(slog.Default())})
	if _, err := mochi.NewHook(guard, server); err != nil { // the only auth/ACL hook: mochi ORs them
		return fail(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tls", Address: addr, TLSConfig: tlsCfg})
	if err := server.AddListener(mochi.Harden(tcp, 0)); err != nil { // closes idle and malformed connections
		return fail(err)
	}
	return server, closeAll, nil
}

// The wiring of a guarded mochi broker that the README shows, run on a
// development CA, a password file and a policy in a temporary folder.
func Example_wiring() {
	dir, err := os.MkdirTemp("", "mqttsec-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	ca, err := tlsconf.EnsureDevCA(filepath.Join(dir, "tls"))
	if err != nil {
		fmt.Println(err)
		return
	}
	passwd, policy := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl.csv")
	h, err := auth.HashPassword([]byte("a long passphrase"), auth.HashOptions{BcryptCost: 4})
	if err != nil {
		fmt.Println(err)
		return
	}
	f := auth.NewPasswordFile()
	if err := f.Set("alice", h); err != nil {
		fmt.Println(err)
		return
	}
	if err := f.WriteFile(passwd); err != nil {
		fmt.Println(err)
		return
	}
	if err := os.WriteFile(policy, []byte("p, *, devices/%u/#, readwrite, allow\n"), 0o600); err != nil {
		fmt.Println(err)
		return
	}
	cert, key := ca.ServerFiles()
	server, closeAll, err := broker(passwd, policy, tlsconf.Config{CertFile: cert, KeyFile: key}, "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer closeAll()
	if err := server.Serve(); err != nil {
		fmt.Println(err)
		return
	}
	defer server.Close()
	fmt.Println("serving")
	// Output: serving
}
