package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// TestSecureBroker runs the example and connects real MQTT clients to it:
// a certificate and a password authenticate, the acl_file decides, "#" is
// for admin only, and a user removed from the password file is
// disconnected by the file watcher.
func TestSecureBroker(t *testing.T) {
	dir := t.TempDir()
	pf := auth.NewPasswordFile()
	for _, u := range []string{"bob", "admin"} {
		h, err := auth.HashPassword([]byte(u+"-pass"), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.NoError(t, pf.Set(u, h))
	}
	require.NoError(t, pf.WriteFile(filepath.Join(dir, "passwd")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "aclfile"), []byte(
		"user alice\ntopic readwrite devices/alice/#\nuser bob\ntopic readwrite devices/bob/#\nuser admin\ntopic read #\n"), 0o600))
	ca, err := tlsconf.CreateDevCA(filepath.Join(dir, "tls"))
	require.NoError(t, err)
	_, err = ca.IssueClient("alice")
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	addrc, errc := make(chan string, 1), make(chan error, 1)
	go func() {
		errc <- run(ctx, slog.New(slog.DiscardHandler), dir, "127.0.0.1:0", func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the example did not start")
	}
	defer func() {
		cancel()
		require.NoError(t, <-errc)
	}()

	aliceTLS, err := ca.ClientConfig("alice").Client()
	require.NoError(t, err)
	aliceTLS.ServerName = "localhost"
	alice, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "alice-1", TLS: aliceTLS})
	require.NoError(t, err, "alice by certificate")
	bobTLS, err := ca.ClientConfig("").Client()
	require.NoError(t, err)
	bobTLS.ServerName = "localhost"
	bob, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "bob-1", Username: "bob", Password: []byte("bob-pass"), TLS: bobTLS})
	require.NoError(t, err, "bob by password")
	admin, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "admin-1", Username: "admin", Password: []byte("admin-pass"), TLS: bobTLS})
	require.NoError(t, err)
	_, ack, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "x", Username: "bob", Password: []byte("guess"), TLS: bobTLS})
	require.Error(t, err)
	require.Equal(t, byte(0x86), ack.ReasonCode)

	require.Equal(t, byte(0), admin.Sub(t, "#", 0))
	require.Equal(t, byte(0x87), bob.Sub(t, "#", 0), "root wildcards are for admin")
	require.Equal(t, byte(0x87), bob.Sub(t, "devices/alice/#", 0))
	code, err := alice.Pub(t, "devices/alice/temp", []byte("21"), 1)
	require.NoError(t, err)
	require.Zero(t, code)
	code, _ = alice.Pub(t, "devices/bob/cmd", []byte("x"), 1)
	require.Equal(t, byte(0x87), code)
	admin.ExpectMessage(t, "devices/alice/temp", 10*time.Second)

	require.NoError(t, pf.Delete("bob"))
	require.NoError(t, pf.WriteFile(filepath.Join(dir, "passwd")))
	select {
	case d := <-bob.ServerDisconnect():
		require.Equal(t, byte(0x87), d.ReasonCode)
	case <-time.After(20 * time.Second):
		t.Fatal("bob was not disconnected after his removal")
	}
}
