package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/tlsconf"
)

var users = map[string]string{"bridge": "bridge-pw", "alice": "alice-pw"}

func guard() *mqttsec.Guard {
	return mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if p, ok := users[cl.Username]; ok && p == string(cred.Password) {
				return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
			}
			return nil, fmt.Errorf("%w: unknown user", mqttsec.ErrBadCredentials)
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil }),
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// TestBridgeExample runs the example between an in-process local broker and
// an in-process "cloud" broker with TLS from a development CA.
func TestBridgeExample(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsconf.CreateDevCA(filepath.Join(dir, "ca"))
	require.NoError(t, err)
	sc, err := ca.ServerConfig().Server()
	require.NoError(t, err)
	local := testbroker.Start(t, guard(), testbroker.Options{})
	cloud := testbroker.Start(t, guard(), testbroker.Options{TLS: sc})
	_, port, _ := net.SplitHostPort(cloud.Addr)

	cfg := writeFile(t, dir, "bridges.yaml", fmt.Sprintf(`bridges:
  - name: cloud
    remote: "mqtts://localhost:%s"
    tls: { ca_file: %q }
    username: bridge
    password_file: %q
    client_id: site1-bridge
    reconnect_min: 50ms
    topics:
      - { pattern: "sensors/#", direction: out, qos: 1, remote_prefix: "site1/" }
      - { pattern: "cmd/#", direction: in, qos: 1, remote_prefix: "site1/" }
`, port, ca.CAFile(), writeFile(t, dir, "bridge.pass", "bridge-pw\n")))
	o := options{config: cfg, local: "mqtt://" + local.Addr, localUser: "bridge",
		localPasswordFile: writeFile(t, dir, "local.pass", "bridge-pw\n"), stats: 50 * time.Millisecond}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, slog.New(slog.DiscardHandler), o) }()

	cc, err := ca.ClientConfig("").Client()
	require.NoError(t, err)
	cc = cc.Clone()
	cc.ServerName = "localhost"
	dial := func(addr, id string, tc bool) *testbroker.Conn {
		opts := testbroker.ClientOptions{ClientID: id, Username: "alice", Password: []byte("alice-pw")}
		if tc {
			opts.TLS = cc
		}
		c, _, err := testbroker.Dial(t, addr, opts)
		require.NoError(t, err)
		return c
	}
	csub := dial(cloud.Addr, "csub", true)
	require.Equal(t, byte(1), csub.Sub(t, "site1/#", 1))
	lsub := dial(local.Addr, "lsub", false)
	require.Equal(t, byte(1), lsub.Sub(t, "cmd/#", 1))
	lpub := dial(local.Addr, "lpub", false)
	cpub := dial(cloud.Addr, "cpub", true)

	// The bridge subscribes once connected: publish until a message crosses.
	require.Eventually(t, func() bool {
		_, err := lpub.Pub(t, "sensors/temp", []byte("21"), 1)
		require.NoError(t, err)
		select {
		case m := <-csub.Messages():
			return m.Topic == "site1/sensors/temp"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, 20*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := cpub.Pub(t, "site1/cmd/reboot", []byte("now"), 1)
		require.NoError(t, err)
		select {
		case m := <-lsub.Messages():
			return m.Topic == "cmd/reboot"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, 20*time.Second, time.Millisecond)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return")
	}
}

// TestBridgeExampleRefusesInsecure: a plaintext remote stops the program
// with a message naming the bridge, before any connection.
func TestBridgeExampleRefusesInsecure(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "bridges.yaml", `bridges:
  - name: cloud
    remote: "mqtt://broker.example.com"
    client_id: site1-bridge
    topics: [{ pattern: "#", direction: out }]
`)
	err := run(context.Background(), slog.New(slog.DiscardHandler), options{config: cfg, local: "mqtt://127.0.0.1:1"})
	require.ErrorContains(t, err, `bridge "cloud": remote "mqtt://broker.example.com" is plaintext`)
}
