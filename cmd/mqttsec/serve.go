package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/config"
	"github.com/mqttsec/mqttsec/mochi"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// serveOptions are the flags of "mqttsec serve".
type serveOptions struct {
	config      string
	printConfig bool
	check       bool

	// The development default's flags.
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

	// changed lists the development flags set on the command line.
	changed []string
}

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
		Short: "Run a hardened MQTT broker from a YAML file, or the development default",
		Long: `Run a mochi-mqtt broker guarded by mqttsec.

With --config FILE it runs the broker the file describes: listeners (TLS,
plaintext on loopback, websocket), authentication (a Mosquitto password
file, client certificates, JWTs, anonymous), authorization (a Mosquitto
acl_file and/or a Casbin policy, wildcard limits), bounds, logs and metrics
(go doc github.com/mqttsec/mqttsec/config for every key). Insecure settings
are refused unless their insecure_... switch is set. SIGHUP and file
changes reload passwords, policies and certificates; SIGINT and SIGTERM
disconnect the clients (MQTT 5: 0x8B server shutting down) and stop.

With no --config it starts the embedded development default: a TLS
listener on 127.0.0.1:8883 with a development CA, a password file and a
policy kept in the folder given by --dir (created on first start, with a
"dev" user whose generated password is printed once). The flags below
adjust it; --print-config prints it as a file to start from.`,
		Example: `  mqttsec serve
  mqttsec serve --print-config > mqttsec.yaml
  mqttsec serve --config mqttsec.yaml --check
  mqttsec serve --config mqttsec.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.Flags().Visit(func(fl *pflag.Flag) {
				if fl.Name != "config" && fl.Name != "print-config" && fl.Name != "check" {
					o.changed = append(o.changed, "--"+fl.Name)
				}
			})
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return runServe(ctx, o, cmd.OutOrStdout(), cmd.ErrOrStderr(), hup, nil)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.config, "config", "c", "", "YAML configuration file (see go doc github.com/mqttsec/mqttsec/config)")
	f.BoolVar(&o.printConfig, "print-config", false, "print the configuration as YAML (the development default with the flags given) and exit")
	f.BoolVar(&o.check, "check", false, "check the configuration and the files it names (existence, permissions), print the insecure switches it sets, and exit")
	f.StringVar(&o.dir, "dir", ".mqttsec", "state folder for the development default (CA, password file, policy)")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8883", "TLS listener address")
	f.StringVar(&o.passwd, "passwd", "", "password file (default DIR/passwd, created with a dev user)")
	f.StringVar(&o.policy, "acl", "", "Casbin policy file for acl.Model (default DIR/acl.csv, created)")
	f.StringVar(&o.certFile, "cert", "", "server certificate (default: the development CA's)")
	f.StringVar(&o.keyFile, "key", "", "server private key (with --cert)")
	f.StringVar(&o.clientCA, "client-ca", "", "CA bundle for client certificates: when set, clients must present one")
	f.StringVar(&o.insecurePlain, "insecure-plain-listen", "", "also listen WITHOUT TLS on this address (passwords cross the network in clear)")
	f.DurationVar(&o.connectTimeout, "connect-timeout", mochi.DefaultConnectTimeout, "close sockets that send no CONNECT within this time")
	f.IntVar(&o.maxPayload, "max-payload", config.DefaultMaxPayload, "largest PUBLISH payload in bytes")
	f.DurationVar(&o.maxSession, "max-session-expiry", config.DefaultMaxSessionExpiry, "longest time an offline session (subscriptions, queued messages) is kept")
	f.IntVar(&o.maxClients, "max-clients", config.DefaultMaxClients, "most clients connected at once (more are refused with 0x89 server busy)")
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

// devInfo is what the development default prints on start.
type devInfo struct {
	password   string // the dev user's password, when it was just created
	passwdPath string
	caFile     string // the development CA, when it serves the listener
}

// runServe runs the broker until ctx is done, reloading every file when
// hup receives. Its banner goes to stdout, the log and security events to
// stderr. ready, when set, is called once the broker accepts connections.
func runServe(ctx context.Context, o *serveOptions, stdout, stderr io.Writer, hup <-chan os.Signal, ready func(*config.Server)) error {
	var (
		f   *config.File
		dev *devInfo
		err error
	)
	if o.config != "" {
		if len(o.changed) > 0 {
			return fmt.Errorf("%s cannot be combined with --config: set them in %s", strings.Join(o.changed, ", "), o.config)
		}
		f, err = config.Load(o.config)
	} else {
		f, dev, err = devDefault(o, !o.printConfig && !o.check)
	}
	if err != nil {
		return err
	}
	if o.printConfig {
		return printConfig(stdout, f, o)
	}
	if o.check {
		if err := f.Check(); err != nil {
			return err
		}
		for _, w := range f.Insecure() {
			fmt.Fprintln(stdout, "insecure:", w)
		}
		fmt.Fprintf(stdout, "%s: ok\n", f.Name())
		return nil
	}

	rt, err := f.Open(ctx, config.Options{Output: stderr})
	if err != nil {
		return err
	}
	defer rt.Close()
	srv, err := rt.Server()
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return err
	}
	log := rt.Logger()
	for i, l := range f.Listeners {
		log.Info("listening", "listener", f.ListenerName(i), "address", srv.Addr(i),
			"tls", l.TLS != nil, "websocket", l.Websocket)
	}
	if m := rt.MetricsAddr(); m != "" {
		log.Info("serving metrics", "address", m, "path", "/metrics")
	}
	if dev != nil {
		addr := srv.Addr(0)
		fmt.Fprintf(stdout, "mqttsec: serving MQTT over TLS on %s (development default in %s; mqttsec serve --print-config prints it as a file)\n", addr, o.dir)
		if dev.password != "" {
			fmt.Fprintf(stdout, "mqttsec: created user \"dev\" with password %s (shown once; change it with: mqttsec passwd %s dev)\n", dev.password, dev.passwdPath)
		}
		if dev.caFile != "" {
			fmt.Fprintf(stdout, "mqttsec: try: mosquitto_sub -h 127.0.0.1 -p %s --cafile %s -u dev -P PASSWORD -t 'devices/dev/#' -v\n", portOf(addr), dev.caFile)
		}
	}
	if ready != nil {
		ready(srv)
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down: disconnecting clients")
			return srv.Close()
		case <-hup:
			log.Info("reloading every file (SIGHUP)")
			if err := rt.Reload(); err != nil {
				log.Warn("reload failed: the previous content stays in force", "error", err)
			}
		}
	}
}

// printConfig writes f as YAML with a header that says how to use it.
func printConfig(w io.Writer, f *config.File, o *serveOptions) error {
	data, err := f.Marshal()
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "# mqttsec serve configuration. Save it, edit it and run:")
	fmt.Fprintln(w, "#   mqttsec serve --config FILE")
	fmt.Fprintln(w, "# Every key: go doc github.com/mqttsec/mqttsec/config")
	if o.config == "" {
		fmt.Fprintln(w, "# This is the development default with the flags given. The files it names")
		fmt.Fprintf(w, "# are created by the first \"mqttsec serve\" with the same flags, in %s.\n", o.dir)
	}
	_, err = w.Write(data)
	return err
}

// devDefault returns the development default as a File. With create, it
// makes the state folder, the development CA, the password file (with a
// dev user) and the policy when they do not exist.
func devDefault(o *serveOptions, create bool) (*config.File, *devInfo, error) {
	if o.maxPayload <= 0 {
		return nil, nil, errors.New("--max-payload must be positive")
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return nil, nil, err
	}
	abs := func(p string) (string, error) {
		if p == "" {
			return "", nil
		}
		return filepath.Abs(p)
	}
	dev := &devInfo{}
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, err
		}
	}
	t := &config.ListenerTLS{}
	switch {
	case o.certFile != "" || o.keyFile != "":
		if o.certFile == "" || o.keyFile == "" {
			return nil, nil, errors.New("--cert and --key go together")
		}
		if t.CertFile, err = abs(o.certFile); err != nil {
			return nil, nil, err
		}
		if t.KeyFile, err = abs(o.keyFile); err != nil {
			return nil, nil, err
		}
	default:
		caDir := filepath.Join(dir, "tls")
		t.CertFile, t.KeyFile = filepath.Join(caDir, tlsconf.DevServerCert), filepath.Join(caDir, tlsconf.DevServerKey)
		dev.caFile = filepath.Join(caDir, tlsconf.DevCACert)
		if create {
			if _, err := tlsconf.EnsureDevCA(caDir); err != nil {
				return nil, nil, fmt.Errorf("development CA: %w", err)
			}
		}
	}
	if o.clientCA != "" {
		if t.ClientCAFile, err = abs(o.clientCA); err != nil {
			return nil, nil, err
		}
		t.ClientAuth = "required"
	}
	f := &config.File{Listeners: []config.Listener{{Address: o.listen, TLS: t}}}
	if o.insecurePlain != "" {
		f.Listeners = append(f.Listeners, config.Listener{Address: o.insecurePlain, InsecurePlaintext: !loopback(o.insecurePlain)})
	}

	dev.passwdPath = o.passwd
	if dev.passwdPath == "" {
		dev.passwdPath = filepath.Join(dir, "passwd")
		if create {
			if dev.password, err = ensureDevPasswd(dev.passwdPath); err != nil {
				return nil, nil, err
			}
		}
	}
	if f.Auth.PasswordFile, err = abs(dev.passwdPath); err != nil {
		return nil, nil, err
	}
	policy := o.policy
	if policy == "" {
		policy = filepath.Join(dir, "acl.csv")
		if create {
			if err := ensureDevPolicy(policy); err != nil {
				return nil, nil, err
			}
		}
	}
	if f.ACL.CasbinPolicy, err = abs(policy); err != nil {
		return nil, nil, err
	}
	f.RateLimit = &config.RateLimit{MaxPayload: o.maxPayload}
	f.Broker = config.Broker{MaxSessionExpiry: o.maxSession, MaxClients: o.maxClients, ConnectTimeout: o.connectTimeout}
	f.Limits = devLimits(o)
	f.Log = config.Log{Level: o.logLevel, Format: "text"}
	// Round-trip through YAML so that the development default is validated
	// exactly as a file is, and --print-config prints what runs.
	data, err := f.Marshal()
	if err != nil {
		return nil, nil, err
	}
	parsed, err := config.Parse(data, "development default")
	if err != nil {
		return nil, nil, err
	}
	return parsed, dev, nil
}

// devLimits maps the memory-bound flags to the limits section, leaving out
// the values that are the libraries' defaults (nil when all are).
func devLimits(o *serveOptions) *config.Limits {
	l, q := o.limits, o.quotas
	lim := &config.Limits{
		RetainedPerUser:      nd(q.RetainedPerSubject, mqttsec.DefaultRetainedPerSubject),
		RetainedBytesPerUser: nd(q.RetainedBytesPerSubject, mqttsec.DefaultRetainedBytesPerSubject),
		Retained:             nd(q.Retained, mqttsec.DefaultRetained),
		RetainedBytes:        nd(q.RetainedBytes, mqttsec.DefaultRetainedBytes),
		SessionsPerUser:      nd(q.SessionsPerSubject, mqttsec.DefaultSessionsPerSubject),
		Sessions:             nd(q.Sessions, mqttsec.DefaultSessions),
		DropQoS0Backlog:      nd(l.DropBacklog, mochi.DefaultDropBacklog),
		ClientBacklog:        nd(l.MaxBacklog, mochi.DefaultMaxBacklog),
		UserBacklog:          nd(l.SubjectBacklog, mochi.DefaultSubjectBacklog),
		Outbound:             nd(l.Outbound, mochi.DefaultOutbound),
		QueuedMessages:       nd(l.QueuedMessages, mochi.DefaultQueuedMessages),
		QueuedBytes:          nd(l.QueuedBytes, mochi.DefaultQueuedBytes),
		Subscriptions:        nd(l.Subscriptions, mochi.DefaultSubscriptions),
		SubscriptionBytes:    nd(l.SubscriptionBytes, mochi.DefaultSubscriptionBytes),
		FiltersPerSubscribe:  nd(l.FiltersPerSubscribe, mochi.DefaultFiltersPerSubscribe),
		TopicLength:          nd(l.TopicLength, mochi.DefaultTopicLength),
		PropertyBytes:        nd(l.PropertyBytes, mochi.DefaultPropertyBytes),
		Inflight:             nd(l.Inflight, mochi.DefaultInflight),
		WriteStall:           nd(l.WriteStall, mochi.DefaultWriteStall),
		WriteTimeout:         nd(o.writeTimeout, mochi.DefaultWriteTimeout),
	}
	if *lim == (config.Limits{}) {
		return nil
	}
	return lim
}

// nd returns v, or zero (the default) when v is def.
func nd[T comparable](v, def T) T {
	var zero T
	if v == def {
		return zero
	}
	return v
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ensureDevPasswd creates a password file with user "dev" and a random
// password when nothing is at path (not even a dangling symbolic link),
// and returns that password.
func ensureDevPasswd(path string) (string, error) {
	if _, err := os.Lstat(path); err == nil {
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

// ensureDevPolicy writes the development policy to path unless something
// is there. O_CREATE|O_EXCL creates the file or fails, and never follows a
// symbolic link, dangling or not: a link planted at path cannot make serve
// write elsewhere.
func ensureDevPolicy(path string) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(devPolicy); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func portOf(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		return p
	}
	return addr
}
