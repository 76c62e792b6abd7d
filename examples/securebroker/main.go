// Command securebroker is a starting point for a custom broker: mochi-mqtt
// guarded by mqttsec with a Mosquitto-compatible password file, a Casbin
// topic policy and TLS from a development CA. Copy it and replace the parts.
//
//	go run ./examples/securebroker -dir /tmp/securebroker
//
// It creates DIR/passwd (user "demo", password printed once), DIR/acl.csv and a
// development CA in DIR/tls, then listens on 127.0.0.1:8884 with TLS.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

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

const policy = `p, *, devices/%u/#, readwrite, allow
p, *, public/#, read, allow
`

func main() {
	dir := flag.String("dir", "securebroker-data", "folder for the CA, password file and policy")
	addr := flag.String("listen", "127.0.0.1:8884", "TLS listener address")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		log.Fatal(err)
	}

	// 1. Authentication: a password file (mosquitto_passwd files work too),
	//    reloaded when it changes.
	passwdPath := filepath.Join(*dir, "passwd")
	if err := createUser(passwdPath, "demo"); err != nil {
		log.Fatal(err)
	}
	passwords := auth.NewPasswords(auth.NewPasswordFile(), auth.PasswordsConfig{})
	watcher, err := auth.WatchPasswordFile(passwdPath, passwords, auth.WatchOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer watcher.Close()

	// 2. Authorization: a Casbin policy in acl.Model, compiled to an index.
	policyPath := filepath.Join(*dir, "acl.csv")
	if _, err := os.Stat(policyPath); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policyPath, []byte(policy), 0o600); err != nil {
			log.Fatal(err)
		}
	}
	enforcer, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(policyPath))
	if err != nil {
		log.Fatal(err)
	}
	authz, err := acl.NewCasbin(enforcer)
	if err != nil {
		log.Fatal(err)
	}

	// 3. TLS with secure defaults (development CA here; use your own files).
	ca, err := tlsconf.EnsureDevCA(filepath.Join(*dir, "tls"))
	if err != nil {
		log.Fatal(err)
	}
	tlsConfig, err := ca.ServerConfig().Server()
	if err != nil {
		log.Fatal(err)
	}

	// 4. The Guard composes the parts; the mochi hook enforces it.
	guard := mqttsec.New(mqttsec.Config{Authenticator: passwords, Authorizer: authz, Logger: logger})
	// Bound packet sizes: mochi otherwise allocates what a packet claims.
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 1 << 20
	server := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: logger})
	if _, err := mochi.NewHook(guard, server); err != nil {
		log.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "tls", Address: *addr, TLSConfig: tlsConfig})
	if err := server.AddListener(mochi.Harden(tcp, 0)); err != nil {
		log.Fatal(err)
	}
	if err := server.Serve(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s; CA: %s\n", *addr, ca.CAFile())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = server.Close()
}

// createUser writes a password file with one user and a random password
// when the file does not exist yet.
func createUser(path, user string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	pass := base64.RawURLEncoding.EncodeToString(b[:])
	h, err := auth.HashPassword([]byte(pass), auth.HashOptions{})
	if err != nil {
		return err
	}
	f := auth.NewPasswordFile()
	if err := f.Set(user, h); err != nil {
		return err
	}
	if err := f.WriteFile(path); err != nil {
		return err
	}
	fmt.Printf("created user %q with password %s\n", user, pass)
	return nil
}
