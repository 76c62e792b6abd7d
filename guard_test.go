package mqttsec_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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

// TestGuardNilAndForeignSession: a missing or foreign session denies, it
// never panics; a zero Guard denies every CONNECT.
func TestGuardNilAndForeignSession(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{}})
	other := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{}})
	foreign, err := other.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	for name, s := range map[string]*mqttsec.Session{"nil": nil, "foreign": foreign} {
		t.Run(name, func(t *testing.T) {
			err := g.Publish(ctx, s, &mqttsec.Message{Topic: "u/alice/x"})
			require.ErrorIs(t, err, mqttsec.ErrForeignSession)
			require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
			_, err = g.Subscribe(ctx, s, mqttsec.Subscription{Filter: "u/alice/#"})
			require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
			require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(g.Deliver(ctx, s, "u/alice/x")))
			require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(g.Will(ctx, s, &mqttsec.Message{Topic: "u/alice/x"})))
			g.Disconnect(s, time.Hour) // no effect, no panic
		})
	}
	require.NoError(t, other.Deliver(ctx, foreign, "u/alice/x"), "the foreign Guard's Disconnect had no effect")

	var zero mqttsec.Guard
	_, err = zero.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.Error(t, err)
	require.NotEqual(t, mqttsec.CodeSuccess, mqttsec.CodeOf(err))
	require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(zero.Deliver(ctx, nil, "x")))
	require.Empty(t, zero.Sessions())
	require.Zero(t, zero.Revalidate(ctx))
}

// TestGuardEndedSessionDenies: a session that ended can decide nothing.
func TestGuardEndedSessionDenies(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: allowAll, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	require.NoError(t, g.Deliver(ctx, s, "x"))
	g.Disconnect(s, 0)
	require.Error(t, g.Deliver(ctx, s, "x"))
	require.Error(t, g.Publish(ctx, s, &mqttsec.Message{Topic: "x"}))
}

// The reason codes MQTT 5.0 allows in each packet a server sends.
var (
	connackCodes = codes(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	pubackCodes  = codes(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99)
	subackCodes  = codes(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	// 0x04 (disconnect with will message) is sent by clients only.
	disconnectCodes = codes(0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2)
)

func codes(c ...byte) map[mqttsec.ReasonCode]bool {
	m := map[mqttsec.ReasonCode]bool{}
	for _, b := range c {
		m[mqttsec.ReasonCode(b)] = true
	}
	return m
}

// TestReasonCodeForPacket: whatever code a Guard returns, the mapping for
// each packet yields a code that packet may carry, and a denial stays a
// denial.
func TestReasonCodeForPacket(t *testing.T) {
	for i := range 256 {
		c := mqttsec.ReasonCode(i)
		deny := c >= 0x80
		for name, tc := range map[string]struct {
			got  mqttsec.ReasonCode
			spec map[mqttsec.ReasonCode]bool
		}{
			"connack":    {c.ForConnack(), connackCodes},
			"puback":     {c.ForPuback(), pubackCodes},
			"suback":     {c.ForSuback(), subackCodes},
			"disconnect": {c.ForDisconnect(), disconnectCodes},
		} {
			require.True(t, tc.spec[tc.got], "%s: %v mapped to %v", name, c, tc.got)
			if deny {
				require.GreaterOrEqual(t, byte(tc.got), byte(0x80), "%s: denial %v became %v", name, c, tc.got)
			}
			if tc.spec[c] {
				require.Equal(t, c, tc.got, "%s: a valid code is kept", name)
			}
		}
		if deny {
			require.NotEqual(t, mqttsec.V3Accepted, c.V3Connack())
			require.Equal(t, byte(0x80), c.V3Suback())
		}
	}
	require.Equal(t, mqttsec.CodeQuotaExceeded, mqttsec.CodeMessageRateTooHigh.ForPuback())
	require.Equal(t, mqttsec.CodeAdministrativeAction, mqttsec.CodeBanned.ForDisconnect())
	require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeBadUsernameOrPassword.ForDisconnect())
	require.Equal(t, mqttsec.CodeBanned, mqttsec.CodeAdministrativeAction.ForConnack())
	require.Equal(t, mqttsec.CodeConnectionRateExceeded, mqttsec.CodeMessageRateTooHigh.ForConnack())
	for _, c := range []mqttsec.ReasonCode{mqttsec.CodePacketTooLarge, mqttsec.CodeMaximumConnectTime, mqttsec.CodeBanned} {
		require.True(t, c.Disconnects(), "%v", c)
	}
	require.False(t, mqttsec.CodeNotAuthorized.Disconnects())
	require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.ErrNotAuthorized.Code())
}

// clock is a settable clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestGuardKeptSessionOwned: while the broker keeps a session, its client
// ID stays bound to the owner: another identity can neither take it over
// nor start a clean session that would discard it.
func TestGuardKeptSessionOwned(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Events: &events{}, Clock: clk.Now})
	s, err := g.Connect(ctx, client("dev1", "bob"), pw("pw"), nil)
	require.NoError(t, err)
	require.False(t, s.Resume(), "no earlier session")
	g.Disconnect(s, 5*time.Minute)
	require.True(t, s.Kept())
	require.NoError(t, g.Deliver(ctx, s, "u/bob/x"), "messages queued for the kept session are checked against it")

	for _, clean := range []bool{true, false} {
		cl := client("dev1", "alice")
		cl.CleanStart = clean
		_, err = g.Connect(ctx, cl, pw("pw"), nil)
		require.ErrorIs(t, err, mqttsec.ErrSessionOwned, "clean=%v", clean)
		require.Equal(t, mqttsec.CodeClientIDNotValid, mqttsec.CodeOf(err))
	}
	require.True(t, s.Kept(), "the refused CONNECT did not end the kept session")

	s2, err := g.Connect(ctx, client("dev1", "bob"), pw("pw"), nil)
	require.NoError(t, err)
	require.True(t, s2.Resume(), "the owner resumes its session")
	require.True(t, s.Kept(), "until the adapter has moved the kept session, it is checked as before")
	g.Disconnect(s, 0)
	require.False(t, s.Kept())
	g.Disconnect(s2, time.Minute)

	clk.Add(61 * time.Second)
	_, err = g.Connect(ctx, client("dev1", "alice"), pw("pw"), nil)
	require.ErrorIs(t, err, mqttsec.ErrSessionOwned, "bound for a grace after keep: the broker may be sending the will")
	clk.Add(2 * time.Second)
	s3, err := g.Connect(ctx, client("dev1", "alice"), pw("pw"), nil)
	require.NoError(t, err, "after the session expired the ID is free")
	require.False(t, s3.Resume(), "and nothing of bob's is resumed")
	g.Disconnect(s3, 0)
	s4, err := g.Connect(ctx, client("dev1", "bob"), pw("pw"), nil)
	require.NoError(t, err)
	require.False(t, s4.Resume())
	g.Disconnect(s4, 0)
}

// TestGuardKeptSessionExpiryUsesClock: deliveries to a kept session stop
// when its credentials expire by the Guard's clock.
func TestGuardKeptSessionExpiryUsesClock(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	exp := clk.now.Add(time.Hour)
	authn := mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
		return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodJWT, Expiry: exp}, nil
	})
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Authorizer: own, Events: &events{}, Clock: clk.Now})
	s, err := g.Connect(ctx, client("c1", "alice"), pw(""), nil)
	require.NoError(t, err)
	g.Disconnect(s, 24*time.Hour)
	require.NoError(t, g.Deliver(ctx, s, "u/alice/x"))
	require.NoError(t, g.Will(ctx, s, &mqttsec.Message{Topic: "u/alice/lwt"}))
	clk.Add(time.Hour)
	require.ErrorIs(t, g.Deliver(ctx, s, "u/alice/x"), mqttsec.ErrExpired)
	require.ErrorIs(t, g.Will(ctx, s, &mqttsec.Message{Topic: "u/alice/lwt"}), mqttsec.ErrExpired)
}

// qosCap grants subscriptions at QoS 1 at most and denies "u/*/deny".
type qosCap struct{ mqttsec.Authorizer }

func (q qosCap) AuthorizeSubscription(ctx context.Context, cl *mqttsec.Client, sub *mqttsec.Subscription) (byte, error) {
	if err := q.Authorize(ctx, cl, mqttsec.Subscribe, sub.Filter); err != nil {
		return 0, err
	}
	if sub.Filter == "u/"+cl.Username+"/deny" {
		return 0, mqttsec.ErrNotAuthorized
	}
	return 1, nil
}

func TestGuardSubscribeQoS(t *testing.T) {
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: qosCap{own}, Events: &events{}})
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	for _, tt := range []struct {
		filter string
		want   byte
		code   mqttsec.ReasonCode
	}{
		{"u/alice/a", 2, 0},
		{"$share/g/u/alice/a", 2, 0},
		{"u/alice/deny", 0, mqttsec.CodeNotAuthorized},
		{"u/bob/a", 0, mqttsec.CodeNotAuthorized},
	} {
		for req := range byte(3) {
			qos, err := g.Subscribe(ctx, s, mqttsec.Subscription{Filter: tt.filter, QoS: req})
			require.Equal(t, tt.code, mqttsec.CodeOf(err), "%s qos %d", tt.filter, req)
			if err == nil {
				require.Equal(t, min(req, 1), qos, "%s: granted QoS is capped and never above the request", tt.filter)
			}
		}
	}
	_, err = g.Subscribe(ctx, s, mqttsec.Subscription{Filter: "u/alice/a", QoS: 3})
	require.Error(t, err, "QoS 3 does not exist")
	// Without a SubscriptionAuthorizer the requested QoS is granted.
	g2 := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Events: &events{}})
	s2, err := g2.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	qos, err := g2.Subscribe(ctx, s2, mqttsec.Subscription{Filter: "u/alice/a", QoS: 2})
	require.NoError(t, err)
	require.Equal(t, byte(2), qos)
}

// revocable authenticates like users and revalidates against a set of
// revoked subjects.
type revocable struct {
	mu      sync.Mutex
	revoked map[string]error
}

func (r *revocable) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	return users.Authenticate(ctx, cl, cred)
}

func (r *revocable) Revalidate(_ context.Context, cl *mqttsec.Client) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err, ok := r.revoked[cl.Identity.Subject]; ok {
		return err
	}
	return nil
}

func (r *revocable) revoke(subject string, err error) {
	r.mu.Lock()
	r.revoked[subject] = err
	r.mu.Unlock()
}

type sessionDisconnector struct {
	mu  sync.Mutex
	got map[*mqttsec.Session]mqttsec.ReasonCode
}

func (d *sessionDisconnector) Disconnect(s *mqttsec.Session, code mqttsec.ReasonCode) {
	d.mu.Lock()
	d.got[s] = code
	d.mu.Unlock()
}

func (d *sessionDisconnector) code(s *mqttsec.Session) (mqttsec.ReasonCode, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.got[s]
	return c, ok
}

// TestGuardRevalidate: after a credential reload, live and kept sessions
// whose credentials no longer verify are ended; abstentions and errors
// that are no verdict keep the session.
func TestGuardRevalidate(t *testing.T) {
	authn := &revocable{revoked: map[string]error{}}
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Authorizer: own, Events: ev})
	d := &sessionDisconnector{got: map[*mqttsec.Session]mqttsec.ReasonCode{}}
	g.SetDisconnector(d)
	alice, err := g.Connect(ctx, client("a1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	aliceKept, err := g.Connect(ctx, client("a2", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	g.Disconnect(aliceKept, time.Hour)
	bob, err := g.Connect(ctx, client("b1", "bob"), pw("pw"), nil)
	require.NoError(t, err)
	require.Len(t, g.Sessions(), 3)

	authn.revoke("bob", mqttsec.ErrAbstain)
	authn.revoke("alice", fmt.Errorf("%w: user removed", mqttsec.ErrBadCredentials))
	g.Event(mqttsec.Event{Kind: mqttsec.EventReload, Source: "passwords", File: "passwd"})
	require.Eventually(t, func() bool {
		_, ok1 := d.code(alice)
		_, ok2 := d.code(aliceKept)
		return ok1 && ok2
	}, 5*time.Second, 5*time.Millisecond)
	code, _ := d.code(alice)
	require.Equal(t, mqttsec.CodeNotAuthorized, code)
	require.Equal(t, mqttsec.CodeNotAuthorized, code.ForDisconnect())
	require.ErrorIs(t, g.Deliver(ctx, alice, "u/alice/x"), mqttsec.ErrRevoked)
	require.ErrorIs(t, g.Deliver(ctx, aliceKept, "u/alice/x"), mqttsec.ErrRevoked, "queued messages of a revoked kept session are not delivered")
	require.ErrorIs(t, g.Publish(ctx, alice, &mqttsec.Message{Topic: "u/alice/x"}), mqttsec.ErrBadCredentials, "the cause is kept")
	require.NoError(t, g.Deliver(ctx, bob, "u/bob/x"), "an abstention keeps the session")
	require.Contains(t, ev.kinds(), mqttsec.EventRevoked)

	// A revoked session is not kept.
	g.Disconnect(alice, time.Hour)
	require.False(t, alice.Kept())

	// An error that is no verdict (a backend down) keeps the session.
	authn.revoke("bob", errors.New("backend down"))
	require.Zero(t, g.Revalidate(ctx))
	authn.revoke("bob", mqttsec.ErrServerUnavailable)
	require.Zero(t, g.Revalidate(ctx))
	require.NoError(t, g.Deliver(ctx, bob, "u/bob/x"))
	authn.revoke("bob", mqttsec.ErrNotAuthorized)
	require.Equal(t, 1, g.Revalidate(ctx))
	require.Zero(t, g.Revalidate(ctx), "a session is ended once")
}

func TestGuardKick(t *testing.T) {
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Events: ev})
	d := &sessionDisconnector{got: map[*mqttsec.Session]mqttsec.ReasonCode{}}
	g.SetDisconnector(d)
	a1, err := g.Connect(ctx, client("a1", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	a2, err := g.Connect(ctx, client("a2", "alice"), pw("pw"), nil)
	require.NoError(t, err)
	g.Disconnect(a2, time.Hour)
	b1, err := g.Connect(ctx, client("b1", "bob"), pw("pw"), nil)
	require.NoError(t, err)

	require.Equal(t, 2, g.Kick(mqttsec.MatchSubject("alice"), mqttsec.CodeAdministrativeAction))
	for _, s := range []*mqttsec.Session{a1, a2} {
		code, ok := d.code(s)
		require.True(t, ok)
		require.Equal(t, mqttsec.CodeAdministrativeAction, code)
		require.ErrorIs(t, g.Deliver(ctx, s, "u/alice/x"), mqttsec.ErrKicked)
	}
	_, ok := d.code(b1)
	require.False(t, ok)
	require.Equal(t, 1, g.Kick(mqttsec.MatchClientID("b1"), mqttsec.CodeBanned))
	code, _ := d.code(b1)
	require.Equal(t, mqttsec.CodeBanned, code)
	require.Equal(t, mqttsec.CodeAdministrativeAction, code.ForDisconnect(), "0x8A is not a DISCONNECT code")
	require.Zero(t, g.Kick(mqttsec.MatchClientID("b1"), mqttsec.CodeBanned), "already ended")
	require.Zero(t, g.Kick(nil, mqttsec.CodeBanned))
	require.Contains(t, ev.kinds(), mqttsec.EventRevoked)
}

// TestGuardWill: a will is checked again when it is sent, against the
// current policy.
func TestGuardWill(t *testing.T) {
	ev := &events{}
	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, Events: ev})
	will := &mqttsec.Message{Topic: "u/alice/lwt", Payload: []byte("gone")}
	s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), will)
	require.NoError(t, err)
	require.NoError(t, g.Will(ctx, s, will))
	g.Reload(mqttsec.Config{Authenticator: users, Authorizer: allowNothing, Events: ev})
	require.ErrorIs(t, g.Will(ctx, s, will), mqttsec.ErrNotAuthorized, "the right was withdrawn after CONNECT")
	require.Contains(t, ev.kinds(), mqttsec.EventWillDenied)
	g.Disconnect(s, 0)
	require.Error(t, g.Will(ctx, s, will), "an ended session sends no will")
}

var allowNothing = mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error {
	return mqttsec.ErrNotAuthorized
})

// TestGuardTopicLevels: names and filters deeper than the bound are
// refused with the code of their packet; the default bound is 64.
func TestGuardTopicLevels(t *testing.T) {
	deep := func(n int) string { return "u/alice" + strings.Repeat("/x", n-2) }
	for _, tt := range []struct {
		max, levels int
		ok          bool
	}{
		{0, 64, true}, {0, 65, false}, {3, 3, true}, {3, 4, false}, {-1, 5000, true},
	} {
		g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: own, MaxTopicLevels: tt.max, Events: &events{}})
		s, err := g.Connect(ctx, client("c1", "alice"), pw("pw"), nil)
		require.NoError(t, err)
		name := deep(tt.levels)
		err = g.Publish(ctx, s, &mqttsec.Message{Topic: name})
		_, serr := g.Subscribe(ctx, s, mqttsec.Subscription{Filter: name + "/#"})
		_, werr := g.Connect(ctx, client("c2", "alice"), pw("pw"), &mqttsec.Message{Topic: name})
		if tt.ok {
			require.NoError(t, err, "%+v", tt)
			require.NoError(t, werr)
			continue
		}
		require.Equal(t, mqttsec.CodeTopicNameInvalid, mqttsec.CodeOf(err), "%+v", tt)
		require.Equal(t, mqttsec.CodeTopicFilterInvalid, mqttsec.CodeOf(serr), "%+v", tt)
		require.Equal(t, mqttsec.CodeTopicNameInvalid, mqttsec.CodeOf(werr), "a will is a publish too")
	}
}

// TestSlogSinkSamples: a flood of one client's denials writes one line per
// second and kind, then a count of what was left out; other events are all
// written.
func TestSlogSinkSamples(t *testing.T) {
	var buf bytes.Buffer
	sink := mqttsec.SlogSink(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 1000 {
		sink.Event(mqttsec.Event{Time: t0.Add(time.Duration(i) * time.Millisecond / 2), Kind: mqttsec.EventPublishDenied,
			ClientID: "flooder", Code: mqttsec.CodeMessageRateTooHigh})
	}
	sink.Event(mqttsec.Event{Time: t0, Kind: mqttsec.EventPublishDenied, ClientID: "other"})
	for range 3 {
		sink.Event(mqttsec.Event{Time: t0, Kind: mqttsec.EventConnectDenied, ClientID: "flooder"})
	}
	sink.Event(mqttsec.Event{Time: t0.Add(time.Second), Kind: mqttsec.EventPublishDenied, ClientID: "flooder"})
	out := buf.String()
	require.Equal(t, 2, strings.Count(out, "publish_denied\" client_id=flooder"), out)
	require.Equal(t, 1, strings.Count(out, "client_id=other"), out)
	require.Equal(t, 3, strings.Count(out, "mqttsec connect_denied"), "only per-message denials are sampled")
	require.Contains(t, out, "mqttsec events suppressed\" count=999")
	require.Contains(t, out, "time=2023-11-14T22:13:20.000Z", "a line carries the event's time")
}
