package acl_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

func TestGrants(t *testing.T) {
	yes := true
	grants := []mqttsec.Grant{
		{Allow: false, Access: mqttsec.Publish, Topic: "dev/%c/cmd"},
		{Allow: true, Access: mqttsec.Publish | mqttsec.Subscribe, Topic: "dev/%c/#"},
		{Allow: true, Access: mqttsec.Publish, Topic: "extra/#", QoS: []byte{0, 1}, Retain: &yes},
	}
	type req struct {
		a     mqttsec.Access
		topic string
		msg   *mqttsec.Message
	}
	reqs := []req{
		{mqttsec.Publish, "dev/c1/data", nil},                                 // policy yes, grant yes
		{mqttsec.Publish, "dev/c1/cmd", nil},                                  // policy yes, grant deny
		{mqttsec.Receive, "dev/c1/data", nil},                                 // policy yes, subscribe grant covers receive
		{mqttsec.Publish, "other/x", nil},                                     // policy yes, no grant
		{mqttsec.Publish, "extra/x", nil},                                     // policy no, limited grant without message
		{mqttsec.Publish, "extra/x", &mqttsec.Message{QoS: 1, Retain: true}},  // policy no, grant matches
		{mqttsec.Publish, "extra/x", &mqttsec.Message{QoS: 2, Retain: true}},  // QoS outside the grant
		{mqttsec.Publish, "extra/x", &mqttsec.Message{QoS: 0, Retain: false}}, // retain differs
	}
	for _, tc := range []struct {
		name string
		mode acl.GrantMode
		want []bool
	}{
		{"narrow", acl.GrantsNarrow, []bool{true, false, true, false, false, false, false, false}},
		{"widen", acl.GrantsWiden, []bool{true, false, true, true, false, true, false, false}},
		{"ignore", acl.GrantsIgnore, []bool{true, true, true, true, false, false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnforcer(t)
			c, err := acl.NewCasbin(e, acl.WithGrants(tc.mode))
			require.NoError(t, err)
			_, err = e.AddPolicies([][]string{{"alice", "dev/#", "readwrite", "allow"}, {"alice", "other/#", "write", "allow"}})
			require.NoError(t, err)
			cl := &mqttsec.Client{ID: "c1", Username: "alice", Identity: &mqttsec.Identity{Subject: "alice", Grants: grants}}
			ctx := context.Background()
			bound := c.Bind(cl)
			for i, r := range reqs {
				for name, authz := range map[string]mqttsec.Authorizer{"unbound": c, "bound": bound} {
					var err error
					if r.msg != nil {
						m := *r.msg
						m.Topic = r.topic
						err = authz.(mqttsec.MessageAuthorizer).AuthorizeMessage(ctx, cl, &m)
					} else {
						err = authz.Authorize(ctx, cl, r.a, r.topic)
					}
					require.Equal(t, tc.want[i], err == nil, "%s request %d %+v: %v", name, i, r, err)
					if err != nil {
						require.ErrorIs(t, err, mqttsec.ErrNotAuthorized)
					}
				}
			}
			// Without grants (nil), the policy alone decides.
			plain := &mqttsec.Client{ID: "c1", Username: "alice", Identity: &mqttsec.Identity{Subject: "alice"}}
			require.NoError(t, c.Bind(plain).Authorize(ctx, plain, mqttsec.Publish, "dev/c1/cmd"))
		})
	}
}

func TestBoundAllocatesNothing(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{{"*", "%u/#", "readwrite", "allow"}, {"alice", "a/+/b", "read", "allow"}, {"*", "a/x/#", "read", "deny"}})
	require.NoError(t, err)
	_, err = e.AddGroupingPolicy("ops", "staff")
	require.NoError(t, err)
	cl := &mqttsec.Client{ID: "c1", Username: "alice"}
	withRoles := &mqttsec.Client{ID: "c2", Username: "bob", Identity: &mqttsec.Identity{Subject: "bob", Roles: []string{"ops"}}}
	ctx := context.Background()
	bound, boundRoles := c.Bind(cl), c.Bind(withRoles)
	msg := &mqttsec.Message{Topic: "bob/x", QoS: 1}
	allocs := testing.AllocsPerRun(100, func() {
		_ = bound.Authorize(ctx, cl, mqttsec.Receive, "alice/x/y")
		_ = bound.Authorize(ctx, cl, mqttsec.Receive, "a/y/b")
		_ = bound.Authorize(ctx, cl, mqttsec.Receive, "a/x/b")
		_ = c.Authorize(ctx, cl, mqttsec.Publish, "alice/z")
		_ = boundRoles.Authorize(ctx, withRoles, mqttsec.Receive, "bob/x")
		_ = boundRoles.(mqttsec.MessageAuthorizer).AuthorizeMessage(ctx, withRoles, msg)
	})
	require.Zero(t, allocs)
}
