package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/mochi"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEnsureDevPasswd checks the first-start password file: mode 0600, a
// bcrypt hash at the default cost that verifies the printed password, and
// no change when the file exists.
func TestEnsureDevPasswd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	pass, err := ensureDevPasswd(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(pass), 20)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	f, err := auth.LoadPasswordFile(path)
	require.NoError(t, err)
	h, ok := f.Lookup("dev")
	require.True(t, ok)
	require.Equal(t, auth.Bcrypt, h.Scheme())
	require.Contains(t, h.String(), fmt.Sprintf("$%d$", auth.DefaultBcryptCost))
	require.True(t, h.Verify([]byte(pass)))

	again, err := ensureDevPasswd(path)
	require.NoError(t, err)
	require.Empty(t, again, "an existing file is kept")
}

// TestServeDevDefault starts the embedded development default and talks to
// it over TLS with a real client: a user can use its own subtree, is refused
// elsewhere, and wrong passwords get 0x86. The dev user's generated password
// is replaced by a cheap hash first (bcrypt at the default cost takes
// seconds under the race detector); TestEnsureDevPasswd covers the real one.
func TestServeDevDefault(t *testing.T) {
	dir := t.TempDir()
	_, err := ensureDevPasswd(filepath.Join(dir, "passwd"))
	require.NoError(t, err)
	const password = "correct horse battery"
	h, err := auth.HashPassword([]byte(password), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	pf := auth.NewPasswordFile()
	require.NoError(t, pf.Set("dev", h))
	require.NoError(t, pf.WriteFile(filepath.Join(dir, "passwd")))

	o := &serveOptions{dir: dir, listen: "127.0.0.1:0", connectTimeout: 5 * time.Second, maxPayload: 1024, logLevel: "error"}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- runServe(ctx, o, out, func(a, _ string) { addrc <- a }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("serve: %v\n%s", err, out.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})

	require.NotContains(t, out.String(), "created user", "an existing password file is used as it is")
	for _, f := range []string{"passwd", "acl.csv", "tls/ca.pem"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
	}
	st, err := os.Stat(filepath.Join(dir, "passwd"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	data, err := os.ReadFile(filepath.Join(dir, "passwd"))
	require.NoError(t, err)
	require.NotContains(t, string(data), password, "only a hash on disk")

	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	tc := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}

	_, ack, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "bad", Username: "dev", Password: []byte("wrong"), TLS: tc})
	require.Error(t, err)
	require.NotNil(t, ack, "no CONNACK: %v", err)
	require.Equal(t, byte(0x86), ack.ReasonCode)

	sub, ack, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "sub", Username: "dev", Password: []byte(password), TLS: tc,
		SessionExpiry: 1 << 30})
	require.NoError(t, err)
	require.NotNil(t, ack.Properties.SessionExpiryInterval, "a session expiry above the bound is capped in the CONNACK")
	require.Equal(t, uint32(defaultMaxSession/time.Second), *ack.Properties.SessionExpiryInterval)
	require.Equal(t, byte(1), sub.Sub(t, "devices/dev/#", 1), "granted QoS 1")
	require.Equal(t, byte(0x87), sub.Sub(t, "devices/#", 1), "a/# is not covered by a/dev/#")

	pub, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "pub", Username: "dev", Password: []byte(password), TLS: tc})
	require.NoError(t, err)
	_, err = pub.Pub(t, "devices/dev/temp", []byte("21"), 1)
	require.NoError(t, err)
	msg := sub.ExpectMessage(t, "devices/dev/temp", 5*time.Second)
	require.Equal(t, "21", string(msg.Payload))

	code, _ := pub.Pub(t, "devices/other/temp", []byte("x"), 1)
	require.Equal(t, byte(0x87), code)

	// A first packet that claims 100 MB is refused before it is read:
	// the connection closes instead of the broker allocating the claim.
	raw, err := tls.Dial("tcp", addr, tc)
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write([]byte{0x10, 0x80, 0x80, 0x80, 0x30}) // CONNECT, remaining length 100,663,296
	require.NoError(t, err)
	require.NoError(t, raw.SetReadDeadline(time.Now().Add(3*time.Second))) // shorter than the 5 s idle timeout
	_, err = raw.Read(make([]byte, 16))
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "closed at once, not after the idle timeout: %v", err)
}

// TestServeLimitFlags: the memory-bound flags default to the library's
// defaults and fill mochi.Limits, mqttsec.Quotas and the write timeout.
func TestServeLimitFlags(t *testing.T) {
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	o := &serveOptions{}
	limitFlags(cmd, o)
	require.NoError(t, cmd.ParseFlags(nil))
	require.Equal(t, int64(mochi.DefaultMaxBacklog), o.limits.MaxBacklog)
	require.Equal(t, mqttsec.DefaultRetainedPerSubject, o.quotas.RetainedPerSubject)
	require.Equal(t, mochi.DefaultWriteTimeout, o.writeTimeout)
	require.NoError(t, cmd.ParseFlags([]string{"--max-client-backlog=1024", "--max-outbound=-1", "--max-subscriptions=3",
		"--max-sessions-per-user=2", "--max-retained-bytes=-1", "--write-timeout=3s", "--write-stall=1s"}))
	require.Equal(t, int64(1024), o.limits.MaxBacklog)
	require.Equal(t, int64(-1), o.limits.Outbound)
	require.Equal(t, 3, o.limits.Subscriptions)
	require.Equal(t, 2, o.quotas.SessionsPerSubject)
	require.Equal(t, int64(-1), o.quotas.RetainedBytes)
	require.Equal(t, 3*time.Second, o.writeTimeout)
	require.Equal(t, time.Second, o.limits.WriteStall)
}

// TestServeLimits: serve enforces the bounds it is given: a subscription
// beyond --max-subscriptions and a retained message beyond
// --max-retained-per-user are refused with 0x97.
func TestServeLimits(t *testing.T) {
	dir := t.TempDir()
	const password = "correct horse battery"
	h, err := auth.HashPassword([]byte(password), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	pf := auth.NewPasswordFile()
	require.NoError(t, pf.Set("dev", h))
	require.NoError(t, pf.WriteFile(filepath.Join(dir, "passwd")))
	o := &serveOptions{dir: dir, listen: "127.0.0.1:0", insecurePlain: "127.0.0.1:0", connectTimeout: 5 * time.Second,
		logLevel: "error", limits: mochi.Limits{Subscriptions: 1}, quotas: mqttsec.Quotas{RetainedPerSubject: 1}}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- runServe(ctx, o, out, func(_, plain string) { addrc <- plain }) }()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("serve: %v\n%s", err, out.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start")
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})
	c, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "c", Username: "dev", Password: []byte(password)})
	require.NoError(t, err)
	require.Equal(t, byte(1), c.Sub(t, "devices/dev/a", 1))
	require.Equal(t, byte(mqttsec.CodeQuotaExceeded), c.Sub(t, "devices/dev/b", 1))
	code, err := c.Pub(t, "devices/dev/r1", []byte("x"), 1)
	require.NoError(t, err)
	require.Zero(t, code)
	pr, _ := c.Publish(context.Background(), &paho.Publish{Topic: "devices/dev/r1", Payload: []byte("x"), QoS: 1, Retain: true})
	require.NotNil(t, pr)
	require.Zero(t, pr.ReasonCode)
	pr, _ = c.Publish(context.Background(), &paho.Publish{Topic: "devices/dev/r2", Payload: []byte("x"), QoS: 1, Retain: true})
	require.NotNil(t, pr)
	require.Equal(t, byte(mqttsec.CodeQuotaExceeded), pr.ReasonCode)
}
