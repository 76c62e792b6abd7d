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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/config"
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

// serving is an in-process "mqttsec serve".
type serving struct {
	srv            *config.Server
	stdout, stderr *syncBuffer
	hup            chan os.Signal
	stop           func() // cancels and waits; idempotent
}

// startServeOpts runs "mqttsec serve" in-process until the test ends.
func startServeOpts(t *testing.T, o *serveOptions) (*config.Server, *serving) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{stdout: &syncBuffer{}, stderr: &syncBuffer{}, hup: make(chan os.Signal, 1)}
	srvc := make(chan *config.Server, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- runServe(ctx, o, s.stdout, s.stderr, s.hup, func(srv *config.Server) { srvc <- srv })
	}()
	select {
	case s.srv = <-srvc:
	case err := <-errc:
		cancel()
		t.Fatalf("serve: %v\n%s%s", err, s.stdout.String(), s.stderr.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(s.stop)
	return s.srv, s
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

// TestEnsureDevFilesDoNotFollowLinks plants dangling symbolic links where
// serve creates its first-start password file and policy: neither is
// written through the link (the files would land wherever the link
// points), and an existing policy is kept as it is.
func TestEnsureDevFilesDoNotFollowLinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	for _, name := range []string{"acl.csv", "passwd"} {
		require.NoError(t, os.Symlink(target+"-"+name, filepath.Join(dir, name)))
	}
	require.NoError(t, ensureDevPolicy(filepath.Join(dir, "acl.csv")))
	pass, err := ensureDevPasswd(filepath.Join(dir, "passwd"))
	require.NoError(t, err)
	require.Empty(t, pass)
	for _, name := range []string{"acl.csv", "passwd"} {
		_, err := os.Stat(target + "-" + name)
		require.ErrorIs(t, err, os.ErrNotExist, "%s was written through a dangling link", name)
	}

	own := filepath.Join(dir, "own.csv")
	require.NoError(t, os.WriteFile(own, []byte("p, alice, a/#, read, allow\n"), 0o600))
	require.NoError(t, ensureDevPolicy(own))
	data, err := os.ReadFile(own)
	require.NoError(t, err)
	require.Equal(t, "p, alice, a/#, read, allow\n", string(data))

	fresh := filepath.Join(dir, "fresh.csv")
	require.NoError(t, ensureDevPolicy(fresh))
	st, err := os.Stat(fresh)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

// devDir returns a state folder whose dev user has a cheap bcrypt hash of
// password (bcrypt at the default cost takes seconds under the race
// detector; TestEnsureDevPasswd covers the real one).
func devDir(t *testing.T, password string) string {
	dir := t.TempDir()
	h, err := auth.HashPassword([]byte(password), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	pf := auth.NewPasswordFile()
	require.NoError(t, pf.Set("dev", h))
	require.NoError(t, pf.WriteFile(filepath.Join(dir, "passwd")))
	return dir
}

// TestServeDevDefault starts the embedded development default and talks to
// it over TLS with a real client: a user can use its own subtree, is refused
// elsewhere and on "#", wrong passwords get 0x86, sessions are bounded, and
// a first packet that claims 100 MB is refused before it is read.
func TestServeDevDefault(t *testing.T) {
	const password = "correct horse battery"
	dir := devDir(t, password)
	o := &serveOptions{dir: dir, listen: "127.0.0.1:0", connectTimeout: 5 * time.Second, maxPayload: 1024, logLevel: "error",
		maxSession: config.DefaultMaxSessionExpiry, maxClients: 100}
	srv, s := startServeOpts(t, o)
	addr := srv.Addr(0)

	require.NotContains(t, s.stdout.String(), "created user", "an existing password file is used as it is")
	require.Contains(t, s.stdout.String(), "--cafile "+filepath.Join(dir, "tls", "ca.pem"))
	for _, f := range []string{"passwd", "acl.csv", "tls/ca.pem"} {
		_, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
	}
	data, err := os.ReadFile(filepath.Join(dir, "passwd"))
	require.NoError(t, err)
	require.NotContains(t, string(data), password, "only a hash on disk")

	tc := devCAClient(t, dir)
	_, ack, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "bad", Username: "dev", Password: []byte("wrong"), TLS: tc})
	require.Error(t, err)
	require.NotNil(t, ack, "no CONNACK: %v", err)
	require.Equal(t, byte(0x86), ack.ReasonCode)

	sub, ack, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "sub", Username: "dev", Password: []byte(password), TLS: tc,
		SessionExpiry: 1 << 30})
	require.NoError(t, err)
	require.NotNil(t, ack.Properties.SessionExpiryInterval, "a session expiry above the bound is capped in the CONNACK")
	require.Equal(t, uint32(config.DefaultMaxSessionExpiry/time.Second), *ack.Properties.SessionExpiryInterval)
	require.Equal(t, byte(1), sub.Sub(t, "devices/dev/#", 1), "granted QoS 1")
	require.Equal(t, byte(0x87), sub.Sub(t, "devices/#", 1), "a/# is not covered by a/dev/#")
	require.Equal(t, byte(0x87), sub.Sub(t, "#", 0), "root wildcards are refused by default")

	pub, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: "pub", Username: "dev", Password: []byte(password), TLS: tc})
	require.NoError(t, err)
	_, err = pub.Pub(t, "devices/dev/temp", []byte("21"), 1)
	require.NoError(t, err)
	msg := sub.ExpectMessage(t, "devices/dev/temp", 5*time.Second)
	require.Equal(t, "21", string(msg.Payload))

	code, _ := pub.Pub(t, "devices/other/temp", []byte("x"), 1)
	require.Equal(t, byte(0x87), code)
	_, _ = pub.Pub(t, "devices/dev/big", bytes.Repeat([]byte("x"), 1025), 1)
	select {
	case d := <-pub.ServerDisconnect():
		require.Equal(t, byte(0x95), d.ReasonCode, "a payload over --max-payload ends the connection: packet too large")
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT for a payload over --max-payload")
	}

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

	// Shutting down tells MQTT 5 clients why.
	s.stop()
	select {
	case d := <-sub.ServerDisconnect():
		require.Equal(t, byte(0x8B), d.ReasonCode, "server shutting down")
	case <-time.After(10 * time.Second):
		t.Fatal("no DISCONNECT at shutdown")
	}
}

func devCAClient(t *testing.T, dir string) *tls.Config {
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// TestServePrintConfig checks that --print-config prints, without creating
// anything, a file that runs the same broker: serve --config with it
// accepts the dev user over TLS with the same policy.
func TestServePrintConfig(t *testing.T) {
	const password = "correct horse battery"
	dir := devDir(t, password)
	state := filepath.Join(dir, "state")
	o := &serveOptions{dir: state, listen: "127.0.0.1:0", passwd: filepath.Join(dir, "passwd"), connectTimeout: 5 * time.Second,
		maxPayload: 4096, maxSession: time.Hour, maxClients: 50, logLevel: "warn", printConfig: true}
	var out bytes.Buffer
	require.NoError(t, runServe(context.Background(), o, &out, &out, nil, nil))
	_, err := os.Stat(state)
	require.ErrorIs(t, err, os.ErrNotExist, "--print-config creates nothing")
	require.Contains(t, out.String(), "# mqttsec serve configuration")
	f, err := config.Parse(out.Bytes(), "printed.yaml")
	require.NoError(t, err, out.String())
	require.Equal(t, 4096, f.MaxPayload())
	require.Equal(t, time.Hour, f.Broker.MaxSessionExpiry)
	require.Equal(t, filepath.Join(state, "tls", "server.pem"), f.Listeners[0].TLS.CertFile)

	// The same flags without --print-config create the files; the printed
	// file then runs.
	o.printConfig = false
	startServeOpts(t, o)
	cfgPath := filepath.Join(dir, "mqttsec.yaml")
	require.NoError(t, os.WriteFile(cfgPath, out.Bytes(), 0o600))
	srv, s := startServeOpts(t, &serveOptions{config: cfgPath})
	tc := devCAClient(t, state)
	c, _, err := testbroker.Dial(t, srv.Addr(0), testbroker.ClientOptions{ClientID: "c", Username: "dev", Password: []byte(password), TLS: tc})
	require.NoError(t, err)
	require.Equal(t, byte(0x87), c.Sub(t, "devices/other/#", 0))
	require.Equal(t, byte(0), c.Sub(t, "devices/dev/#", 0))
	require.Empty(t, s.stdout.String(), "no development banner with a file")

	// --check checks the file and the files it names, and starts nothing.
	var checked bytes.Buffer
	require.NoError(t, runServe(context.Background(), &serveOptions{config: cfgPath, check: true}, &checked, &checked, nil, nil))
	require.Equal(t, cfgPath+": ok\n", checked.String())
	require.NoError(t, os.Chmod(filepath.Join(dir, "passwd"), 0o644))
	err = runServe(context.Background(), &serveOptions{config: cfgPath, check: true}, &checked, &checked, nil, nil)
	require.ErrorIs(t, err, config.ErrPermissions)
	require.NoError(t, os.Chmod(filepath.Join(dir, "passwd"), 0o600))

	// Flags of the development default do not mix with a file.
	err = runServe(context.Background(), &serveOptions{config: cfgPath, changed: []string{"--listen"}}, &out, &out, nil, nil)
	require.ErrorContains(t, err, "--listen cannot be combined with --config")
}

// TestServeConfigRefusals runs serve with files it must refuse, and checks
// that the message names the file, the line and the key.
func TestServeConfigRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	write("acl", "user alice\ntopic a/#\n", 0o644)
	write("passwd.open", "alice:$7$101$abcdefghijklmnop$"+strings.Repeat("A", 86)+"==\n", 0o644)
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", "listeners:\n  - address: 127.0.0.1:0\n    tls_file: x\n", "bad.yaml:3: listeners[0].tls_file: unknown key"},
		{"plaintext on the network", "listeners:\n  - address: 0.0.0.0:0\nauth: {password_file: passwd.open}\nacl: {acl_file: acl}\n",
			"bad.yaml:2: listeners[0].address: plaintext listener on the non-loopback address"},
		{"missing file", "listeners: [{address: \"127.0.0.1:0\"}]\nauth: {password_file: nope}\nacl: {acl_file: acl}\n",
			"bad.yaml:2: auth.password_file: no such file: " + filepath.Join(dir, "nope")},
		{"world-readable password file", "listeners: [{address: \"127.0.0.1:0\"}]\nauth: {password_file: passwd.open}\nacl: {acl_file: acl}\n",
			"bad.yaml:2: auth.password_file: " + filepath.Join(dir, "passwd.open") + " is readable by every user (mode 0644); fix it (chmod 0640) or set insecure_file_permissions: true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write("bad.yaml", tc.yaml, 0o600)
			err := runServe(context.Background(), &serveOptions{config: p}, &bytes.Buffer{}, &bytes.Buffer{}, nil, nil)
			require.Error(t, err)
			require.Contains(t, err.Error(), strings.Replace(tc.want, "bad.yaml", p, 1))
		})
	}
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
		logLevel: "error", maxPayload: 1024, limits: mochi.Limits{Subscriptions: 1}, quotas: mqttsec.Quotas{RetainedPerSubject: 1}}
	srv, _ := startServeOpts(t, o)
	addr := srv.Addr(1)
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
