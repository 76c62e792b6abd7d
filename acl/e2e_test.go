package acl_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

func e2eGuard(t *testing.T, authz mqttsec.Authorizer) *mqttsec.Guard {
	t.Helper()
	return mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if string(cred.Password) != "pw" {
				return nil, fmt.Errorf("%w: wrong password", mqttsec.ErrBadCredentials)
			}
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
		}),
		Authorizer: authz,
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
}

// TestEndToEndMochi runs the Casbin authorizer in a mochi broker: a
// subscription wider than the rule is refused with 0x87, and messages on
// denied topics are never delivered, also after a policy change.
func TestEndToEndMochi(t *testing.T) {
	e, err := casbin.NewEnforcer(acl.NewModel())
	require.NoError(t, err)
	for _, p := range [][]string{
		{"narrow", "a/b/#", "read", "allow"},
		{"wide", "a/#", "read", "allow"},
		{"wide", "a/b/secret/#", "read", "deny"},
		{"writer", "a/#", "write", "allow"},
	} {
		_, err := e.AddPolicy(p)
		require.NoError(t, err)
	}
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	b := testbroker.Start(t, e2eGuard(t, c), testbroker.Options{})
	dial := func(user string) *testbroker.Conn {
		conn, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: user + "-1", Username: user, Password: []byte("pw")})
		require.NoError(t, err)
		return conn
	}
	narrow, wide, writer := dial("narrow"), dial("wide"), dial("writer")

	require.Equal(t, byte(0x87), narrow.Sub(t, "a/#", 1), "a/# is wider than the rule a/b/#")
	require.Equal(t, byte(0x87), narrow.Sub(t, "#", 1))
	require.Equal(t, byte(1), narrow.Sub(t, "a/b/#", 1))
	require.Equal(t, byte(1), wide.Sub(t, "a/#", 1))

	code, err := writer.Pub(t, "a/b/secret/k", []byte("secret"), 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	code, err = writer.Pub(t, "a/b/c", []byte("one"), 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	// Deliveries keep order per publisher: the secret came first, so a
	// subscriber that got "one" and no secret never gets the secret.
	require.Equal(t, "a/b/c", next(t, wide).Topic, "the secret must not reach wide")
	require.Equal(t, "secret", string(narrow.ExpectMessage(t, "a/b/secret/k", 5*time.Second).Payload))
	require.Equal(t, "one", string(narrow.ExpectMessage(t, "a/b/c", 5*time.Second).Payload))
	wide.NoMessage(t, 200*time.Millisecond)

	// A publish the policy does not allow is refused with 0x87.
	code, err = narrow.Pub(t, "a/b/c", []byte("no"), 1)
	require.Error(t, err)
	require.Equal(t, byte(0x87), code)

	// Change the policy while connected: the next delivery uses it.
	_, err = e.AddPolicy("wide", "a/b/c", "read", "deny")
	require.NoError(t, err)
	code, err = writer.Pub(t, "a/b/c", []byte("two"), 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	code, err = writer.Pub(t, "a/x", []byte("three"), 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	require.Equal(t, "a/x", next(t, wide).Topic, "a/b/c is now denied to wide")
	require.Equal(t, "two", string(narrow.ExpectMessage(t, "a/b/c", 5*time.Second).Payload))
	wide.NoMessage(t, 200*time.Millisecond)
}

// next returns the next message conn receives, whatever its topic.
func next(t *testing.T, conn *testbroker.Conn) *paho.Publish {
	t.Helper()
	select {
	case m := <-conn.Messages():
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}
