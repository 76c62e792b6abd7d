// Command bridge connects a local MQTT broker to remote brokers with the
// bridges of a YAML file, the same "bridges:" section "mqttsec serve" reads:
//
//	bridges:
//	  - name: cloud
//	    remote: "mqtts://broker.example.com:8883"
//	    tls: { ca_file: ca.pem, cert_file: site.pem, key_file: site-key.pem }
//	    username: site1
//	    password_file: bridge.pass        # chmod 600; or password_env: BRIDGE_PASSWORD
//	    client_id: site1-bridge
//	    status_topic: bridges/cloud/state
//	    topics:
//	      - { pattern: "sensors/#", direction: out, qos: 1, remote_prefix: "site1/" }
//	      - { pattern: "cmd/#", direction: in, qos: 1, remote_prefix: "site1/" }
//
// Run it next to the local broker:
//
//	go run ./examples/bridge -config bridges.yaml -local mqtt://127.0.0.1:1883 \
//	    -local-user bridge -local-password-file local.pass
//
// Every bridge is validated before anything connects: a plaintext remote, a
// password written in the file, a world-readable password file or "#" both
// ways without loop prevention stop the program with a message naming the
// bridge. Connection changes and refused messages are logged as JSON lines;
// every minute each bridge's counters are logged too. Ctrl-C stops the
// bridges cleanly.
//
// Flags:
//
//	-config               the YAML file with the bridges
//	-local                the local broker: mqtt://127.0.0.1:1883 (plaintext only on loopback),
//	                      or mqtts://host:8883
//	-local-ca             PEM CA bundle for an mqtts:// local broker (default: system roots)
//	-local-user           user name on the local broker
//	-local-password-file  file with the password on the local broker (chmod 600)
//	-stats                interval of the counters in the log (0: never)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// options are the command-line settings.
type options struct {
	config            string
	local             string
	localCA           string
	localUser         string
	localPasswordFile string
	stats             time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.config, "config", "bridges.yaml", "YAML file with the bridges")
	flag.StringVar(&o.local, "local", "mqtt://127.0.0.1:1883", "local broker URL")
	flag.StringVar(&o.localCA, "local-ca", "", "PEM CA bundle for an mqtts:// local broker")
	flag.StringVar(&o.localUser, "local-user", "", "user name on the local broker")
	flag.StringVar(&o.localPasswordFile, "local-password-file", "", "file with the password on the local broker")
	flag.DurationVar(&o.stats, "stats", time.Minute, "interval of the counters in the log (0: never)")
	flag.Parse()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, logger, o); err != nil {
		logger.Error("bridge", "error", err)
		stop()
		os.Exit(1)
	}
}

// run starts the bridges of o.config and stops them when ctx ends.
func run(ctx context.Context, logger *slog.Logger, o options) error {
	data, err := os.ReadFile(o.config)
	if err != nil {
		return err
	}
	cfgs, err := bridge.ParseConfigs(data)
	if err != nil {
		return err
	}
	for _, c := range cfgs {
		for _, f := range c.Findings() { // allowed by a loud switch, still worth a warning
			logger.Warn("insecure bridge setting", "bridge", f.Bridge, "id", f.ID, "message", f.Message)
		}
	}
	local, err := localSide(o)
	if err != nil {
		return err
	}
	events := mqttsec.SlogSink(logger)
	var running []*bridge.Bridge
	defer func() {
		for _, b := range running {
			_ = b.Close()
		}
	}()
	for _, c := range cfgs {
		b, err := bridge.Start(ctx, c, local, bridge.WithEvents(events))
		if err != nil {
			return err
		}
		running = append(running, b)
	}
	logger.Info("bridges started", "count", len(running))
	var tick <-chan time.Time
	if o.stats > 0 {
		t := time.NewTicker(o.stats)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			for _, b := range running {
				s := b.Stats()
				logger.Info("bridge stats", "bridge", b.Name(), "remote_connected", s.Remote.Connected, "local_connected", s.Local.Connected,
					"out_forwarded", s.Out.Forwarded, "in_forwarded", s.In.Forwarded, "dropped", s.Out.Dropped+s.In.Dropped,
					"refused", s.Out.Refused+s.In.Refused, "held", s.Out.Held+s.In.Held)
			}
		}
	}
}

// localSide builds the local connection from the flags.
func localSide(o options) (bridge.Local, error) {
	l := bridge.Local{URL: o.local, Username: o.localUser}
	if o.localPasswordFile != "" {
		p, err := readSecret(o.localPasswordFile)
		if err != nil {
			return l, err
		}
		l.Password = p
	}
	if o.localCA != "" {
		tc, err := tlsconf.Config{CAFile: o.localCA}.Client()
		if err != nil {
			return l, err
		}
		l.TLS = tc
	}
	return l, nil
}

// readSecret reads the first line of a file that only its owner can read.
func readSecret(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	if line = strings.TrimSuffix(line, "\r"); line == "" {
		return nil, errors.New(path + " is empty")
	}
	return []byte(line), nil
}
