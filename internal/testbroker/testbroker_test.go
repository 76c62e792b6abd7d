package testbroker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
)

func guard() *mqttsec.Guard {
	return mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if cl.Username == "alice" && string(cred.Password) == "secret" {
				return &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodPassword}, nil
			}
			return nil, fmt.Errorf("%w: unknown user", mqttsec.ErrBadCredentials)
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(_ context.Context, _ *mqttsec.Client, _ mqttsec.Access, topic string) error {
			if strings.HasPrefix(topic, "secret/") {
				return mqttsec.ErrNotAuthorized
			}
			return nil
		}),
		Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
}

func TestBrokerV5(t *testing.T) {
	b := testbroker.Start(t, guard(), testbroker.Options{})
	_, ca, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "x", Username: "alice", Password: []byte("wrong")})
	require.Error(t, err)
	require.NotNil(t, ca)
	require.Equal(t, byte(0x86), ca.ReasonCode)

	sub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "sub", Username: "alice", Password: []byte("secret")})
	require.NoError(t, err)
	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "pub", Username: "alice", Password: []byte("secret")})
	require.NoError(t, err)

	require.Equal(t, byte(1), sub.Sub(t, "a/#", 1))
	require.Equal(t, byte(0x87), sub.Sub(t, "secret/#", 1))
	code, err := pub.Pub(t, "a/b", []byte("hi"), 1)
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	m := sub.ExpectMessage(t, "a/b", 5*time.Second)
	require.Equal(t, "hi", string(m.Payload))
	code, err = pub.Pub(t, "secret/x", []byte("no"), 1)
	require.Error(t, err)
	require.Equal(t, byte(0x87), code)
	sub.NoMessage(t, 200*time.Millisecond)
}

func TestBrokerV3(t *testing.T) {
	b := testbroker.Start(t, guard(), testbroker.Options{})
	code, c, err := testbroker.DialV3(t, b.Addr, "v3", "alice", "nope")
	require.NoError(t, err)
	require.Nil(t, c)
	require.Equal(t, mqttsec.V3BadUsernameOrPass, code)

	code, sub, err := testbroker.DialV3(t, b.Addr, "v3sub", "alice", "secret")
	require.NoError(t, err)
	require.Equal(t, byte(0), code)
	_, pub, err := testbroker.DialV3(t, b.Addr, "v3pub", "alice", "secret")
	require.NoError(t, err)
	g, err := sub.Subscribe("a/+", 2)
	require.NoError(t, err)
	require.Equal(t, byte(2), g)
	g, err = sub.Subscribe("secret/+", 2)
	require.NoError(t, err)
	require.Equal(t, byte(0x80), g)
	for qos := byte(0); qos <= 2; qos++ {
		require.NoError(t, pub.Publish("a/b", []byte{'0' + qos}, qos))
		topic, payload, err := sub.ReadPublish(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, "a/b", topic)
		require.Equal(t, []byte{'0' + qos}, payload)
	}
}

// TestRequestEndsWithConnection: a request waits for its answer up to the
// generous Timeout, but not once the broker has closed the connection.
func TestRequestEndsWithConnection(t *testing.T) {
	g := guard()
	g.Reload(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
			return &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodPassword}, nil
		}),
		Authorizer: mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil }),
		MaxPayload: 1,
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	b := testbroker.Start(t, g, testbroker.Options{})
	c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "big", Username: "alice", Password: []byte("x")})
	require.NoError(t, err)
	start := time.Now()
	_, err = c.Pub(t, "a/b", []byte("too large"), 1) // the broker disconnects with 0x95
	require.Error(t, err)
	require.Less(t, time.Since(start), testbroker.Timeout/2)
}
