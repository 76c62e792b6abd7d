package mqttsec_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
)

var ctx = context.Background()

// users authenticates "alice"/"pw" and "bob"/"pw" and abstains otherwise.
var users = mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	switch {
	case cl.Username == "":
		return nil, mqttsec.ErrAbstain
	case string(cred.Password) != "pw":
		return nil, mqttsec.ErrBadCredentials
	case cl.Username == "alice" || cl.Username == "bob":
		return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
	}
	return nil, mqttsec.ErrBadCredentials
})

// own allows a user everything below "u/<username>/".
var own = mqttsec.AuthorizerFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Access, topic string) error {
	prefix := "u/" + cl.Username + "/"
	if len(topic) > len(prefix) && topic[:len(prefix)] == prefix {
		return nil
	}
	return mqttsec.ErrNotAuthorized
})

type events struct {
	mu sync.Mutex
	ev []mqttsec.Event
}

func (e *events) Event(ev mqttsec.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

func (e *events) kinds() []mqttsec.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var k []mqttsec.EventKind
	for _, ev := range e.ev {
		k = append(k, ev.Kind)
	}
	return k
}

func client(id, user string) mqttsec.Client {
	return mqttsec.Client{ID: id, Username: user, RemoteAddr: "127.0.0.1:5000", Protocol: 5}
}

// sub subscribes s to filter at QoS 1 and returns the error.
func sub(g *mqttsec.Guard, s *mqttsec.Session, filter string) error {
	_, err := g.Subscribe(ctx, s, mqttsec.Subscription{Filter: filter, QoS: 1})
	return err
}

func pw(s string) mqttsec.Credentials { return mqttsec.Credentials{Password: []byte(s)} }

func TestGuardDefaultsDeny(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Events: &events{}})
	_, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, mqttsec.CodeOf(err))

	g = mqttsec.New(mqttsec.Config{Authenticator: users, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	require.ErrorIs(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x"}), mqttsec.ErrNotAuthorized)
	require.ErrorIs(t, sub(g, s, "u/alice/#"), mqttsec.ErrNotAuthorized)
	require.ErrorIs(t, g.Deliver(ctx, s, "u/alice/x"), mqttsec.ErrNotAuthorized)
}

func TestGuardConnect(t *testing.T) {
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Events: ev})
	tests := []struct {
		name string
		cl   mqttsec.Client
		cred mqttsec.Credentials
		will *mqttsec.Message
		code mqttsec.ReasonCode
	}{
		{"ok", client("c1", "alice"), pw("pw"), nil, mqttsec.CodeSuccess},
		{"wrong password", client("c2", "alice"), pw("no"), nil, mqttsec.CodeBadUsernameOrPassword},
		{"all abstain", client("c3", ""), pw(""), nil, mqttsec.CodeBadUsernameOrPassword},
		{"empty client id", client("", "alice"), pw("pw"), nil, mqttsec.CodeClientIDNotValid},
		{"wildcard client id", client("a+", "alice"), pw("pw"), nil, mqttsec.CodeClientIDNotValid},
		{"control char client id", client("a\nb", "alice"), pw("pw"), nil, mqttsec.CodeClientIDNotValid},
		{"dollar client id", client("$SYS", "alice"), pw("pw"), nil, mqttsec.CodeClientIDNotValid},
		{"will allowed", client("c4", "alice"), pw("pw"), &mqttsec.Message{Topic: "u/alice/lwt"}, mqttsec.CodeSuccess},
		{"will denied", client("c5", "alice"), pw("pw"), &mqttsec.Message{Topic: "u/bob/lwt"}, mqttsec.CodeNotAuthorized},
		{"will invalid", client("c6", "alice"), pw("pw"), &mqttsec.Message{Topic: "u/alice/#"}, mqttsec.CodeTopicNameInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := g.Connect(ctx, tt.cl, tt.cred, tt.will)
			require.Equal(t, tt.code, mqttsec.CodeOf(err), "err: %v", err)
			if tt.code == mqttsec.CodeSuccess {
				require.Equal(t, "alice", s.Identity().Subject)
				g.Disconnect(s, 0)
			} else {
				require.Nil(t, s)
				require.NotContains(t, err.Error(), "pw", "no secret in errors")
			}
		})
	}
	require.Contains(t, ev.kinds(), mqttsec.EventConnectDenied)
}

func TestGuardTakeover(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Events: &events{}})
	s1, err := g.Connect(ctx, client("dev1", "alice"), pw("pw"), nil)
	require.NoError(t, err)

	_, err = g.Connect(ctx, client("dev1", "bob"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrClientIDTaken, "another identity may not take the ID")
	require.Equal(t, mqttsec.CodeClientIDNotValid, mqttsec.CodeOf(err))

	s2, err := g.Connect(ctx, client("dev1", "alice"), pw("pw"), nil)
	require.NoError(t, err, "the same identity may take over its own session")
	g.Disconnect(s1, 0) // the old connection ends after the takeover
	_, err = g.Connect(ctx, client("dev1", "bob"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrClientIDTaken, "the old session's end must not free the new one's ID")

	g.Disconnect(s2, 0)
	g.Disconnect(s2, 0) // idempotent
	s3, err := g.Connect(ctx, client("dev1", "bob"), pw("pw"), nil)
	require.NoError(t, err)
	g.Disconnect(s3, 0)

	// A takeover whose new connection ends first (refused by the broker
	// after the Guard accepted it) leaves the ID bound to the old one.
	old, err := g.Connect(ctx, client("dev2", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	failed, err := g.Connect(ctx, client("dev2", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	g.Disconnect(failed, 0)
	_, err = g.Connect(ctx, client("dev2", "bob"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrClientIDTaken, "alice's old connection still holds the ID")
	g.Disconnect(old, 0)
	s4, err := g.Connect(ctx, client("dev2", "bob"), pw("pw"), nil)
	require.NoError(t, err, "no claim left: the ID is free")
	g.Disconnect(s4, 0)
}

func TestGuardPublishSubscribeDeliver(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, MaxPayload: 4, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	defer g.Disconnect(s, 0)

	require.NoError(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x", Payload: []byte("1234")}))
	require.ErrorIs(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x", Payload: []byte("12345")}), mqttsec.ErrPacketTooLarge)
	require.ErrorIs(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/+"}), mqttsec.ErrTopicNameInvalid)
	// A will message is published too: the same limit applies at CONNECT.
	_, err = g.Connect(ctx, client("c2", "alice"), pw("pw"), &mqttsec.Message{Topic: "u/alice/lwt", Payload: []byte("12345")})
	require.ErrorIs(t, err, mqttsec.ErrPacketTooLarge)
	require.Equal(t, mqttsec.CodePacketTooLarge, mqttsec.CodeOf(err))
	w, err := g.Connect(ctx, client("c3", "alice"), pw("pw"), &mqttsec.Message{Topic: "u/alice/lwt", Payload: []byte("1234")})
	require.NoError(t, err)
	g.Disconnect(w, 0)
	require.ErrorIs(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "u/bob/x"}), mqttsec.ErrNotAuthorized)

	require.NoError(t, sub(g, s, "u/alice/#"))
	require.NoError(t, sub(g, s, "$share/grp/u/alice/#"), "authorized on the filter inside $share")
	require.ErrorIs(t, sub(g, s, "u/alice/#/x"), mqttsec.ErrTopicFilterInvalid)
	require.ErrorIs(t, sub(g, s, "$share/grp"), mqttsec.ErrTopicFilterInvalid)
	require.ErrorIs(t, sub(g, s, "u/bob/#"), mqttsec.ErrNotAuthorized)

	require.NoError(t, g.Deliver(ctx, s, "u/alice/x"))
	require.ErrorIs(t, g.Deliver(ctx, s, "u/bob/x"), mqttsec.ErrNotAuthorized)
}

func TestGuardLimiter(t *testing.T) {
	var kinds []mqttsec.Limit
	lim := mqttsec.LimiterFunc(func(cl *mqttsec.Client, l mqttsec.Limit, n int) error {
		kinds = append(kinds, l)
		if l == mqttsec.LimitPublish && n > 2 {
			return errors.New("too fast") // no reason code: the Guard adds one
		}
		if l == mqttsec.LimitConnect && cl.IP() == "10.0.0.9" {
			return mqttsec.ErrBanned
		}
		return nil
	})
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Limiter: lim, Events: &events{}})
	banned := client("c9", "alice")
	banned.RemoteAddr = "10.0.0.9:1"
	_, err := g.Connect(ctx, banned, pw("pw"), nil)
	require.Equal(t, mqttsec.CodeBanned, mqttsec.CodeOf(err))

	_, err = g.Connect(ctx, client("c1", "alice"), pw("bad"), nil)
	require.Error(t, err)
	require.Contains(t, kinds, mqttsec.LimitAuthFailure)

	// Overload is not counted as a failed login.
	busy := mqttsec.New(mqttsec.Config{Limiter: lim, Events: &events{}, Authenticator: mqttsec.AuthenticatorFunc(
		func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
			return nil, mqttsec.ErrServerBusy
		})})
	kinds = nil
	_, err = busy.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.Equal(t, mqttsec.CodeServerBusy, mqttsec.CodeOf(err))
	require.NotContains(t, kinds, mqttsec.LimitAuthFailure)

	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	require.NoError(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x", Payload: []byte("12")}))
	err = g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x", Payload: []byte("123")})
	require.ErrorIs(t, err, mqttsec.ErrRateTooHigh)
}

type recordDisconnector struct {
	ch chan mqttsec.ReasonCode
}

func (d recordDisconnector) Disconnect(_ *mqttsec.Session, code mqttsec.ReasonCode) { d.ch <- code }

func TestGuardExpiry(t *testing.T) {
	exp := time.Now().Add(150 * time.Millisecond)
	authn := mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
		return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodJWT, Expiry: exp}, nil
	})
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Authorizer: own, Events: ev})
	d := recordDisconnector{ch: make(chan mqttsec.ReasonCode, 1)}
	g.SetDisconnector(d)
	s, err := g.Connect(ctx, client("c1", "alice"), pw(""), nil)
	require.NoError(t, err)
	require.NoError(t, g.Deliver(ctx, s, "u/alice/x"))
	select {
	case code := <-d.ch:
		require.Equal(t, mqttsec.CodeMaximumConnectTime, code)
	case <-time.After(5 * time.Second):
		t.Fatal("no disconnect at expiry")
	}
	require.True(t, s.Expired())
	require.ErrorIs(t, g.Deliver(ctx, s, "u/alice/x"), mqttsec.ErrExpired)
	require.ErrorIs(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x"}), mqttsec.ErrExpired)
	require.Contains(t, ev.kinds(), mqttsec.EventExpired)
	g.Disconnect(s, 0)

	// Already expired at CONNECT: refused.
	exp = time.Now().Add(-time.Second)
	_, err = g.Connect(ctx, client("c2", "alice"), pw(""), nil)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)

	// Disconnected before expiry: no disconnect call.
	exp = time.Now().Add(100 * time.Millisecond)
	s, err = g.Connect(ctx, client("c3", "alice"), pw(""), nil)
	require.NoError(t, err)
	g.Disconnect(s, 0)
	select {
	case <-d.ch:
		t.Fatal("disconnect called for an ended session")
	case <-time.After(300 * time.Millisecond):
	}
}

// binder counts binds and serves a per-client authorizer.
type binder struct{ binds atomic.Int32 }

func (b *binder) Authorize(context.Context, *mqttsec.Client, mqttsec.Access, string) error {
	return mqttsec.ErrNotAuthorized
}

func (b *binder) Bind(cl *mqttsec.Client) mqttsec.Authorizer {
	b.binds.Add(1)
	return own
}

func TestGuardBindAndReload(t *testing.T) {
	b := &binder{}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: b, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	for range 10 {
		require.NoError(t, g.Deliver(ctx, s, "u/alice/x"))
	}
	require.EqualValues(t, 1, b.binds.Load(), "bound once at CONNECT")

	// Swap to a policy that denies everything, under concurrent checks:
	// every check sees either the old or the new policy.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var bad atomic.Int32
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := g.Deliver(ctx, s, "u/alice/x"); err != nil && !errors.Is(err, mqttsec.ErrNotAuthorized) {
					bad.Add(1)
				}
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	g.Reload(mqttsec.Config{Authenticator: users, Authorizer: mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error {
		return mqttsec.ErrNotAuthorized
	}), Events: &events{}})
	time.Sleep(10 * time.Millisecond)
	close(stop)
	wg.Wait()
	require.Zero(t, bad.Load())
	require.ErrorIs(t, g.Deliver(ctx, s, "u/alice/x"), mqttsec.ErrNotAuthorized, "new policy applies to live sessions")
}

func TestCodes(t *testing.T) {
	require.Equal(t, mqttsec.CodeSuccess, mqttsec.CodeOf(nil))
	require.Equal(t, mqttsec.CodeUnspecified, mqttsec.CodeOf(errors.New("x")))
	require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(mqttsec.ErrNotAuthorized))
	require.Equal(t, byte(0x04), mqttsec.CodeBadUsernameOrPassword.V3Connack())
	require.Equal(t, byte(0x05), mqttsec.CodeNotAuthorized.V3Connack())
	require.Equal(t, byte(0x05), mqttsec.CodeBanned.V3Connack())
	require.Equal(t, byte(0x02), mqttsec.CodeClientIDNotValid.V3Connack())
	require.Equal(t, byte(0x03), mqttsec.CodeConnectionRateExceeded.V3Connack())
	require.Equal(t, byte(0x05), mqttsec.CodeUnspecified.V3Connack(), "an unknown denial stays a denial")
	require.Equal(t, "0x87 not authorized", mqttsec.CodeNotAuthorized.String())
	require.Equal(t, "publish|receive", (mqttsec.Publish | mqttsec.Receive).String())
}

var allowAll = mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })

func BenchmarkGuardDeliver(b *testing.B) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(b, err)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if g.Deliver(ctx, s, "u/alice/x") != nil {
				b.Fatal("denied")
			}
		}
	})
}

func BenchmarkGuardPublish(b *testing.B) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, MaxPayload: 1024, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(b, err)
	m := &mqttsec.Message{Topic: "u/alice/x", Payload: []byte("hello")}
	b.ReportAllocs()
	for b.Loop() {
		if g.Publish(ctx, s, m) != nil {
			b.Fatal("denied")
		}
	}
}

// TestGuardUsernameIsTheIdentity: a client authenticated by something
// other than its user name (a certificate, say) cannot borrow another
// user's rules by claiming that user's name.
func TestGuardUsernameIsTheIdentity(t *testing.T) {
	cert := mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
		switch cl.ID {
		case "anon":
			return &mqttsec.Identity{Subject: "anonymous", Method: mqttsec.MethodAnonymous}, nil
		case "nosubject":
			return &mqttsec.Identity{Method: mqttsec.MethodX509}, nil
		}
		return &mqttsec.Identity{Subject: "device-7", Method: mqttsec.MethodX509}, nil
	})
	var seen []string
	record := mqttsec.AuthorizerFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Access, _ string) error {
		seen = append(seen, cl.Username)
		return own.Authorize(ctx, cl, mqttsec.Publish, "u/"+cl.Username+"/x")
	})
	g := mqttsec.New(mqttsec.Config{Authenticator: cert, Authorizer: record, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "admin"), pw(""), nil)
	require.NoError(t, err)
	require.Equal(t, "device-7", s.Client().Username)
	require.NoError(t, g.Deliver(ctx, s, "u/device-7/x"))
	require.Equal(t, []string{"device-7"}, seen, "the authorizer sees the identity, not the claimed name")

	s, err = g.Connect(ctx, client("anon", "admin"), pw(""), nil)
	require.NoError(t, err)
	require.Empty(t, s.Client().Username, "an anonymous identity has no user name")

	_, err = g.Connect(ctx, client("nosubject", "admin"), pw(""), nil)
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
}
