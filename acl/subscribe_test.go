package acl_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

// A grant's QoS list is honoured on subscribe: the QoS granted is the
// highest level, at most the one asked for, that the grants (and in narrow
// mode the policy) allow; none denies with 0x87.
func TestAuthorizeSubscriptionQoS(t *testing.T) {
	grants := []mqttsec.Grant{
		{Allow: true, Access: mqttsec.Subscribe, Topic: "dev/%c/#", QoS: []byte{0, 1}},
		{Allow: true, Access: mqttsec.Subscribe, Topic: "hi/#", QoS: []byte{2}},
		{Allow: false, Access: mqttsec.Subscribe, Topic: "mixed/#", QoS: []byte{2}},
		{Allow: true, Access: mqttsec.Subscribe, Topic: "mixed/#"},
		{Allow: true, Access: mqttsec.Publish, Topic: "pubonly/#"},
		{Allow: true, Access: mqttsec.Subscribe, Topic: "any/#"},
	}
	type req struct {
		filter string
		qos    byte
	}
	reqs := []req{
		{"dev/c1/x", 2},   // 0: grant limited to 0, 1
		{"dev/c1/#", 0},   // 1
		{"hi/x", 1},       // 2: only QoS 2 allowed, 1 asked
		{"hi/x", 2},       // 3
		{"mixed/x", 2},    // 4: QoS 2 denied by the first grant, 1 allowed by the second
		{"pubonly/x", 1},  // 5: no subscribe grant
		{"any/x", 2},      // 6
		{"policyonly", 1}, // 7: the policy allows, no grant
		{"dev/c2/x", 1},   // 8: another client's topic
	}
	const deny = 0xff
	for _, tc := range []struct {
		name string
		mode acl.GrantMode
		want []byte
	}{
		{"narrow", acl.GrantsNarrow, []byte{1, 0, deny, 2, 1, deny, 2, deny, deny}},
		// At QoS 2 no grant applies to dev/c1/x: the policy decides, as
		// for a publish at QoS 2.
		{"widen", acl.GrantsWiden, []byte{2, 0, 1, 2, 1, 1, 2, 1, deny}},
		{"ignore", acl.GrantsIgnore, []byte{2, 0, 1, 2, 2, 1, 2, 1, deny}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnforcer(t)
			c, err := acl.NewCasbin(e, acl.WithGrants(tc.mode))
			require.NoError(t, err)
			for _, f := range []string{"dev/c1/#", "hi/#", "mixed/#", "pubonly/#", "any/#", "policyonly"} {
				_, err = e.AddPolicy("alice", f, "read", "allow")
				require.NoError(t, err)
			}
			cl := &mqttsec.Client{ID: "c1", Username: "alice", Identity: &mqttsec.Identity{Subject: "alice", Grants: grants}}
			ctx := context.Background()
			bound := c.Bind(cl).(mqttsec.SubscriptionAuthorizer)
			for i, r := range reqs {
				for name, authz := range map[string]mqttsec.SubscriptionAuthorizer{"unbound": c, "bound": bound} {
					sub := &mqttsec.Subscription{Filter: r.filter, QoS: r.qos}
					q, err := authz.AuthorizeSubscription(ctx, cl, sub)
					if tc.want[i] == deny {
						require.ErrorIs(t, err, mqttsec.ErrNotAuthorized, "%s request %d %+v", name, i, r)
						require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
						continue
					}
					require.NoError(t, err, "%s request %d %+v", name, i, r)
					require.Equal(t, tc.want[i], q, "%s request %d %+v", name, i, r)
				}
			}
		})
	}
}

// Without grants the policy decides and the QoS asked for is granted; a
// denial of the policy denies whatever the QoS.
func TestAuthorizeSubscriptionPolicy(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{{"alice", "a/#", "read", "allow"}, {"alice", "a/secret/#", "read", "deny"}})
	require.NoError(t, err)
	cl := &mqttsec.Client{ID: "c1", Username: "alice", Identity: &mqttsec.Identity{Subject: "alice"}}
	ctx := context.Background()
	for _, authz := range []mqttsec.SubscriptionAuthorizer{c, c.Bind(cl).(mqttsec.SubscriptionAuthorizer)} {
		for qos := range byte(3) {
			q, err := authz.AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: "a/b", QoS: qos})
			require.NoError(t, err)
			require.Equal(t, qos, q)
			_, err = authz.AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: "a/secret/+", QoS: qos})
			require.ErrorIs(t, err, mqttsec.ErrNotAuthorized)
		}
		_, err := authz.AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: "a/b", QoS: 3})
		require.ErrorIs(t, err, mqttsec.ErrNotAuthorized)
	}
	// The bound path allocates nothing.
	bound := c.Bind(cl).(mqttsec.SubscriptionAuthorizer)
	sub := &mqttsec.Subscription{Filter: "a/b", QoS: 1}
	require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = bound.AuthorizeSubscription(ctx, cl, sub) }))
}

// Through a Guard: the QoS of the SUBACK is the one the grant allows, and
// the Guard keeps using the bound authorizer's answer.
func TestGuardSubscribeHonoursGrantQoS(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicy("*", "dev/%c/#", "readwrite", "allow")
	require.NoError(t, err)
	g := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodJWT, Grants: []mqttsec.Grant{
				{Allow: true, Access: mqttsec.Subscribe | mqttsec.Publish, Topic: "dev/%c/#", QoS: []byte{0, 1}},
			}}, nil
		}),
		Authorizer: c,
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	ctx := context.Background()
	s, err := g.Connect(ctx, mqttsec.Client{ID: "d7", Username: "device-7", Protocol: 5}, mqttsec.Credentials{}, nil)
	require.NoError(t, err)
	defer g.Disconnect(s, 0)
	q, err := g.Subscribe(ctx, s, mqttsec.Subscription{Filter: "dev/d7/cmd", QoS: 2})
	require.NoError(t, err)
	require.Equal(t, byte(1), q, "the grant allows QoS 0 and 1 only")
	q, err = g.Subscribe(ctx, s, mqttsec.Subscription{Filter: "$share/grp/dev/d7/#", QoS: 1})
	require.NoError(t, err)
	require.Equal(t, byte(1), q)
	_, err = g.Subscribe(ctx, s, mqttsec.Subscription{Filter: "dev/d8/cmd", QoS: 0})
	require.ErrorIs(t, err, mqttsec.ErrNotAuthorized)
}
