package config

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/bridge"
)

// TestBridgeIdentity checks the local side of a bridge: only its own
// listener and password authenticate it, nothing else authenticates there,
// and its identity may do exactly what its mappings need.
func TestBridgeIdentity(t *testing.T) {
	cfg := bridge.Config{Name: "cloud", Remote: "mqtts://r:8883", ClientID: "b", Topics: []bridge.Mapping{
		{Pattern: "up/#", Direction: bridge.Out}, {Pattern: "cmd/+", Direction: bridge.In, LocalPrefix: "site/"}}}
	grants, err := cfg.LocalGrants()
	require.NoError(t, err)
	lb := &localBridge{cfg: cfg, user: "bridge:cloud", secret: []byte("s3cret"), grants: grants}
	ba := bridgeAuth{lb.user: lb}
	ctx := context.Background()

	_, err = ba.Authenticate(ctx, &mqttsec.Client{Listener: "tcp-0", Username: lb.user}, mqttsec.Credentials{Password: lb.secret})
	require.ErrorIs(t, err, mqttsec.ErrAbstain, "other listeners: not its business")
	_, err = ba.Authenticate(ctx, &mqttsec.Client{Listener: BridgeListener, Username: lb.user}, mqttsec.Credentials{Password: []byte("guess")})
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	_, err = ba.Authenticate(ctx, &mqttsec.Client{Listener: BridgeListener, Username: "alice"}, mqttsec.Credentials{Password: []byte("x")})
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "nobody else authenticates on the bridge listener")
	cl := &mqttsec.Client{Listener: BridgeListener, Username: lb.user}
	id, err := ba.Authenticate(ctx, cl, mqttsec.Credentials{Password: lb.secret})
	require.NoError(t, err)
	require.Equal(t, MethodBridge, id.Method)
	cl.Identity = id
	require.NoError(t, ba.Revalidate(ctx, cl))

	deny := mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return mqttsec.ErrNotAuthorized })
	az := bridgeAuthz{next: deny}.Bind(cl)
	for _, tc := range []struct {
		a     mqttsec.Access
		topic string
		ok    bool
	}{
		{mqttsec.Subscribe, "up/#", true},
		{mqttsec.Subscribe, "up/a/+", true},
		{mqttsec.Subscribe, "#", false},
		{mqttsec.Receive, "up/x", true},
		{mqttsec.Receive, "down/x", false},
		{mqttsec.Publish, "site/cmd/open", true},
		{mqttsec.Publish, "site/cmd/a/b", false},
		{mqttsec.Publish, "up/x", false},
		{mqttsec.Subscribe, "site/cmd/+", false},
	} {
		err := az.Authorize(ctx, cl, tc.a, tc.topic)
		require.Equal(t, tc.ok, err == nil, "%s %s: %v", tc.a, tc.topic, err)
	}

	// A client of another listener with the same name is not the bridge.
	other := &mqttsec.Client{Listener: "tcp-0", Username: lb.user, Identity: &mqttsec.Identity{Subject: lb.user, Method: MethodBridge, Grants: grants}}
	require.Error(t, bridgeAuthz{next: deny}.Bind(other).Authorize(ctx, other, mqttsec.Publish, "site/cmd/open"))
}
