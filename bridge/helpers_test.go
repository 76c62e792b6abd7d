package bridge_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// wait bounds every wait for something that must happen; the machine is
// loaded and the race detector slows everything down.
const wait = 20 * time.Second

// guard returns a Guard that accepts the given users and allows every
// topic except those under "secret/".
func guard(users map[string]string) *mqttsec.Guard { return guardDenying(users, "secret/") }

// guardDenying returns a Guard that accepts the given users and allows every
// topic except those under deny (nothing when deny is empty).
func guardDenying(users map[string]string, deny string) *mqttsec.Guard {
	return mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if p, ok := users[cl.Username]; ok && p == string(cred.Password) {
				return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
			}
			return nil, fmt.Errorf("%w: unknown user", mqttsec.ErrBadCredentials)
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(_ context.Context, _ *mqttsec.Client, _ mqttsec.Access, t string) error {
			if deny != "" && strings.HasPrefix(t, deny) {
				return mqttsec.ErrNotAuthorized
			}
			return nil
		}),
		Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
}

var users = map[string]string{"bridge": "bridge-pw", "alice": "alice-pw"}

// devCA creates a development CA in a temporary folder.
func devCA(t testing.TB) *tlsconf.DevCA {
	t.Helper()
	ca, err := tlsconf.CreateDevCA(filepath.Join(t.TempDir(), "ca"))
	require.NoError(t, err)
	return ca
}

// startTLSBroker starts an in-process mochi broker with a TLS listener
// whose certificate the dev CA signed.
func startTLSBroker(t testing.TB, ca *tlsconf.DevCA) *testbroker.Broker {
	t.Helper()
	sc, err := ca.ServerConfig().Server()
	require.NoError(t, err)
	return testbroker.Start(t, guard(users), testbroker.Options{TLS: sc})
}

func clientTLS(t testing.TB, ca *tlsconf.DevCA) *tls.Config {
	t.Helper()
	cc, err := ca.ClientConfig("").Client()
	require.NoError(t, err)
	cc = cc.Clone()
	cc.ServerName = "localhost"
	return cc
}

// passwordFile writes a password file readable by its owner only.
func passwordFile(t testing.TB, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bridge.pass")
	require.NoError(t, os.WriteFile(p, []byte(pw+"\n"), 0o600))
	return p
}

// dial connects a test client as alice.
func dial(t testing.TB, addr, id string, tc *tls.Config) *testbroker.Conn {
	t.Helper()
	c, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: id, Username: "alice", Password: []byte("alice-pw"), TLS: tc})
	require.NoError(t, err)
	return c
}

// events records events.
type events struct {
	mu  sync.Mutex
	all []mqttsec.Event
}

func (e *events) Event(ev mqttsec.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
}

func (e *events) find(match func(mqttsec.Event) bool) (mqttsec.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if match(ev) {
			return ev, true
		}
	}
	return mqttsec.Event{}, false
}

// waitReady waits until both sides are connected and subscribed.
func waitReady(t testing.TB, b *bridge.Bridge) {
	t.Helper()
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.Local.Subscribed && s.Remote.Subscribed
	}, wait, 10*time.Millisecond, "bridge not connected and subscribed")
}

// proxy is a TCP relay that can be cut, to fail the network between a
// bridge and a broker: down closes every relayed connection and refuses
// new ones until up.
type proxy struct {
	ln     net.Listener
	target string
	delay  time.Duration // one-way latency added to every byte
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy { return startDelayProxy(t, target, 0) }

// startDelayProxy starts a relay that delays every byte by delay in each
// direction, like a long network path.
func startDelayProxy(t testing.TB, target string, delay time.Duration) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setDown(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[u] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			defer src.Close()
			defer dst.Close()
			if p.delay == 0 {
				_, _ = io.Copy(dst, src)
				return
			}
			type chunk struct {
				at time.Time
				b  []byte
			}
			ch := make(chan chunk, 4096)
			go func() {
				defer close(ch)
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						ch <- chunk{time.Now().Add(p.delay), append([]byte(nil), buf[:n]...)}
					}
					if err != nil {
						return
					}
				}
			}()
			for c := range ch {
				time.Sleep(time.Until(c.at))
				if _, err := dst.Write(c.b); err != nil {
					_ = src.Close()
					for range ch {
					}
					return
				}
			}
		}
		go pipe(u, c)
		go pipe(c, u)
	}
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}
