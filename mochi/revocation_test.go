package mochi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/mochi"
)

// gate is a policy switch a test flips while clients are connected.
type gate struct{ closed atomic.Bool }

// withGate makes the fixture's policy deny, once g is closed, whatever
// deny(a, topic) selects.
func withGate(g *gate, deny func(a mqttsec.Access, topic string) bool) func(*mqttsec.Config) {
	return func(c *mqttsec.Config) {
		c.Authorizer = mqttsec.AuthorizerFunc(func(ctx context.Context, cl *mqttsec.Client, a mqttsec.Access, topic string) error {
			if g.closed.Load() && deny(a, topic) {
				return mqttsec.ErrNotAuthorized
			}
			return policy(ctx, cl, a, topic)
		})
	}
}

func waitEvent(t *testing.T, f *fixture, kind mqttsec.EventKind, clientID string) {
	t.Helper()
	require.Eventually(t, func() bool { return f.events.count(kind, clientID) > 0 },
		testbroker.Timeout, 10*time.Millisecond, "no %v event for %q", kind, clientID)
}

// TestWillCheckedWhenSent: a will allowed at CONNECT but no longer allowed
// when the connection drops is neither delivered nor retained.
func TestWillCheckedWhenSent(t *testing.T) {
	g := &gate{}
	f := start(t, testbroker.Options{}, withGate(g, func(a mqttsec.Access, topic string) bool {
		return a == mqttsec.Publish && strings.HasPrefix(topic, "ok/will")
	}))
	sub := f.dial(t, "sub", "bob")
	require.Equal(t, byte(1), sub.Sub(t, "ok/will/#", 1))
	w, _, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "w", Username: "alice", Password: []byte("pw"),
		Will: &paho.WillMessage{Topic: "ok/will/a", Payload: []byte("bye"), QoS: 1, Retain: true}})
	require.NoError(t, err)
	g.closed.Store(true) // alice's right to publish the will is withdrawn
	w.Drop()
	waitEvent(t, f, mqttsec.EventWillDenied, "w")
	sub.NoMessage(t, 300*time.Millisecond)
	late := f.dial(t, "late", "bob")
	require.Equal(t, byte(1), late.Sub(t, "ok/will/#", 1))
	late.NoMessage(t, 300*time.Millisecond) // not retained either

	// A subscription to the topic the suppressed wills go to is refused.
	require.Equal(t, byte(0x87), sub.Sub(t, mochi.ReservedPrefix+"#", 0))
	require.Equal(t, byte(0x87), sub.Sub(t, "$share/g/"+mochi.ReservedPrefix+"void", 0))
}

// TestDelayedWill: a delayed will belongs to the session's owner: another
// identity can neither cancel it nor take the client ID while it is
// pending; it is checked again when it is due; the owner's return cancels
// it.
func TestDelayedWill(t *testing.T) {
	g := &gate{}
	f := start(t, testbroker.Options{}, withGate(g, func(a mqttsec.Access, topic string) bool {
		return a == mqttsec.Publish && topic == "ok/will/revoked"
	}))
	sub := f.dial(t, "sub", "bob")
	require.Equal(t, byte(1), sub.Sub(t, "ok/will/#", 1))
	dial := func(id, user, topic string, resume bool) (*testbroker.Conn, *paho.Connack, error) {
		return testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: id, Username: user, Password: []byte("pw"),
			SessionExpiry: 60, WillDelay: 1, Resume: resume,
			Will: &paho.WillMessage{Topic: topic, Payload: []byte(id), QoS: 1}})
	}

	w, _, err := dial("dw1", "alice", "ok/will/a", false)
	require.NoError(t, err)
	w.Drop()
	for _, resume := range []bool{false, true} {
		_, ca, err := dial("dw1", "mallory", "ok/will/m", resume)
		require.Error(t, err, "another identity may not take the ID of a pending will")
		require.Equal(t, byte(0x85), ca.ReasonCode)
	}
	m := sub.ExpectMessage(t, "ok/will/a", testbroker.Timeout)
	require.Equal(t, "dw1", string(m.Payload))

	// The owner comes back within the delay: no will.
	w, _, err = dial("dw2", "alice", "ok/will/b", false)
	require.NoError(t, err)
	w.Drop()
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "dw2") == 1 },
		testbroker.Timeout, 5*time.Millisecond)
	_, ca, err := dial("dw2", "alice", "ok/will/b", true)
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)

	// The right to publish it is withdrawn during the delay: no will.
	w, _, err = dial("dw3", "alice", "ok/will/revoked", false)
	require.NoError(t, err)
	w.Drop()
	g.closed.Store(true)
	waitEvent(t, f, mqttsec.EventWillDenied, "dw3")
	sub.NoMessage(t, 500*time.Millisecond)
}

// TestResumeReauthorizes: a kept session resumed after its rights were cut
// while it was offline gets neither its queued messages nor its
// subscriptions beyond what the current policy allows.
func TestResumeReauthorizes(t *testing.T) {
	g := &gate{}
	f := start(t, testbroker.Options{}, withGate(g, func(a mqttsec.Access, topic string) bool {
		switch a {
		case mqttsec.Subscribe:
			return topic == "ok/#"
		case mqttsec.Receive:
			return topic == "ok/q"
		}
		return false
	}))
	opts := testbroker.ClientOptions{ClientID: "r1", Username: "alice", Password: []byte("pw"), SessionExpiry: 300}
	c, _, err := testbroker.Dial(t, f.b.Addr, opts)
	require.NoError(t, err)
	require.Equal(t, byte(1), c.Sub(t, "ok/#", 1))
	require.Equal(t, byte(1), c.Sub(t, "ok/x/+", 1))
	require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "r1") == 1 },
		testbroker.Timeout, 5*time.Millisecond)

	pub := f.dial(t, "pub", "bob")
	for _, topic := range []string{"ok/q", "ok/x/1"} {
		_, err = pub.Pub(t, topic, []byte(topic), 1)
		require.NoError(t, err)
	}
	g.closed.Store(true) // alice may no longer receive ok/q nor subscribe to ok/#

	opts.Resume = true
	c, ca, err := testbroker.Dial(t, f.b.Addr, opts)
	require.NoError(t, err)
	require.True(t, ca.SessionPresent)
	m := c.ExpectMessage(t, "ok/x/1", testbroker.Timeout)
	require.Equal(t, "ok/x/1", string(m.Payload))
	c.NoMessage(t, 300*time.Millisecond) // ok/q was queued before the cut: dropped
	waitEvent(t, f, mqttsec.EventSubscribeDenied, "r1")

	// ok/# was removed at resume; ok/x/+ is still there.
	_, err = pub.Pub(t, "ok/y", []byte("y"), 1)
	require.NoError(t, err)
	_, err = pub.Pub(t, "ok/x/2", []byte("x2"), 1)
	require.NoError(t, err)
	expectOnly(t, c, "ok/x/2")
}

// TestKick: an administrator's kick closes a live connection with 0x98 and
// discards a kept session with its queued messages.
func TestKick(t *testing.T) {
	f := start(t, testbroker.Options{})
	c := f.dial(t, "k1", "alice")
	require.Equal(t, 1, f.g.Kick(mqttsec.MatchClientID("k1"), mqttsec.CodeBanned))
	select {
	case d := <-c.ServerDisconnect():
		require.Equal(t, byte(0x98), d.ReasonCode, "0x8A is not a DISCONNECT code: a ban is an administrative action")
	case <-time.After(testbroker.Timeout):
		t.Fatal("no DISCONNECT")
	}
	waitEvent(t, f, mqttsec.EventRevoked, "k1")

	opts := testbroker.ClientOptions{ClientID: "k2", Username: "alice", Password: []byte("pw"), SessionExpiry: 300}
	k, _, err := testbroker.Dial(t, f.b.Addr, opts)
	require.NoError(t, err)
	require.Equal(t, byte(1), k.Sub(t, "ok/#", 1))
	require.NoError(t, k.Disconnect(&paho.Disconnect{}))
	require.Eventually(t, func() bool { return f.events.count(mqttsec.EventDisconnected, "k2") == 1 },
		testbroker.Timeout, 5*time.Millisecond)
	pub := f.dial(t, "pub", "bob")
	_, err = pub.Pub(t, "ok/k", []byte("queued"), 1)
	require.NoError(t, err)
	require.Equal(t, 1, f.g.Kick(mqttsec.MatchSubject("alice"), mqttsec.CodeAdministrativeAction))
	opts.Resume = true
	require.Eventually(t, func() bool {
		k, ca, err := testbroker.Dial(t, f.b.Addr, opts)
		if err != nil {
			return false
		}
		defer k.Disconnect(&paho.Disconnect{})
		return !ca.SessionPresent
	}, testbroker.Timeout, 20*time.Millisecond, "the kicked kept session is discarded")
}

// revalidating adds a Revalidator to an authenticator: subjects in revoked
// no longer verify.
type revalidating struct {
	mqttsec.Authenticator
	revoked sync.Map
}

func (r *revalidating) Revalidate(_ context.Context, cl *mqttsec.Client) error {
	if _, ok := r.revoked.Load(cl.Identity.Subject); ok {
		return fmt.Errorf("%w: user removed", mqttsec.ErrBadCredentials)
	}
	return nil
}

// TestRevalidateDisconnects: after a credential reload reaches the Guard,
// a client whose credentials no longer verify is disconnected with 0x87;
// the others stay.
func TestRevalidateDisconnects(t *testing.T) {
	var rv *revalidating
	f := start(t, testbroker.Options{}, func(c *mqttsec.Config) {
		rv = &revalidating{Authenticator: c.Authenticator}
		c.Authenticator = rv
	})
	alice := f.dial(t, "a", "alice")
	bob := f.dial(t, "b", "bob")
	rv.revoked.Store("alice", true)
	start := time.Now()
	f.g.Event(mqttsec.Event{Kind: mqttsec.EventReload, Source: "passwords", File: "passwd"})
	select {
	case d := <-alice.ServerDisconnect():
		require.Equal(t, byte(0x87), d.ReasonCode)
		require.Less(t, time.Since(start), time.Second)
	case <-time.After(testbroker.Timeout):
		t.Fatal("alice was not disconnected")
	}
	require.Equal(t, byte(1), bob.Sub(t, "ok/#", 1), "bob stays connected")
	_, ca, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "a", Username: "alice", Password: []byte("pw")})
	require.NoError(t, err, "the fixture still authenticates alice; only live sessions are revalidated: %v", ca)
}

// logRecorder keeps the records a slog logger writes.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.records {
		fmt.Fprintf(&b, "%s msg=%q", r.Level, r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		b.WriteByte('\n')
	}
	return b.String()
}

// payloadBytes is "PAYLOAD-SECRET" as mochi's logs render a []byte.
var payloadBytes = strings.Trim(fmt.Sprint([]byte("PAYLOAD-SECRET")), "[]")

// TestLogsNoRepeatsNoPayloads: a refused CONNECT is reported once (by the
// Guard's event sink), not again by mochi's listener when it is hardened;
// with mochi.Logger a rejected PUBLISH is not repeated either, and no
// payload reaches mochi's logs.
func TestLogsNoRepeatsNoPayloads(t *testing.T) {
	for _, filtered := range []bool{false, true} {
		t.Run(fmt.Sprint("filtered=", filtered), func(t *testing.T) {
			rec := &logRecorder{}
			l := slog.New(rec)
			if filtered {
				l = mochi.Logger(l)
			}
			f := start(t, testbroker.Options{Logger: l})
			_, _, err := testbroker.Dial(t, f.b.Addr, testbroker.ClientOptions{ClientID: "x", Username: "alice", Password: []byte("wrong")})
			require.Error(t, err)
			c := f.dial(t, "p", "alice")
			_, err = c.Pub(t, "secret/a", []byte("PAYLOAD-SECRET-1"), 1)
			require.Error(t, err)
			_, err = c.Pub(t, "ok/a", []byte("PAYLOAD-SECRET-2"), 1)
			require.NoError(t, err)
			waitEvent(t, f, mqttsec.EventPublishDenied, "p")
			time.Sleep(100 * time.Millisecond) // let mochi's goroutines log
			out := rec.text()
			require.NotContains(t, out, `msg=""`, "mochi's listener repeated a refused CONNECT")
			if filtered {
				require.NotContains(t, out, "publish packet rejected")
				require.NotContains(t, out, "PAYLOAD-SECRET")
				require.NotContains(t, out, payloadBytes)
			} else {
				// What mochi.Logger exists for: mochi logs the rejected
				// packet, payload included.
				require.Contains(t, out, "publish packet rejected")
				require.Contains(t, out, payloadBytes)
			}
		})
	}
}

// TestUnhardenedListenerReported: a listener not wrapped with Harden is
// reported loudly, once.
func TestUnhardenedListenerReported(t *testing.T) {
	rec := &logRecorder{}
	g := mqttsec.New(mqttsec.Config{Authenticator: mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
		return &mqttsec.Identity{Subject: "u", Method: mqttsec.MethodPassword}, nil
	}), Events: &recorder{}})
	s := newServer()
	_, err := mochi.NewHook(g, s, mochi.WithLogger(slog.New(rec)))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	require.NoError(t, s.AddListener(listeners.NewTCP(listeners.Config{ID: "plain", Address: addr})))
	require.NoError(t, s.Serve())
	defer s.Close()
	for i := range 2 {
		c, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: fmt.Sprint("c", i), Username: "u", Password: []byte("x")})
		require.NoError(t, err)
		require.NoError(t, c.Disconnect(&paho.Disconnect{}))
	}
	out := rec.text()
	require.Equal(t, 1, strings.Count(out, "not wrapped with mochi.Harden"), out)
	require.Contains(t, out, "listener=plain")
}

// TestLoggerDemotesConnectionEnds: mochi's listener logs every connection's
// end at warn with an empty message; mochi.Logger writes it at debug.
func TestLoggerDemotesConnectionEnds(t *testing.T) {
	rec := &logRecorder{}
	l := mochi.Logger(slog.New(rec))
	l.Warn("", "error", io.EOF)
	l.Warn("listener failed", "error", io.ErrUnexpectedEOF)
	out := rec.text()
	require.Contains(t, out, `DEBUG msg="mochi: connection ended" error=EOF`)
	require.Contains(t, out, `WARN msg="listener failed"`, "other records are untouched")
}
