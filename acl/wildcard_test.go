package acl_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

func TestWildcardPolicy(t *testing.T) {
	allowAll := mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })
	p := &acl.WildcardPolicy{MinLevels: 2, Admins: []string{"admins"}, SysSubjects: []string{"monitor"}}
	authz := p.Wrap(allowAll)
	user := &mqttsec.Client{ID: "c", Username: "bob"}
	admin := &mqttsec.Client{ID: "a", Username: "root", Identity: &mqttsec.Identity{Subject: "root", Roles: []string{"admins"}}}
	monitor := &mqttsec.Client{ID: "m", Username: "monitor"}
	ctx := context.Background()
	for _, tc := range []struct {
		cl     *mqttsec.Client
		filter string
		ok     bool
	}{
		{user, "#", false},
		{user, "+/#", false},
		{user, "site/#", false},
		{user, "site/+/temp", false},
		{user, "site/a/#", true},
		{user, "site/a/+", true},
		{user, "site/a", true},
		{user, "$SYS/#", false},
		{admin, "#", true},
		{admin, "$SYS/broker/+", false},
		{monitor, "$SYS/#", true},
		{monitor, "#", false},
	} {
		err := authz.Authorize(ctx, tc.cl, mqttsec.Subscribe, tc.filter)
		if tc.ok {
			require.NoError(t, err, "%s %s", tc.cl.Username, tc.filter)
		} else {
			require.ErrorIs(t, err, acl.ErrWildcard, "%s %s", tc.cl.Username, tc.filter)
			require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
		}
	}
	// Publishes and deliveries are not subscriptions.
	require.NoError(t, authz.Authorize(ctx, user, mqttsec.Receive, "$SYS/x"))

	// Wrapping a Casbin keeps its per-client binding.
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicy("*", "#", "read", "allow")
	require.NoError(t, err)
	bound := p.Wrap(c).(mqttsec.ClientBinder).Bind(user)
	require.ErrorIs(t, bound.Authorize(ctx, user, mqttsec.Subscribe, "#"), acl.ErrWildcard)
	require.NoError(t, bound.Authorize(ctx, user, mqttsec.Subscribe, "a/b/#"))
}

// A WildcardPolicy around a Casbin keeps the QoS a grant allows on
// subscribe: the Guard only sees a SubscriptionAuthorizer if the wrapper is
// one.
func TestWildcardPolicyKeepsSubscriptionQoS(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicy("*", "dev/#", "read", "allow")
	require.NoError(t, err)
	p := &acl.WildcardPolicy{MinLevels: 1}
	cl := &mqttsec.Client{ID: "c", Username: "bob", Identity: &mqttsec.Identity{Subject: "bob", Grants: []mqttsec.Grant{
		{Allow: true, Access: mqttsec.Subscribe, Topic: "dev/#", QoS: []byte{0}},
	}}}
	ctx := context.Background()
	for name, authz := range map[string]mqttsec.Authorizer{"unbound": p.Wrap(c), "bound": p.Wrap(c).(mqttsec.ClientBinder).Bind(cl)} {
		sa, ok := authz.(mqttsec.SubscriptionAuthorizer)
		require.True(t, ok, name)
		q, err := sa.AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: "dev/x", QoS: 2})
		require.NoError(t, err, name)
		require.Equal(t, byte(0), q, name)
		_, err = sa.AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: "#", QoS: 0})
		require.ErrorIs(t, err, acl.ErrWildcard, name)
	}
	// An authorizer without QoS decisions grants the QoS asked for.
	allowAll := mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })
	q, err := p.Wrap(allowAll).(mqttsec.SubscriptionAuthorizer).AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: "dev/x", QoS: 2})
	require.NoError(t, err)
	require.Equal(t, byte(2), q)
}
