package integrity_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/integrity"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

// events records the Guard's denials.
type events struct {
	mu   sync.Mutex
	errs []error
}

func (e *events) Event(ev mqttsec.Event) {
	if ev.Kind == mqttsec.EventPublishDenied {
		e.mu.Lock()
		e.errs = append(e.errs, ev.Err)
		e.mu.Unlock()
	}
}

func (e *events) last() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) == 0 {
		return nil
	}
	return e.errs[len(e.errs)-1]
}

// casbinPolicy lets every device write its own subtree and "watcher" read
// everything.
func casbinPolicy(t *testing.T) *acl.Casbin {
	t.Helper()
	e, err := casbin.NewEnforcer(acl.NewModel())
	require.NoError(t, err)
	for _, p := range [][]string{
		{"*", "devices/%u/#", "write", "allow"},
		{"*", "open/#", "write", "allow"},
		{"dev-b", "devices/dev-a/#", "write", "allow"}, // a misconfigured rule: b may write a's topics
		{"watcher", "#", "read", "allow"},
	} {
		_, err := e.AddPolicy(p)
		require.NoError(t, err)
	}
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	return c
}

func protectedBroker(t *testing.T, next mqttsec.Authorizer) (*testbroker.Broker, *events) {
	t.Helper()
	v := verifier(t, integrity.VerifierConfig{Policy: policy(t, integrity.Rule{Filter: "devices/#"})})
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if string(cred.Password) != "pw" {
				return nil, mqttsec.ErrBadCredentials
			}
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
		}),
		Authorizer: integrity.Protect(next, v),
		Events:     ev,
	})
	return testbroker.Start(t, g, testbroker.Options{}), ev
}

func dial(t *testing.T, addr, user string) *testbroker.Conn {
	t.Helper()
	c, _, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: user + "-c", Username: user, Password: []byte("pw")})
	require.NoError(t, err)
	return c
}

// TestBrokerRefusals runs Protect in a mochi broker composed with the
// Casbin authorizer (which binds per client): each attack of the issue is
// refused with its reason code and its own error kind, and never reaches a
// subscriber.
func TestBrokerRefusals(t *testing.T) {
	f := keys(t)
	b, ev := protectedBroker(t, casbinPolicy(t))
	devA, devB, watcher := dial(t, b.Addr, "dev-a"), dial(t, b.Addr, "dev-b"), dial(t, b.Addr, "watcher")
	require.Equal(t, byte(1), watcher.Sub(t, "#", 1))

	a := integrity.NewSigner(f.a, integrity.SignerConfig{})
	const topic = "devices/dev-a/temp"
	env := func(s *integrity.Signer, tp string, p string) []byte {
		return seal(t, s, tp, []byte(p), integrity.Envelope, nil).Payload
	}
	sentinel := 0
	// allowed publishes a valid message and waits for it: every refusal
	// before it was not delivered (deliveries keep the publisher's order).
	allowed := func() {
		t.Helper()
		sentinel++
		p := fmt.Sprintf("sentinel %d", sentinel)
		code, err := devA.Pub(t, topic, env(a, topic, p), 1)
		require.NoError(t, err)
		require.Equal(t, byte(0), code)
		got := watcher.ExpectMessage(t, topic, testbroker.Timeout)
		vd, err := verifier(t, integrity.VerifierConfig{}).Verify(ctx, topic, got.Payload, "")
		require.NoError(t, err)
		require.Equal(t, p, string(vd.Payload), "a refused message was delivered")
	}
	allowed()

	replayed := env(a, topic, "once")
	code, err := devA.Pub(t, topic, replayed, 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	_ = watcher.ExpectMessage(t, topic, testbroker.Timeout)

	tampered := env(a, topic, "21.5")
	tampered[bytes.Index(tampered, []byte("21.5"))] = '9'
	old := integrity.NewSigner(f.a, integrity.SignerConfig{Clock: func() time.Time { return time.Now().Add(-time.Hour) }})
	for _, tc := range []struct {
		name    string
		conn    *testbroker.Conn
		topic   string
		payload []byte
		code    byte
		kind    error
	}{
		{"tampered payload", devA, topic, tampered, 0x87, integrity.ErrBadSignature},
		{"changed topic", devA, "devices/dev-a/humidity", env(a, topic, "x"), 0x87, integrity.ErrBadSignature},
		{"replay", devA, topic, replayed, 0x87, integrity.ErrReplay},
		{"expired timestamp", devA, topic, env(old, topic, "x"), 0x87, integrity.ErrExpired},
		{"unknown key", devA, topic, env(integrity.NewSigner(f.stranger, integrity.SignerConfig{}), topic, "x"), 0x87, integrity.ErrUnknownKey},
		{"another device's key", devA, topic, env(integrity.NewSigner(f.b, integrity.SignerConfig{}), topic, "x"), 0x87, integrity.ErrKeyNotBound},
		{"a's message published by b", devB, topic, env(a, topic, "x"), 0x87, integrity.ErrKeyNotBound},
		{"unsigned", devA, topic, []byte("21.5"), 0x99, integrity.ErrUnsigned},
		{"truncated envelope", devA, topic, env(a, topic, "x")[:40], 0x99, integrity.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := tc.conn.Pub(t, tc.topic, tc.payload, 1)
			require.Error(t, err)
			require.Equal(t, tc.code, code)
			last := ev.last()
			require.ErrorIs(t, last, tc.kind)
			require.Equal(t, mqttsec.ReasonCode(tc.code), mqttsec.CodeOf(last))
			allowed()
		})
	}

	// The ACL still decides first: dev-b may not write to devices/dev-c.
	code, err = devB.Pub(t, "devices/dev-c/x", env(integrity.NewSigner(f.b, integrity.SignerConfig{}), "devices/dev-c/x", "x"), 1)
	require.Error(t, err)
	require.Equal(t, byte(0x87), code)
	require.NotErrorIs(t, ev.last(), integrity.ErrBadSignature)
	// Topics the policy does not protect need no signature.
	code, err = devA.Pub(t, "open/x", []byte("plain"), 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	require.Equal(t, "plain", string(watcher.ExpectMessage(t, "open/x", testbroker.Timeout).Payload))
}

// TestBrokerV3: an MQTT 3.1.1 publisher's unsigned message on a protected
// topic is dropped (its PUBACK cannot say why) and reported; its envelope
// is accepted.
func TestBrokerV3(t *testing.T) {
	f := keys(t)
	b, ev := protectedBroker(t, casbinPolicy(t))
	watcher := dial(t, b.Addr, "watcher")
	require.Equal(t, byte(1), watcher.Sub(t, "#", 1))
	code, v3, err := testbroker.DialV3(t, b.Addr, "dev-a-v3", "dev-a", "pw")
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	const topic = "devices/dev-a/temp"
	require.NoError(t, v3.Publish(topic, []byte("unsigned"), 1))
	require.Eventually(t, func() bool { return errors.Is(ev.last(), integrity.ErrUnsigned) }, testbroker.Timeout, 10*time.Millisecond)
	m := seal(t, integrity.NewSigner(f.a, integrity.SignerConfig{}), topic, []byte("signed"), integrity.Envelope, nil)
	require.NoError(t, v3.Publish(topic, m.Payload, 1))
	got := watcher.ExpectMessage(t, topic, testbroker.Timeout)
	require.Equal(t, m.Payload, got.Payload, "the first message delivered is the signed one")
}

// binder is an authorizer that binds per client and counts it.
type binder struct {
	mu    sync.Mutex
	binds int
	bound map[string]int
}

func (b *binder) Authorize(context.Context, *mqttsec.Client, mqttsec.Access, string) error {
	return errors.New("unbound authorizer used")
}

func (b *binder) Bind(cl *mqttsec.Client) mqttsec.Authorizer {
	b.mu.Lock()
	b.binds++
	b.mu.Unlock()
	return mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error {
		b.mu.Lock()
		b.bound[cl.ID]++
		b.mu.Unlock()
		return nil
	})
}

// TestProtectKeepsBinding: the Guard binds the wrapped authorizer once per
// connection and every check goes to the bound one; subscriptions pass
// through.
func TestProtectKeepsBinding(t *testing.T) {
	f := keys(t)
	bd := &binder{bound: map[string]int{}}
	b, _ := protectedBroker(t, bd)
	devA := dial(t, b.Addr, "dev-a")
	require.Equal(t, byte(1), devA.Sub(t, "devices/#", 1))
	m := seal(t, integrity.NewSigner(f.a, integrity.SignerConfig{}), "devices/dev-a/x", []byte("x"), integrity.Envelope, nil)
	code, err := devA.Pub(t, "devices/dev-a/x", m.Payload, 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	_ = devA.ExpectMessage(t, "devices/dev-a/x", testbroker.Timeout)
	bd.mu.Lock()
	defer bd.mu.Unlock()
	require.Equal(t, 1, bd.binds)
	require.GreaterOrEqual(t, bd.bound["dev-a-c"], 3, "subscribe, publish and delivery went to the bound authorizer")
}

// TestProtectDirect: the wrapper on its own, as another adapter would use
// it: Authorize of a publish on a protected topic is refused (it cannot see
// the payload), a nil next denies, and anonymous clients cannot publish on
// protected topics.
func TestProtectDirect(t *testing.T) {
	f := keys(t)
	v := verifier(t, integrity.VerifierConfig{Policy: policy(t, integrity.Rule{Filter: "p/#"})})
	allow := mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })
	a := integrity.Protect(allow, v)
	cl := &mqttsec.Client{ID: "c", Username: "dev-a", Identity: &mqttsec.Identity{Subject: "dev-a", Method: mqttsec.MethodPassword}}
	require.ErrorIs(t, a.Authorize(ctx, cl, mqttsec.Publish, "p/x"), mqttsec.ErrNotAuthorized)
	require.NoError(t, a.Authorize(ctx, cl, mqttsec.Publish, "q/x"))
	require.NoError(t, a.Authorize(ctx, cl, mqttsec.Subscribe, "p/#"))
	ma := a.(mqttsec.MessageAuthorizer)
	m := seal(t, integrity.NewSigner(f.a, integrity.SignerConfig{}), "p/x", []byte("x"), integrity.Envelope, nil)
	anon := &mqttsec.Client{ID: "c", Identity: &mqttsec.Identity{Method: mqttsec.MethodAnonymous}}
	err := ma.AuthorizeMessage(ctx, anon, &mqttsec.Message{Topic: "p/x", Payload: m.Payload})
	require.ErrorIs(t, err, integrity.ErrKeyNotBound)
	require.NoError(t, ma.AuthorizeMessage(ctx, cl, &mqttsec.Message{Topic: "p/x", Payload: m.Payload}))

	none := integrity.Protect(nil, v)
	require.ErrorIs(t, none.Authorize(ctx, cl, mqttsec.Subscribe, "q"), mqttsec.ErrNotAuthorized)
	require.ErrorIs(t, none.(mqttsec.MessageAuthorizer).AuthorizeMessage(ctx, cl, &mqttsec.Message{Topic: "q"}), mqttsec.ErrNotAuthorized)
	_, err = none.(mqttsec.SubscriptionAuthorizer).AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: "q"})
	require.ErrorIs(t, err, mqttsec.ErrNotAuthorized)
}

// TestProtectWill: a signed will on a protected topic passes at CONNECT
// and again when the Guard checks it before sending it (no freshness or
// replay check for a will: its receivers make them); a will signed by
// another device's key is refused both times.
func TestProtectWill(t *testing.T) {
	f := keys(t)
	v := verifier(t, integrity.VerifierConfig{Policy: policy(t, integrity.Rule{Filter: "devices/#"})})
	allow := mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })
	var willErr error
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
		}),
		Authorizer: integrity.Protect(allow, v),
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Kind == mqttsec.EventWillDenied {
				willErr = e.Err
			}
		}),
	})
	m := seal(t, integrity.NewSigner(f.a, integrity.SignerConfig{}), "devices/dev-a/status", []byte("offline"), integrity.Envelope, nil)
	will := &mqttsec.Message{Topic: "devices/dev-a/status", Payload: m.Payload, QoS: 1}
	s, err := g.Connect(ctx, mqttsec.Client{ID: "dev-a-c", Username: "dev-a", RemoteAddr: "127.0.0.1:1", Protocol: 5}, mqttsec.Credentials{}, will)
	require.NoError(t, err, "the will is checked at CONNECT and passes")
	require.NoError(t, g.Will(ctx, s, will), "and again when it is sent")
	require.NoError(t, willErr)
	_, err = g.Connect(ctx, mqttsec.Client{ID: "dev-b-c", Username: "dev-b", RemoteAddr: "127.0.0.1:3", Protocol: 5}, mqttsec.Credentials{}, will)
	require.ErrorIs(t, err, integrity.ErrKeyNotBound, "dev-b cannot send dev-a's signed will")
	unsigned := &mqttsec.Message{Topic: "devices/dev-a/status", Payload: []byte("offline"), QoS: 1}
	_, err = g.Connect(ctx, mqttsec.Client{ID: "dev-a-d", Username: "dev-a", RemoteAddr: "127.0.0.1:2", Protocol: 5}, mqttsec.Credentials{}, unsigned)
	require.ErrorIs(t, err, integrity.ErrUnsigned, "an unsigned will on a protected topic is refused at CONNECT")
}

// TestBrokerDetached: the broker checks a detached signature carried in
// the MQTT v5 user property (the payload stays byte-identical for
// consumers that do not verify); a tampered payload under a valid
// signature and a doubled signature property are refused.
func TestBrokerDetached(t *testing.T) {
	f := keys(t)
	b, ev := protectedBroker(t, casbinPolicy(t))
	devA, watcher := dial(t, b.Addr, "dev-a"), dial(t, b.Addr, "watcher")
	require.Equal(t, byte(1), watcher.Sub(t, "#", 1))
	a := integrity.NewSigner(f.a, integrity.SignerConfig{})
	const topic = "devices/dev-a/temp"
	pub := func(payload []byte, sigs ...string) (byte, error) {
		p := &paho.Publish{Topic: topic, QoS: 1, Payload: payload, Properties: &paho.PublishProperties{}}
		for _, s := range sigs {
			p.Properties.User = append(p.Properties.User, paho.UserProperty{Key: integrity.PropertyName, Value: s})
		}
		ctx, cancel := context.WithTimeout(context.Background(), testbroker.Timeout)
		defer cancel()
		r, err := devA.Publish(ctx, p)
		if r == nil {
			return 0, err
		}
		return r.ReasonCode, err
	}

	m := seal(t, a, topic, []byte("21.5"), integrity.Detached, nil)
	code, err := pub(m.Payload, m.Signature)
	require.NoError(t, err)
	require.Less(t, code, byte(0x80), "accepted")
	got := watcher.ExpectMessage(t, topic, testbroker.Timeout)
	require.Equal(t, "21.5", string(got.Payload), "the payload is delivered as it was sent")

	m = seal(t, a, topic, []byte("21.5"), integrity.Detached, nil)
	code, _ = pub([]byte("99.9"), m.Signature)
	require.Equal(t, byte(0x87), code)
	require.ErrorIs(t, ev.last(), integrity.ErrBadSignature)

	m = seal(t, a, topic, []byte("21.5"), integrity.Detached, nil)
	code, _ = pub(m.Payload, m.Signature, m.Signature)
	require.Equal(t, byte(0x99), code)
	require.ErrorIs(t, ev.last(), integrity.ErrMalformed)

	code, _ = pub([]byte("21.5"))
	require.Equal(t, byte(0x99), code, "no signature at all")
	require.ErrorIs(t, ev.last(), integrity.ErrUnsigned)
	watcher.NoMessage(t, 200*time.Millisecond)
}
