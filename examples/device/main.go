// Command device is an MQTT device client on autopaho, secured with mqttsec:
//
//   - TLS from package tlsconf: the broker's certificate verified against a
//     CA (its name always checked), the device's client certificate
//     presented, re-read at each connection so a renewed certificate is
//     used without a restart;
//   - fresh credentials at every connection attempt (auth.Configure): a
//     short-lived JWT signed with the device's key (auth.JWTMinter), or a
//     password read from a file;
//   - a generated client ID, "USER-" and 128 random bits
//     (clientid.Generate): unique, so two devices never take over each
//     other's session, and unguessable;
//   - topic names built from a template and checked locally with package
//     topic before any publish: a valid name, under the device's own
//     subtree, so the device never sends what the broker must refuse.
//
// Run it against `mqttsec serve` (whose development CA issues client
// certificates with `mqttsec certs client --dir .mqttsec/tls sensor-1`):
//
//	go run ./examples/device -broker mqtts://localhost:8883 -ca .mqttsec/tls/ca.pem \
//	    -cert .mqttsec/tls/client-sensor-1.pem -key .mqttsec/tls/client-sensor-1.key \
//	    -user sensor-1 -password-file sensor-1.pw
//
// With -jwt-key the password is a token signed with that key instead (the
// broker's auth.jwt names its public key, issuer and audience).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/clientid"
	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/mqttsec/mqttsec/topic"
)

// options are the device's settings (its flags).
type options struct {
	broker                    string
	caFile, certFile, keyFile string
	user, passwordFile        string
	jwtKey, issuer, audience  string
	ttl                       time.Duration
	topic, own                string // templates: %u the user, %c the client ID
	interval                  time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.broker, "broker", "mqtts://localhost:8883", "broker URL (mqtts://)")
	flag.StringVar(&o.caFile, "ca", "", "PEM CA bundle that signs the broker's certificate (default: the system roots)")
	flag.StringVar(&o.certFile, "cert", "", "the device's PEM client certificate")
	flag.StringVar(&o.keyFile, "key", "", "its private key")
	flag.StringVar(&o.user, "user", "", "the device's user name (and token subject)")
	flag.StringVar(&o.passwordFile, "password-file", "", "file holding the password")
	flag.StringVar(&o.jwtKey, "jwt-key", "", "PEM private key (ES256) that signs a token for each connection, instead of a password")
	flag.StringVar(&o.issuer, "issuer", "", "token issuer (default: the user name)")
	flag.StringVar(&o.audience, "audience", "mqtt", "token audience: the broker's name")
	flag.DurationVar(&o.ttl, "ttl", 10*time.Minute, "token lifetime")
	flag.StringVar(&o.topic, "topic", "devices/%u/telemetry", "topic of the readings (%u: user, %c: client ID)")
	flag.StringVar(&o.own, "own", "devices/%u/#", "the filter the device may publish to; anything else is refused before sending")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "time between readings")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, o, nil); err != nil {
		log.Error("device", "error", err)
		os.Exit(1)
	}
}

// run connects and publishes a reading every interval until ctx ends.
// connected, when set, is called at every connection.
func run(ctx context.Context, log *slog.Logger, o options, connected func(clientID string)) error {
	u, err := url.Parse(o.broker)
	if err != nil || (u.Scheme != "mqtts" && u.Scheme != "ssl" && u.Scheme != "tls") {
		return fmt.Errorf("-broker %q: want mqtts://host:port", o.broker)
	}
	if o.user == "" {
		return errors.New("-user is required")
	}
	clientID := newClientID(o.user)
	name, err := topicFor(o.topic, o.own, o.user, clientID)
	if err != nil {
		return err
	}

	// TLS: secure defaults from tlsconf; the Reloader re-reads the client
	// certificate when it changes, for the next connection.
	files, err := tlsconf.NewReloader(tlsconf.Config{CAFile: o.caFile, CertFile: o.certFile, KeyFile: o.keyFile})
	if err != nil {
		return err
	}
	defer files.Close()

	creds, err := credentials(o)
	if err != nil {
		return err
	}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        files.Client(),
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) {
			log.Info("connected", "client_id", clientID)
			if connected != nil {
				connected(clientID)
			}
		},
		OnConnectError: func(err error) { log.Warn("connection failed", "error", err) },
		ClientConfig: paho.ClientConfig{
			ClientID: clientID,
			OnServerDisconnect: func(d *paho.Disconnect) {
				// 0xA0: the token expired; autopaho reconnects with a new one.
				log.Info("disconnected by the broker", "reason", fmt.Sprintf("0x%02X", d.ReasonCode))
			},
		},
	}
	// Credentials at every attempt, and an AuthHandler: paho crashes on a
	// CONNACK that names an authentication method without one.
	auth.Configure(&cfg, creds)
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return err
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = cm.Disconnect(dctx)
			return nil
		case now := <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := cm.AwaitConnection(pctx); err == nil {
				pr, err := cm.Publish(pctx, &paho.Publish{Topic: name, QoS: 1, Payload: []byte(now.UTC().Format(time.RFC3339))})
				if err != nil || (pr != nil && pr.ReasonCode >= 0x80) {
					log.Warn("reading not accepted", "topic", name, "error", err)
				}
			}
			cancel()
		}
	}
}

// credentials returns a token minter or the password of the file.
func credentials(o options) (auth.CredentialProvider, error) {
	if o.jwtKey != "" {
		data, err := os.ReadFile(o.jwtKey)
		if err != nil {
			return nil, err
		}
		key, err := tlsconf.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.jwtKey, err)
		}
		iss := o.issuer
		if iss == "" {
			iss = o.user
		}
		m := &auth.JWTMinter{Method: jwt.SigningMethodES256, Key: key, Subject: o.user, Issuer: iss, Audience: o.audience, TTL: o.ttl}
		return auth.JWTCredentials(o.user, m), nil
	}
	if o.passwordFile == "" {
		return nil, errors.New("-password-file or -jwt-key is required")
	}
	return auth.CredentialProviderFunc(func(context.Context) (string, []byte, error) {
		pw, err := os.ReadFile(o.passwordFile) // read at each attempt: a rotated password is used
		return o.user, []byte(strings.TrimRight(string(pw), "\r\n")), err
	}), nil
}

// topicFor expands the topic template and checks the result locally: a
// valid topic name (no wildcard, no empty name, valid UTF-8) matched by the
// device's own filter. A user name or client ID with '/', '+' or '#' cannot
// be expanded (it would change the topic's levels) and is refused.
func topicFor(template, own, user, clientID string) (string, error) {
	name, ok := topic.Expand(template, user, clientID)
	if !ok {
		return "", fmt.Errorf("topic %q: the user name %q or client ID cannot be part of a topic", template, user)
	}
	if err := topic.ValidateName(name); err != nil {
		return "", fmt.Errorf("topic %q: %w", name, err)
	}
	filter, ok := topic.Expand(own, user, clientID)
	if !ok || topic.ValidateFilter(filter) != nil || !topic.Match(filter, name) {
		return "", fmt.Errorf("topic %q is not under the device's own %q", name, own)
	}
	return name, nil
}

// newClientID returns user, '-' and 128 random bits (clientid.Generate):
// with a broker that binds client IDs to users ("{username}-*"), the ID is
// the device's own, and no other device can guess or collide with it.
func newClientID(user string) string {
	return clientid.Generate(user + "-")
}
