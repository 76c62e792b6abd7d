package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/redisstore"
)

// redisAddr is the Redis the tests share: MQTTSEC_REDIS or the one our
// machines run on 127.0.0.1:6379.
func redisAddr() string {
	if a := os.Getenv("MQTTSEC_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// needRedis returns a client of the shared Redis, or skips the test (fails
// it under CI=true) when none answers.
func needRedis(t testing.TB) *redis.Client {
	t.Helper()
	addr := redisAddr()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		msg := fmt.Sprintf("redis does not answer on %s (%v); on Debian: apt-get install redis-server, or set MQTTSEC_REDIS", addr, err)
		if testenv.CI() {
			t.Fatal(msg + "; CI=true requires it")
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// prefix returns a key prefix of the test's own, and deletes its keys when
// the test ends.
func prefix(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	p := "mqttsec-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, _ := rdb.Keys(ctx, p+"*").Result()
		if len(keys) > 0 {
			_ = rdb.Del(ctx, keys...).Err()
		}
	})
	return p
}

// keys returns the keys under p.
func keys(t testing.TB, rdb redis.UniversalClient, p string) []string {
	t.Helper()
	ks, err := rdb.Keys(context.Background(), p+"*").Result()
	require.NoError(t, err)
	return ks
}

// requireTTLs checks that every key under p expires.
func requireTTLs(t testing.TB, rdb redis.UniversalClient, p string) {
	t.Helper()
	for _, k := range keys(t, rdb, p) {
		d, err := rdb.PTTL(context.Background(), k).Result()
		require.NoError(t, err)
		require.Greater(t, d, time.Duration(0), "key %q has no TTL", k)
	}
}

// events records the events of a node or a Guard.
type events struct {
	mu  sync.Mutex
	all []mqttsec.Event
}

func (e *events) Event(ev mqttsec.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

// count returns the number of events of kind from source ("" for any).
func (e *events) count(kind mqttsec.EventKind, source string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind && (source == "" || ev.Source == source) {
			n++
		}
	}
	return n
}

func (e *events) dump() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.all {
		fmt.Fprintf(&b, "%s source=%q client=%q code=%s err=%v\n", ev.Kind, ev.Source, ev.ClientID, ev.Code, ev.Err)
	}
	return b.String()
}

// newNode returns a node on rdb with prefix p, ready, closed at cleanup.
func newNode(t testing.TB, rdb redis.UniversalClient, p string, ev mqttsec.EventSink) *redisstore.Node {
	t.Helper()
	if ev == nil {
		ev = &events{}
	}
	n, err := redisstore.New(rdb, redisstore.Config{Prefix: p, Events: ev, Timeout: time.Second,
		PingInterval: 500 * time.Millisecond, ReportInterval: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, n.Ready(ctx))
	return n
}

// redisServer is a redis-server a test starts on a free port, to stop and
// restart it.
type redisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts a redis-server without persistence on a free port.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	s := &redisServer{t: t, bin: testenv.Need(t, "redis-server"), port: testenv.FreePort(t), dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func (s *redisServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Start starts the server (again) and waits until it answers.
func (s *redisServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(s.t, err)
	cmd := exec.Command(s.bin, "--port", fmt.Sprint(s.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", s.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(s.t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	s.cmd, s.done = cmd, done
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("redis-server exited at start")
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not answer on %s: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops the server (losing its data) and waits until it exited.
func (s *redisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Pause freezes the server (a slow or hung Redis); Resume thaws it.
func (s *redisServer) Pause()  { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }
func (s *redisServer) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// client returns a client of the test's server with short timeouts, closed
// at cleanup.
func (s *redisServer) client(t testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 300 * time.Millisecond,
		ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond, MaxRetries: -1,
		PoolTimeout: 500 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// noLeak fails the test when goroutines of this package are still
// running after the test's cleanup closed its nodes.
func noLeak(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		var stacks string
		for range 100 {
			buf := make([]byte, 1<<20)
			stacks = string(buf[:runtime.Stack(buf, true)])
			if !strings.Contains(stacks, "redisstore.(*") {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("goroutines of redisstore still run:\n%s", stacks)
	})
}

// --- Guards -----------------------------------------------------------------

// passwords authenticates every user name with the password "pw".
var passwords = mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	if cl.Username == "" || string(cred.Password) != "pw" {
		return nil, mqttsec.ErrBadCredentials
	}
	return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
})

var allowAll = mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })

// disconnects records what a Guard asked its adapter to disconnect.
type disconnects struct {
	mu  sync.Mutex
	got map[*mqttsec.Session]mqttsec.ReasonCode
}

func (d *disconnects) Disconnect(s *mqttsec.Session, code mqttsec.ReasonCode) {
	d.mu.Lock()
	if d.got == nil {
		d.got = map[*mqttsec.Session]mqttsec.ReasonCode{}
	}
	d.got[s] = code
	d.mu.Unlock()
}

func (d *disconnects) code(s *mqttsec.Session) (mqttsec.ReasonCode, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.got[s]
	return c, ok
}

// member is one node of a test cluster without a broker: a Guard with the
// cluster's registry, whose disconnects are recorded.
type member struct {
	*mqttsec.Guard
	node *redisstore.Node
	reg  *redisstore.Registry
	disc *disconnects
	ev   *events
}

func newMember(t testing.TB, rdb redis.UniversalClient, p string, cfg redisstore.RegistryConfig) *member {
	t.Helper()
	ev := &events{}
	n := newNode(t, rdb, p, ev)
	reg := n.Registry(cfg)
	g := mqttsec.New(mqttsec.Config{Authenticator: passwords, Authorizer: allowAll, Registry: reg, Events: ev})
	d := &disconnects{}
	g.SetDisconnector(d)
	n.Attach(g)
	return &member{Guard: g, node: n, reg: reg, disc: d, ev: ev}
}

// connect connects a client ID as user through the member's Guard.
func (m *member) connect(id, user string) (*mqttsec.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.Connect(ctx, mqttsec.Client{ID: id, Username: user, RemoteAddr: "192.0.2.1:1234", Protocol: 5},
		mqttsec.Credentials{Password: []byte("pw")}, nil)
}

// waitKicked waits until the member's adapter was asked to disconnect s
// with code.
func (m *member) waitKicked(t testing.TB, s *mqttsec.Session, code mqttsec.ReasonCode) {
	t.Helper()
	require.Eventually(t, func() bool {
		c, ok := m.disc.code(s)
		return ok && c == code
	}, 10*time.Second, 5*time.Millisecond, "session %q not disconnected with %s; events:\n%s", s.Client().ID, code, m.ev.dump())
}

func (m *member) notKicked(t testing.TB, s *mqttsec.Session) {
	t.Helper()
	c, ok := m.disc.code(s)
	require.False(t, ok, "session %q disconnected with %s", s.Client().ID, c)
	require.NoError(t, s.Err())
}

// quietLogger drops go-redis's own log lines (dial failures while a test's
// Redis is stopped); the node reports faults through its event sink.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	os.Exit(m.Run())
}
