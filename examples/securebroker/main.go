// Command securebroker is mochi-mqtt guarded by mqttsec, wired by hand: what
// `mqttsec serve --config` builds from a YAML file (package config), for a
// program that has its own broker. Copy it and replace the parts.
//
//	mosquitto_passwd -c DIR/passwd alice && chmod 600 DIR/passwd
//	printf 'user alice\ntopic readwrite devices/alice/#\n' > DIR/aclfile
//	go run ./examples/securebroker -dir DIR
//
// DIR/tls gets a development CA (mqttsec certs client --dir DIR/tls NAME
// issues client certificates). Clients authenticate with a certificate or a
// password; the files are reloaded when they change, and on SIGHUP.
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/casbin/casbin/v2"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/mochi"
	"github.com/mqttsec/mqttsec/ratelimit"
	"github.com/mqttsec/mqttsec/tlsconf"
)

func main() {
	dir := flag.String("dir", "securebroker-data", "folder with passwd, aclfile and tls/")
	addr := flag.String("listen", "127.0.0.1:8884", "TLS listener address")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *dir, *addr, nil); err != nil {
		log.Error("securebroker", "error", err)
		os.Exit(1)
	}
}

// run serves until ctx ends; ready, when set, gets the bound address.
func run(ctx context.Context, log *slog.Logger, dir, addr string, ready func(string)) error {
	// 1. The Guard first: it denies everything until it has its parts, and
	// it is the event sink of every watcher, so that a reload that
	// withdraws a credential disconnects the sessions that used it.
	events := mqttsec.SlogSink(log)
	g := new(mqttsec.Guard)
	g.Reload(mqttsec.Config{Events: events})

	// 2. TLS, client certificates verified when given, files reloaded.
	ca, err := tlsconf.EnsureDevCA(filepath.Join(dir, "tls")) // your own files in production
	if err != nil {
		return err
	}
	certFile, keyFile := ca.ServerFiles()
	tlsFiles, err := tlsconf.NewReloader(tlsconf.Config{CertFile: certFile, KeyFile: keyFile, CAFile: ca.CAFile(),
		ClientAuth: tlsconf.ClientAuthVerifyIfGiven, Events: g})
	if err != nil {
		return err
	}
	defer tlsFiles.Close()
	serverTLS, err := tlsFiles.Server()
	if err != nil {
		return err
	}

	// 3. Authentication: a certificate (checked again by the reloader after
	// a reload: a new CRL disconnects its clients), else a password file.
	certs, err := auth.NewX509(auth.X509Config{Field: auth.CommonName, Verifier: tlsFiles})
	if err != nil {
		return err
	}
	passwords := auth.NewPasswords(auth.NewPasswordFile(), auth.PasswordsConfig{})
	pw, err := auth.WatchPasswordFile(filepath.Join(dir, "passwd"), passwords, auth.WatchOptions{Events: g})
	if err != nil {
		return err
	}
	defer pw.Close()

	// 4. Authorization: a Mosquitto acl_file in acl.Model, reloaded when it
	// changes; "#" and "+/..." only for admin.
	aclPath := filepath.Join(dir, "aclfile")
	enforcer, err := casbin.NewSyncedEnforcer(acl.NewModel(), acl.MosquittoAdapter{Path: aclPath})
	if err != nil {
		return err
	}
	policy, err := acl.NewCasbin(enforcer)
	if err != nil {
		return err
	}
	aw, err := acl.WatchFile(enforcer, aclPath, acl.WithEvents(g))
	if err != nil {
		return err
	}
	defer aw.Close()
	wildcards := &acl.WildcardPolicy{MinLevels: 1, Admins: []string{"admin"}}

	// 5. Client IDs: a strict policy, and a registry that lets only the
	// owner of an ID take over its session. Rates, failed-login bans and a
	// bound on concurrent password checks, at their defaults. Then all
	// parts at once.
	ids, err := clientid.NewPolicy()
	if err != nil {
		return err
	}
	limits, err := ratelimit.New(ratelimit.Config{Events: g})
	if err != nil {
		return err
	}
	g.Reload(mqttsec.Config{Authenticator: ratelimit.NewGate(auth.Chain(certs, passwords), ratelimit.GateConfig{}),
		Authorizer: wildcards.Wrap(policy), ClientIDs: ids, Registry: clientid.NewRegistry(), Limiter: limits,
		MaxPayload: 256 << 10, Events: events})
	limits.Bans().Attach(g) // a ban disconnects the sessions it covers

	// 6. mochi: bounded, its logs filtered, exactly one hook (with the
	// default memory limits, mochi.WithLimits), hardened listeners.
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = 256<<10 + 128<<10    // NewHook refuses an unbounded server
	caps.MaximumSessionExpiryInterval = 24 * 3600 // mochi's default is 136 years
	caps.MaximumClients = 10000
	server := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: mochi.Logger(log)})
	if _, err := mochi.NewHook(g, server, mochi.WithLogger(log)); err != nil {
		return err
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "mtls", Address: addr, TLSConfig: serverTLS})
	if err := server.AddListener(mochi.HardenWith(tcp, mochi.HardenConfig{})); err != nil {
		return err
	}
	if err := server.Serve(); err != nil {
		return err
	}
	log.Info("listening", "address", tcp.Address(), "ca", ca.CAFile())
	if ready != nil {
		ready(tcp.Address())
	}

	// 7. SIGHUP reloads every file; the end of ctx disconnects the clients
	// (MQTT 5: 0x8B server shutting down) and stops.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return server.Close()
		case <-hup:
			if err := errors.Join(pw.Reload(), tlsFiles.Reload(), enforcer.LoadPolicy()); err != nil {
				log.Warn("reload failed: the previous content stays in force", "error", err)
			}
		}
	}
}
