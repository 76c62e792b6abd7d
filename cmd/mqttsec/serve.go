package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/casbin/casbin/v2"
	fileadapter "github.com/casbin/casbin/v2/persist/file-adapter"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/spf13/cobra"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/mochi"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// serveOptions are the flags of "mqttsec serve".
type serveOptions struct {
	dir            string
	listen         string
	passwd         string
	policy         string
	certFile       string
	keyFile        string
	clientCA       string
	insecurePlain  string
	connectTimeout time.Duration
	maxPayload     int
	maxSession     time.Duration
	maxClients     int
	writeTimeout   time.Duration
	limits         mochi.Limits   // per-client and outbound bounds (zero: the library defaults)
	quotas         mqttsec.Quotas // retained messages and persistent sessions per user
	logLevel       string
}

// The defaults of the bounds serve puts on mochi, whose own defaults keep an
// offline session for 136 years and accept any number of clients: every
// authenticated user could make the broker hold unbounded state.
const (
	defaultMaxSession = 24 * time.Hour
	defaultMaxClients = 10000
)

// devPolicy is the policy written on first start: every user owns
// devices/<username>/ and may read public/; the dev user may also publish
// to public/.
const devPolicy = `# mqttsec policy (Casbin, model acl.Model): p, subject, topic filter, read|write|readwrite, allow|deny
# Every user owns devices/<username>/...; %u is replaced by the user name.
p, *, devices/%u/#, readwrite, allow
p, *, public/#, read, allow
p, dev, public/#, readwrite, allow
`

func init() {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a hardened MQTT broker (TLS, password file, Casbin policy)",
		Long: `Run a mochi-mqtt broker guarded by mqttsec.

With no flags it starts the embedded development default: a TLS listener on
127.0.0.1:8883 with a development CA, a password file and a policy kept in
the folder given by --dir (created on first start, with a "dev" user whose
generated password is printed once). Files are reloaded when they change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, o, cmd.OutOrStdout(), nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", ".mqttsec", "state folder for the development default (CA, password file, policy)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8883", "TLS listener address")
	f.StringVar(&o.passwd, "passwd", "", "password file (default DIR/passwd, created with a dev user)")
	f.StringVar(&o.policy, "acl", "", "Casbin policy file for acl.Model (default DIR/acl.csv, created)")
	f.StringVar(&o.certFile, "cert", "", "server certificate (default: the development CA's)")
	f.StringVar(&o.keyFile, "key", "", "server private key (with --cert)")
	f.StringVar(&o.clientCA, "client-ca", "", "CA bundle for client certificates: when set, clients must present one")
	f.StringVar(&o.insecurePlain, "insecure-plain-listen", "", "also listen WITHOUT TLS on this address (passwords cross the network in clear)")
	f.DurationVar(&o.connectTimeout, "connect-timeout", mochi.DefaultConnectTimeout, "close sockets that send no CONNECT within this time")
	f.IntVar(&o.maxPayload, "max-payload", 256*1024, "largest PUBLISH payload in bytes (0: no limit)")
	f.DurationVar(&o.maxSession, "max-session-expiry", defaultMaxSession, "longest time an offline session (subscriptions, queued messages) is kept")
	f.IntVar(&o.maxClients, "max-clients", defaultMaxClients, "most clients connected at once (more are refused with 0x89 server busy)")
	limitFlags(cmd, o)
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	rootCmd.AddCommand(cmd)
}

// limitFlags registers the memory bounds of serve (mochi.Limits,
// mqttsec.Quotas and the listeners' write timeout) with the library
// defaults; -1 lifts a bound. See "Memory bounds" in README.md.
func limitFlags(cmd *cobra.Command, o *serveOptions) {
	f, l, q := cmd.Flags(), &o.limits, &o.quotas
	f.DurationVar(&o.writeTimeout, "write-timeout", mochi.DefaultWriteTimeout, "close a connection whose socket takes no data for this long (it does not read)")
	f.DurationVar(&l.WriteStall, "write-stall", mochi.DefaultWriteStall, "disconnect a client whose socket takes no data for this long when a QoS 1/2 message waits for it (mochi would stall the publisher)")
	f.Int64Var(&l.DropBacklog, "drop-qos0-backlog", mochi.DefaultDropBacklog, "bytes of messages pending for a client beyond which QoS 0 messages to it are dropped")
	f.Int64Var(&l.MaxBacklog, "max-client-backlog", mochi.DefaultMaxBacklog, "bytes of messages pending for a client beyond which it is disconnected as a slow consumer")
	f.Int64Var(&l.SubjectBacklog, "max-user-backlog", mochi.DefaultSubjectBacklog, "bytes of messages pending for all the clients and kept sessions of one user")
	f.Int64Var(&l.Outbound, "max-outbound", mochi.DefaultOutbound, "bytes of messages pending for all clients together")
	f.IntVar(&l.QueuedMessages, "max-queued-messages", mochi.DefaultQueuedMessages, "QoS 1/2 messages queued for a kept session while its client is offline")
	f.Int64Var(&l.QueuedBytes, "max-queued-bytes", mochi.DefaultQueuedBytes, "bytes of messages queued for a kept session while its client is offline")
	f.IntVar(&l.Subscriptions, "max-subscriptions", mochi.DefaultSubscriptions, "topic filters one client may hold")
	f.Int64Var(&l.SubscriptionBytes, "max-subscription-bytes", mochi.DefaultSubscriptionBytes, "memory of one client's topic filters (1 KiB + 640 B per level + length each)")
	f.IntVar(&l.FiltersPerSubscribe, "max-filters-per-subscribe", mochi.DefaultFiltersPerSubscribe, "topic filters one SUBSCRIBE may ask for")
	f.IntVar(&l.TopicLength, "max-topic-length", mochi.DefaultTopicLength, "longest topic name or filter in bytes")
	f.IntVar(&l.PropertyBytes, "max-property-bytes", mochi.DefaultPropertyBytes, "bytes of properties of a PUBLISH, or of a CONNECT and its will")
	f.IntVar(&l.Inflight, "max-inflight", mochi.DefaultInflight, "QoS 1/2 messages stored per client (mochi's MaximumInflight)")
	f.IntVar(&q.RetainedPerSubject, "max-retained-per-user", mqttsec.DefaultRetainedPerSubject, "retained messages the publishes of one user may hold")
	f.Int64Var(&q.RetainedBytesPerSubject, "max-retained-bytes-per-user", mqttsec.DefaultRetainedBytesPerSubject, "bytes of those (topic, payload, 1 KiB + 640 B per topic level)")
	f.IntVar(&q.Retained, "max-retained", mqttsec.DefaultRetained, "retained messages of all users")
	f.Int64Var(&q.RetainedBytes, "max-retained-bytes", mqttsec.DefaultRetainedBytes, "bytes of retained messages of all users")
	f.IntVar(&q.SessionsPerSubject, "max-sessions-per-user", mqttsec.DefaultSessionsPerSubject, "persistent sessions (connected or kept) one user may hold")
	f.IntVar(&q.Sessions, "max-sessions", mqttsec.DefaultSessions, "persistent sessions of all users")
}

// runServe runs the broker until ctx is done. ready, when set, is called
// with the listener addresses once the broker accepts connections.
func runServe(ctx context.Context, o *serveOptions, out io.Writer, ready func(tlsAddr, plainAddr string)) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}

	// TLS: the development CA unless a certificate is given.
	tc := tlsconf.Config{Events: mqttsec.SlogSink(logger)}
	var caFile string
	if o.certFile != "" || o.keyFile != "" {
		if o.certFile == "" || o.keyFile == "" {
			return errors.New("--cert and --key go together")
		}
		tc.CertFile, tc.KeyFile = o.certFile, o.keyFile
	} else {
		ca, err := tlsconf.EnsureDevCA(filepath.Join(o.dir, "tls"))
		if err != nil {
			return fmt.Errorf("development CA: %w", err)
		}
		tc.CertFile, tc.KeyFile = ca.ServerFiles()
		caFile = ca.CAFile()
	}
	if o.clientCA != "" {
		tc.CAFile, tc.ClientAuth = o.clientCA, tlsconf.ClientAuthRequire
	}
	reloader, err := tlsconf.NewReloader(tc)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	defer reloader.Close()
	serverTLS, err := reloader.Server()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}

	// Passwords, reloaded on change.
	passwdPath := o.passwd
	var devPassword string
	if passwdPath == "" {
		passwdPath = filepath.Join(o.dir, "passwd")
		if devPassword, err = ensureDevPasswd(passwdPath); err != nil {
			return err
		}
	}
	passwords := auth.NewPasswords(auth.NewPasswordFile(), auth.PasswordsConfig{})
	pw, err := auth.WatchPasswordFile(passwdPath, passwords, auth.WatchOptions{Events: mqttsec.SlogSink(logger)})
	if err != nil {
		return err
	}
	defer pw.Close()

	// Policy, reloaded on change.
	policyPath := o.policy
	if policyPath == "" {
		policyPath = filepath.Join(o.dir, "acl.csv")
		if _, err := os.Stat(policyPath); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(policyPath, []byte(devPolicy), 0o600); err != nil {
				return err
			}
		}
	}
	enf, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(policyPath))
	if err != nil {
		return fmt.Errorf("policy %s: %w", policyPath, err)
	}
	authz, err := acl.NewCasbin(enf)
	if err != nil {
		return fmt.Errorf("policy %s: %w", policyPath, err)
	}
	fw, err := acl.WatchFile(enf, policyPath)
	if err != nil {
		return fmt.Errorf("policy %s: %w", policyPath, err)
	}
	defer fw.Close()

	g := mqttsec.New(mqttsec.Config{
		Authenticator: passwords,
		Authorizer:    authz,
		MaxPayload:    o.maxPayload,
		Quotas:        o.quotas,
		Logger:        logger,
	})

	// Bound what mochi reads per packet: without a maximum it allocates
	// whatever size a first, unauthenticated packet claims (up to 256 MB).
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = maxPacketSize(o.maxPayload)
	caps.MaximumSessionExpiryInterval = uint32(cmp.Or(o.maxSession, defaultMaxSession) / time.Second)
	caps.MaximumClients = int64(cmp.Or(o.maxClients, defaultMaxClients))
	server := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: mochi.Logger(logger)})
	if _, err := mochi.NewHook(g, server, mochi.WithLogger(logger), mochi.WithConnectTimeout(o.connectTimeout),
		mochi.WithLimits(o.limits)); err != nil {
		return err
	}
	harden := mochi.HardenConfig{ConnectTimeout: o.connectTimeout, WriteTimeout: o.writeTimeout}
	tlsL := listeners.NewTCP(listeners.Config{ID: "tls", Address: o.listen, TLSConfig: serverTLS})
	if err := server.AddListener(mochi.HardenWith(tlsL, harden)); err != nil {
		return fmt.Errorf("listen %s: %w", o.listen, err)
	}
	plainAddr := ""
	if o.insecurePlain != "" {
		logger.Warn("plaintext listener enabled: credentials and messages are not encrypted", "address", o.insecurePlain)
		pl := listeners.NewTCP(listeners.Config{ID: "plain", Address: o.insecurePlain})
		if err := server.AddListener(mochi.HardenWith(pl, harden)); err != nil {
			return fmt.Errorf("listen %s: %w", o.insecurePlain, err)
		}
		plainAddr = pl.Address()
	}
	errc := make(chan error, 1)
	go func() { errc <- server.Serve() }()
	if err := <-errc; err != nil {
		return err
	}
	defer server.Close()

	tlsAddr := tlsL.Address()
	fmt.Fprintf(out, "mqttsec: serving MQTT over TLS on %s (password file %s, policy %s)\n", tlsAddr, passwdPath, policyPath)
	if devPassword != "" {
		fmt.Fprintf(out, "mqttsec: created user \"dev\" with password %s (shown once; change it with: mqttsec passwd %s dev)\n", devPassword, passwdPath)
	}
	if caFile != "" {
		fmt.Fprintf(out, "mqttsec: try: mosquitto_sub -h 127.0.0.1 -p %s --cafile %s -u dev -P PASSWORD -t 'devices/dev/#' -v\n", portOf(tlsAddr), caFile)
	}
	if ready != nil {
		ready(tlsAddr, plainAddr)
	}
	<-ctx.Done()
	return nil
}

// ensureDevPasswd creates a password file with user "dev" and a random
// password when path does not exist, and returns that password.
func ensureDevPasswd(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return "", nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	pass := base64.RawURLEncoding.EncodeToString(b[:])
	h, err := auth.HashPassword([]byte(pass), auth.HashOptions{})
	if err != nil {
		return "", err
	}
	f := auth.NewPasswordFile()
	if err := f.Set("dev", h); err != nil {
		return "", err
	}
	if err := f.WriteFile(path); err != nil {
		return "", err
	}
	return pass, nil
}

// maxPacketSize is the largest MQTT packet serve accepts: the payload limit
// plus room for the longest topic and properties, or 16 MiB without one.
func maxPacketSize(maxPayload int) uint32 {
	if maxPayload <= 0 || maxPayload > 16<<20 {
		return 16 << 20
	}
	return uint32(maxPayload) + 128<<10
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}
