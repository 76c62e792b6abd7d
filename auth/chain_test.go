package auth_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
)

func fixed(id *mqttsec.Identity, err error) mqttsec.Authenticator {
	return mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
		return id, err
	})
}

func TestChain(t *testing.T) {
	alice := &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodPassword}
	bob := &mqttsec.Identity{Subject: "bob", Method: mqttsec.MethodJWT}
	abstain := fixed(nil, mqttsec.ErrAbstain)
	denyIt := fixed(nil, errors.New("backend says no"))
	busy := fixed(nil, mqttsec.ErrServerBusy)
	for _, tc := range []struct {
		name  string
		chain mqttsec.Authenticator
		want  *mqttsec.Identity
		code  mqttsec.ReasonCode
	}{
		{"empty", auth.Chain(), nil, mqttsec.CodeBadUsernameOrPassword},
		{"nil elements", auth.Chain(nil, nil), nil, mqttsec.CodeBadUsernameOrPassword},
		{"all abstain", auth.Chain(abstain, abstain), nil, mqttsec.CodeBadUsernameOrPassword},
		{"first allows", auth.Chain(fixed(alice, nil), fixed(bob, nil)), alice, mqttsec.CodeSuccess},
		{"abstain then allow", auth.Chain(abstain, fixed(bob, nil)), bob, mqttsec.CodeSuccess},
		{"deny wins over later allow", auth.Chain(denyIt, fixed(bob, nil)), nil, mqttsec.CodeBadUsernameOrPassword},
		{"reason code kept", auth.Chain(abstain, busy, fixed(bob, nil)), nil, mqttsec.CodeServerBusy},
		{"nil identity denies", auth.Chain(fixed(nil, nil)), nil, mqttsec.CodeBadUsernameOrPassword},
		{"no anonymous by default", auth.Chain(abstain), nil, mqttsec.CodeBadUsernameOrPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.chain.Authenticate(context.Background(), &mqttsec.Client{ID: "c"}, mqttsec.Credentials{})
			require.Equal(t, tc.code, mqttsec.CodeOf(err))
			require.Equal(t, tc.want, id)
			if err != nil {
				require.False(t, errors.Is(err, mqttsec.ErrAbstain), "a chain never abstains")
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := auth.Chain(fixed(alice, nil)).Authenticate(ctx, &mqttsec.Client{}, mqttsec.Credentials{})
	require.ErrorIs(t, err, context.Canceled)
}

func TestAnonymous(t *testing.T) {
	p := auth.NewPasswords(fileWith(t, "alice", "wonderland"), auth.PasswordsConfig{})
	c := auth.Chain(p, auth.Anonymous("guest"))
	id, err := c.Authenticate(context.Background(), &mqttsec.Client{ID: "c"}, mqttsec.Credentials{})
	require.NoError(t, err)
	require.Equal(t, mqttsec.MethodAnonymous, id.Method)
	require.Equal(t, []string{"guest"}, id.Roles)

	_, err = login(c, "alice", "wrong")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "a wrong password is not let in anonymously")
	_, err = c.Authenticate(context.Background(), &mqttsec.Client{ID: "c"}, mqttsec.Credentials{Password: []byte("x")})
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "a password without user name is not anonymous")
	_, err = c.Authenticate(context.Background(), &mqttsec.Client{ID: "c"}, mqttsec.Credentials{AuthMethod: "SCRAM"})
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	id, err = login(c, "alice", "wonderland")
	require.NoError(t, err)
	require.Equal(t, "alice", id.Subject)
}

// TestGuardChain runs a chain inside the Guard: denials carry 0x86 and
// reach the failed-authentication limiter once per failure.
func TestGuardChain(t *testing.T) {
	p := auth.NewPasswords(fileWith(t, "alice", "wonderland"), auth.PasswordsConfig{})
	k := getKeys(t)
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub}, Issuer: testIss, Audience: testAud})
	failures := 0
	var logged []string
	g := mqttsec.New(mqttsec.Config{
		Authenticator: auth.Chain(j, p),
		Authorizer:    mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil }),
		Limiter: mqttsec.LimiterFunc(func(_ *mqttsec.Client, l mqttsec.Limit, _ int) error {
			if l == mqttsec.LimitAuthFailure {
				failures++
			}
			return nil
		}),
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Err != nil {
				logged = append(logged, e.Err.Error())
			}
		}),
	})
	s, err := g.Connect(context.Background(), mqttsec.Client{ID: "c1", Username: "alice"}, mqttsec.Credentials{Password: []byte("wonderland")}, nil)
	require.NoError(t, err)
	require.Equal(t, "alice", s.Identity().Subject)
	g.Disconnect(s, 0)
	_, err = g.Connect(context.Background(), mqttsec.Client{ID: "c1", Username: "alice"}, mqttsec.Credentials{Password: []byte("nope")}, nil)
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, mqttsec.CodeOf(err))
	_, err = g.Connect(context.Background(), mqttsec.Client{ID: "c1"}, mqttsec.Credentials{}, nil)
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, mqttsec.CodeOf(err))
	expired := sign(t, jwt.SigningMethodES256, k.ec, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()})
	_, err = g.Connect(context.Background(), mqttsec.Client{ID: "c1", Username: "alice"}, mqttsec.Credentials{Password: []byte(expired)}, nil)
	require.Equal(t, mqttsec.CodeBadUsernameOrPassword, mqttsec.CodeOf(err))
	require.Equal(t, 3, failures)
	require.Len(t, logged, 3)
	for _, l := range logged {
		require.NotContains(t, l, "nope", "no password in events")
		require.NotContains(t, l, expired[len(expired)-12:], "no token in events")
		require.NotContains(t, l, expired[:20])
	}
}

// revalidator is an authenticator whose Revalidate answer is fixed.
type revalidator struct {
	mqttsec.Authenticator
	err error
}

func (r revalidator) Revalidate(context.Context, *mqttsec.Client) error { return r.err }

// A chain vouches for a session when any element does; otherwise an
// element that cannot decide keeps the session; otherwise a denial ends
// it; otherwise the chain abstains. The order does not matter.
func TestChainRevalidate(t *testing.T) {
	ctx := context.Background()
	cl := &mqttsec.Client{ID: "c", Identity: &mqttsec.Identity{Subject: "a", Method: mqttsec.MethodPassword}}
	vouch := revalidator{err: nil}
	abstain := revalidator{err: mqttsec.ErrAbstain}
	denial := revalidator{err: fmt.Errorf("%w: removed", mqttsec.ErrBadCredentials)}
	busy := revalidator{err: fmt.Errorf("%w: backend down", mqttsec.ErrServerUnavailable)}
	plainErr := revalidator{err: errors.New("no idea")}
	notRv := fixed(nil, mqttsec.ErrAbstain)
	for _, tc := range []struct {
		name  string
		elems []mqttsec.Authenticator
		want  error // nil, ErrAbstain, or the error expected
	}{
		{"empty", nil, mqttsec.ErrAbstain},
		{"no revalidators", []mqttsec.Authenticator{notRv, auth.Anonymous()}, mqttsec.ErrAbstain},
		{"vouch", []mqttsec.Authenticator{abstain, vouch}, nil},
		{"vouch beats denial", []mqttsec.Authenticator{denial, vouch}, nil},
		{"vouch beats denial, either order", []mqttsec.Authenticator{vouch, denial}, nil},
		{"denial", []mqttsec.Authenticator{abstain, denial, notRv}, denial.err},
		{"undecided keeps", []mqttsec.Authenticator{denial, busy}, busy.err},
		{"error without code keeps", []mqttsec.Authenticator{plainErr, denial}, plainErr.err},
		{"all abstain", []mqttsec.Authenticator{abstain, abstain}, mqttsec.ErrAbstain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rv, ok := auth.Chain(tc.elems...).(mqttsec.Revalidator)
			require.True(t, ok, "a Chain is a Revalidator")
			err := rv.Revalidate(ctx, cl)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	err := auth.Chain(denial).(mqttsec.Revalidator).Revalidate(cancelled, cl)
	require.Equal(t, mqttsec.CodeServerBusy, mqttsec.CodeOf(err), "a cancelled revalidation is no verdict")
}

// In a Guard, a chain of passwords and tokens ends exactly the sessions
// whose credentials were withdrawn: removing a user from the passwords
// does not touch a token session of the same name.
func TestGuardRevalidatesChain(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	p := auth.NewPasswords(fileWith(t, "alice", "wonderland", "bob", "builder"), auth.PasswordsConfig{})
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub},
		Issuer: testIss, Audience: testAud, Clock: clk.Now})
	var mu sync.Mutex
	revoked := map[string]mqttsec.ReasonCode{}
	g := mqttsec.New(mqttsec.Config{Authenticator: auth.Chain(j, p), Clock: clk.Now,
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			if e.Kind == mqttsec.EventRevoked {
				mu.Lock()
				revoked[e.ClientID] = e.Code
				mu.Unlock()
			}
		})})
	connect := func(id, user, pw string) *mqttsec.Session {
		t.Helper()
		s, err := g.Connect(context.Background(), mqttsec.Client{ID: id, Username: user}, mqttsec.Credentials{Password: []byte(pw)}, nil)
		require.NoError(t, err)
		return s
	}
	connect("alice-pw", "alice", "wonderland")
	connect("bob-pw", "bob", "builder")
	connect("alice-jwt", "alice", sign(t, jwt.SigningMethodES256, k.ec, claimsAt(clk.Now(), "alice")))

	f := fileWith(t, "bob", "builder")
	p.Replace(f) // alice removed, bob's hash line changed (a new salt)
	require.Equal(t, 2, g.Revalidate(context.Background()))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, map[string]mqttsec.ReasonCode{"alice-pw": mqttsec.CodeNotAuthorized, "bob-pw": mqttsec.CodeNotAuthorized}, revoked)
}
