// Command jwtdevice is an MQTT device client that authenticates with a JSON
// Web Token it signs itself, fresh on every (re)connect.
//
// The device holds a private key; the broker trusts the matching public key
// (or a JWKS with it) through auth.JWT. Each connection attempt signs a new
// short-lived token (auth.JWTMinter) and sends it as the MQTT password via
// autopaho's ConnectPacketBuilder (auth.Configure). When the token expires,
// a broker using mqttsec disconnects the client with reason code 0xA0;
// autopaho reconnects and the device presents a new token. The device's
// ID is the token subject, the user name and the client ID.
//
// Try it against the mqttsec broker with a development CA:
//
//	openssl ecparam -name prime256v1 -genkey -noout -out device.key
//	openssl ec -in device.key -pubout -out device.pub   # give this to the broker
//	go run ./examples/jwtdevice -broker mqtts://localhost:8883 -ca ca.pem \
//	    -key device.key -id sensor-42 -audience mqtt -ttl 10m
//
// The broker's auth.JWTConfig names the issuer and the audience it accepts
// (both are required by default): here the issuer is the device ID and the
// audience the broker's name.
//
// Flags:
//
//	-broker    broker URL: mqtt://host:1883 or mqtts://host:8883
//	-ca        PEM file of CAs that sign the broker's certificate (mqtts)
//	-key       PEM private key that signs the tokens (EC P-256, Ed25519 or RSA)
//	-id        device ID: token "sub", user name and client ID
//	-issuer    token "iss" (default: the device ID)
//	-audience  token "aud": the broker's name, which it requires
//	-ttl       token lifetime
//	-topic     topic the device publishes a heartbeat to ("%s" is the ID)
//	-interval  heartbeat interval
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttsec/mqttsec/auth"
)

func main() {
	var (
		broker   = flag.String("broker", "mqtts://localhost:8883", "broker URL")
		caFile   = flag.String("ca", "", "PEM file of CAs for the broker certificate")
		keyFile  = flag.String("key", "device.key", "PEM private key that signs the tokens")
		id       = flag.String("id", "", "device ID (token subject, user name, client ID)")
		issuer   = flag.String("issuer", "", "token issuer (default: the device ID)")
		audience = flag.String("audience", "mqtt", "token audience: the broker's name")
		ttl      = flag.Duration("ttl", 10*time.Minute, "token lifetime")
		topic    = flag.String("topic", "devices/%s/heartbeat", "heartbeat topic")
		interval = flag.Duration("interval", 10*time.Second, "heartbeat interval")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, *broker, *caFile, *keyFile, *id, *issuer, *audience, *ttl, *topic, *interval); err != nil {
		log.Error("jwtdevice", "error", err)
		stop()
		os.Exit(1)
	}
}

// run connects and publishes heartbeats until ctx ends.
func run(ctx context.Context, log *slog.Logger, broker, caFile, keyFile, id, issuer, audience string, ttl time.Duration, topic string, interval time.Duration) error {
	if id == "" {
		return errors.New("-id is required")
	}
	u, err := url.Parse(broker)
	if err != nil {
		return fmt.Errorf("-broker: %w", err)
	}
	if issuer == "" {
		issuer = id
	}
	key, method, err := loadSigningKey(keyFile)
	if err != nil {
		return err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return fmt.Errorf("no certificate in %s", caFile)
		}
		tlsCfg.RootCAs = pool
	}

	minter := &auth.JWTMinter{Method: method, Key: key, Subject: id, Issuer: issuer, Audience: audience, TTL: ttl}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) {
			log.Info("connected", "id", id)
		},
		OnConnectError: func(err error) { log.Warn("connect failed", "error", err) },
		ClientConfig: paho.ClientConfig{
			ClientID: id,
			OnServerDisconnect: func(d *paho.Disconnect) {
				// 0xA0: the token expired; autopaho reconnects with a new one.
				log.Info("server disconnected", "reason", fmt.Sprintf("0x%02X", d.ReasonCode))
			},
			OnClientError: func(err error) { log.Warn("client error", "error", err) },
		},
	}
	// A fresh token on every connection attempt; the ID doubles as user
	// name. Configure also installs an AuthHandler (auth.NoEnhancedAuth):
	// paho calls it for a CONNACK that carries an authentication method
	// and crashes without one, so a broker (or anyone on a plain mqtt://
	// path) could stop the device.
	auth.Configure(&cfg, auth.JWTCredentials(id, minter))

	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	name := fmt.Sprintf(topic, id)
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = cm.Disconnect(dctx)
			return nil
		case now := <-t.C:
			if err := cm.AwaitConnection(ctx); err != nil {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := cm.Publish(pctx, &paho.Publish{Topic: name, QoS: 1, Payload: []byte(now.UTC().Format(time.RFC3339))})
			cancel()
			if err != nil {
				log.Warn("publish failed", "topic", name, "error", err)
			}
		}
	}
}

// loadSigningKey reads a PEM private key and picks the matching signing
// method: ES256 for P-256, EdDSA for Ed25519, RS256 for RSA.
func loadSigningKey(path string) (crypto.Signer, jwt.SigningMethod, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, fmt.Errorf("no PEM data in %s", path)
	}
	var k any
	switch block.Type {
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve.Params().BitSize != 256 {
			return nil, nil, fmt.Errorf("%s: only P-256 EC keys (ES256)", path)
		}
		return k, jwt.SigningMethodES256, nil
	case ed25519.PrivateKey:
		return k, jwt.SigningMethodEdDSA, nil
	case *rsa.PrivateKey:
		return k, jwt.SigningMethodRS256, nil
	}
	return nil, nil, fmt.Errorf("%s: unsupported key type %T", path, k)
}
