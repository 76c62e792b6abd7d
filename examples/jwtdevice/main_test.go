package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

// TestDeviceReconnectsWithFreshToken runs the example against an in-process
// broker that verifies its tokens: the device connects, is disconnected with
// 0xA0 when its 2-second token expires, and reconnects with a new token.
func TestDeviceReconnectsWithFreshToken(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "device.key")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600))

	j, err := auth.NewJWT(context.Background(), auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{key.Public()},
		Issuer: "sensor-42", Audience: "mqtt", Leeway: -1})
	require.NoError(t, err)
	defer j.Close()
	var mu sync.Mutex
	var connects, expiries int
	var published []string
	g := mqttsec.New(mqttsec.Config{
		Authenticator: j,
		Authorizer: mqttsec.AuthorizerFunc(func(_ context.Context, cl *mqttsec.Client, a mqttsec.Access, topic string) error {
			mu.Lock()
			defer mu.Unlock()
			if a == mqttsec.Publish {
				published = append(published, topic)
			}
			return nil
		}),
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			mu.Lock()
			defer mu.Unlock()
			switch e.Kind {
			case mqttsec.EventConnected:
				connects++
			case mqttsec.EventExpired:
				expiries++
			}
		}),
	})
	b := testbroker.Start(t, g, testbroker.Options{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slog.New(slog.DiscardHandler), "mqtt://"+b.Addr, "", keyFile, "sensor-42", "sensor-42", "mqtt",
			2*time.Second, "devices/%s/heartbeat", 100*time.Millisecond)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		ok := connects >= 2 && expiries >= 1 && len(published) > 0
		mu.Unlock()
		if ok {
			break
		}
		require.True(t, time.Now().Before(deadline), "device did not reconnect after its token expired")
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, "devices/sensor-42/heartbeat", published[0])
}

// TestDeviceSurvivesConnackWithAuthMethod connects the device to a fake
// broker whose CONNACK names an authentication method the device never
// asked for. paho calls its AuthHandler for such a CONNACK; without one the
// device process crashes.
func TestDeviceSurvivesConnackWithAuthMethod(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "device.key")
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	acked := make(chan struct{}, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := packets.ReadPacket(conn); err != nil {
			return
		}
		cp := packets.NewControlPacket(packets.CONNACK)
		cp.Content.(*packets.Connack).Properties = &packets.Properties{AuthMethod: "SCRAM-SHA-1"}
		if _, err := cp.WriteTo(conn); err != nil {
			return
		}
		acked <- struct{}{}
		_, _ = io.Copy(io.Discard, conn)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	connected := make(chan struct{}, 1)
	log := slog.New(logFunc(func(r slog.Record) {
		if r.Message == "connected" {
			select {
			case connected <- struct{}{}:
			default:
			}
		}
	}))
	go func() {
		done <- run(ctx, log, "mqtt://"+ln.Addr().String(), "", keyFile, "sensor-42", "", "",
			time.Minute, "devices/%s/heartbeat", time.Hour)
	}()
	// paho calls the AuthHandler while it reads the CONNACK, before the
	// connection is reported up.
	for _, c := range []chan struct{}{acked, connected} {
		select {
		case <-c:
		case <-time.After(20 * time.Second):
			t.Fatal("the device did not connect")
		}
	}
	cancel()
	require.NoError(t, <-done)
}

// logFunc is a slog.Handler that calls f for every record.
type logFunc func(slog.Record)

func (f logFunc) Enabled(context.Context, slog.Level) bool { return true }

func (f logFunc) Handle(_ context.Context, r slog.Record) error { f(r); return nil }

func (f logFunc) WithAttrs([]slog.Attr) slog.Handler { return f }

func (f logFunc) WithGroup(string) slog.Handler { return f }
