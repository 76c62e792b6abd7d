package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// broker starts an in-process broker that requires client certificates
// of a development CA and authenticates with authn; every user owns
// devices/<user>/#, and "admin" may read devices/#.
func broker(t *testing.T, authn mqttsec.Authenticator) (addr string, ca *tlsconf.DevCA) {
	t.Helper()
	ca, err := tlsconf.CreateDevCA(filepath.Join(t.TempDir(), "tls"))
	require.NoError(t, err)
	for _, n := range []string{"sensor-1", "admin"} {
		_, err := ca.IssueClient(n)
		require.NoError(t, err)
	}
	sc := ca.ServerConfig()
	sc.ClientAuth = tlsconf.ClientAuthRequire
	serverTLS, err := sc.Server()
	require.NoError(t, err)
	e, err := casbin.NewSyncedEnforcer(acl.NewModel())
	require.NoError(t, err)
	for _, p := range [][]string{{"*", "devices/%u/#", "readwrite", "allow"}, {"admin", "devices/#", "read", "allow"}} {
		_, err := e.AddPolicy(p[0], p[1], p[2], p[3])
		require.NoError(t, err)
	}
	policy, err := acl.NewCasbin(e)
	require.NoError(t, err)
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Authorizer: policy, Logger: slog.New(slog.DiscardHandler)})
	return testbroker.Start(t, g, testbroker.Options{TLS: serverTLS}).Addr, ca
}

func passwords(t *testing.T, users ...string) *auth.Passwords {
	t.Helper()
	pf := auth.NewPasswordFile()
	for _, u := range users {
		h, err := auth.HashPassword([]byte(u+"-pass"), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.NoError(t, pf.Set(u, h))
	}
	return auth.NewPasswords(pf, auth.PasswordsConfig{})
}

// watch subscribes the admin to the device's readings.
func watch(t *testing.T, addr string, ca *tlsconf.DevCA) *testbroker.Conn {
	t.Helper()
	tc, err := ca.ClientConfig("admin").Client()
	require.NoError(t, err)
	tc.ServerName = "localhost"
	admin, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "admin", Username: "admin", Password: []byte("admin-pass"), TLS: tc})
	require.NoError(t, err)
	require.Equal(t, byte(1), admin.Sub(t, "devices/sensor-1/telemetry", 1))
	return admin
}

// start runs the device until the test ends and returns its client IDs.
func start(t *testing.T, o options) <-chan string {
	t.Helper()
	ids := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, slog.New(slog.DiscardHandler), o, func(id string) { ids <- id })
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})
	return ids
}

func deviceOptions(addr string, ca *tlsconf.DevCA) options {
	cert, key := ca.ClientFiles("sensor-1")
	return options{broker: "mqtts://" + strings.Replace(addr, "127.0.0.1", "localhost", 1), caFile: ca.CAFile(),
		certFile: cert, keyFile: key, user: "sensor-1", topic: "devices/%u/telemetry", own: "devices/%u/#",
		interval: 100 * time.Millisecond, audience: "mqtt", ttl: time.Hour}
}

// TestDevicePassword runs the device with its client certificate and a
// password file: it connects with a generated client ID and its readings
// reach a subscriber.
func TestDevicePassword(t *testing.T) {
	addr, ca := broker(t, passwords(t, "sensor-1", "admin"))
	admin := watch(t, addr, ca)
	o := deviceOptions(addr, ca)
	o.passwordFile = filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(o.passwordFile, []byte("sensor-1-pass\n"), 0o600))
	ids := start(t, o)
	select {
	case id := <-ids:
		require.Regexp(t, `^sensor-1-[a-z2-7]{26}$`, id)
	case <-time.After(30 * time.Second):
		t.Fatal("the device did not connect")
	}
	admin.ExpectMessage(t, "devices/sensor-1/telemetry", 20*time.Second)
}

// TestDeviceJWT runs the device with a token it signs for each
// connection.
func TestDeviceJWT(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	j, err := auth.NewJWT(context.Background(), auth.JWTConfig{Algorithms: []string{"ES256"},
		PublicKeys: []crypto.PublicKey{key.Public()}, Issuer: "sensor-1", Audience: "mqtt"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = j.Close() })
	addr, ca := broker(t, auth.Chain(j, passwords(t, "admin")))
	admin := watch(t, addr, ca)
	o := deviceOptions(addr, ca)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	o.jwtKey = filepath.Join(t.TempDir(), "device.key")
	require.NoError(t, os.WriteFile(o.jwtKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	start(t, o)
	admin.ExpectMessage(t, "devices/sensor-1/telemetry", 30*time.Second)
}

// TestTopicFor checks the local topic validation.
func TestTopicFor(t *testing.T) {
	name, err := topicFor("devices/%u/telemetry", "devices/%u/#", "sensor-1", "sensor-1-X")
	require.NoError(t, err)
	require.Equal(t, "devices/sensor-1/telemetry", name)
	for _, tc := range []struct{ template, user, want string }{
		{"devices/%u/telemetry", "a/b", "cannot be part of a topic"},
		{"devices/%u/telemetry", "a+", "cannot be part of a topic"},
		{"devices/%u/#", "s", "topic \"devices/s/#\": "},
		{"devices/other/telemetry", "s", "is not under the device's own"},
		{"", "s", "topic \"\": "},
	} {
		_, err := topicFor(tc.template, "devices/%u/#", tc.user, "c")
		require.ErrorContains(t, err, tc.want, tc.template)
	}
	// A bad topic is refused before any connection is attempted.
	err = run(context.Background(), slog.New(slog.DiscardHandler), options{broker: "mqtts://localhost:1", user: "a/b", topic: "devices/%u/x", own: "devices/%u/#"}, nil)
	require.ErrorContains(t, err, "cannot be part of a topic")
}
