package acl_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

// Roles carried by the credential (a JWT "roles" claim,
// auth.Anonymous(roles...)) count as role links of the connection: a token
// with roles ["operators"] gets the operators' rules.
func TestIdentityRoles(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{
		{"operators", "plant/+/alarm", "read", "allow"},
		{"admins", "plant/#", "readwrite", "allow"},
		{"auditors", "plant/7/#", "read", "deny"},
		{"", "public/#", "read", "allow"},
	})
	require.NoError(t, err)
	_, err = e.AddGroupingPolicies([][]string{{"operators", "staff"}, {"staff", "auditors"}})
	require.NoError(t, err)
	_, err = e.AddPolicy("staff", "staff/#", "read", "allow")
	require.NoError(t, err)
	ctx := context.Background()
	dev := &mqttsec.Client{ID: "d1", Username: "device-9", Identity: &mqttsec.Identity{Subject: "device-9", Roles: []string{"operators"}}}
	bound := c.Bind(dev)
	for _, tc := range []struct {
		a    mqttsec.Access
		t    string
		want bool
	}{
		{mqttsec.Receive, "plant/3/alarm", true}, // operators
		{mqttsec.Subscribe, "plant/+/alarm", true},
		{mqttsec.Receive, "staff/x", true},        // operators -> staff (a g line)
		{mqttsec.Receive, "plant/7/alarm", false}, // staff -> auditors deny
		{mqttsec.Publish, "plant/3/alarm", false},
		{mqttsec.Receive, "public/x", false}, // not anonymous
	} {
		require.Equal(t, tc.want, bound.Authorize(ctx, dev, tc.a, tc.t) == nil, "bound %v %s", tc.a, tc.t)
		require.Equal(t, tc.want, c.Authorize(ctx, dev, tc.a, tc.t) == nil, "unbound %v %s", tc.a, tc.t)
	}
	// The same user without the role has none of it.
	plain := &mqttsec.Client{ID: "d1", Username: "device-9", Identity: &mqttsec.Identity{Subject: "device-9"}}
	require.Error(t, c.Bind(plain).Authorize(ctx, plain, mqttsec.Receive, "plant/3/alarm"))
	require.Error(t, c.Authorize(ctx, plain, mqttsec.Receive, "plant/3/alarm"))
	// Messages too.
	adm := &mqttsec.Client{ID: "a1", Username: "root", Identity: &mqttsec.Identity{Subject: "root", Roles: []string{"admins"}}}
	m := &mqttsec.Message{Topic: "plant/1/cmd", QoS: 1}
	require.NoError(t, c.AuthorizeMessage(ctx, adm, m))
	require.NoError(t, c.Bind(adm).(mqttsec.MessageAuthorizer).AuthorizeMessage(ctx, adm, m))
	// An anonymous identity with roles.
	anon := &mqttsec.Client{ID: "x", Identity: &mqttsec.Identity{Method: mqttsec.MethodAnonymous, Roles: []string{"operators"}}}
	require.NoError(t, c.Bind(anon).Authorize(ctx, anon, mqttsec.Receive, "public/x"))
	require.NoError(t, c.Bind(anon).Authorize(ctx, anon, mqttsec.Receive, "plant/1/alarm"))
	// A role link added later reaches bound connections.
	_, err = e.AddGroupingPolicy("operators", "admins")
	require.NoError(t, err)
	require.NoError(t, bound.Authorize(ctx, dev, mqttsec.Publish, "plant/3/alarm"))
	// Explain names the rule.
	d := c.ExplainRoles("device-9", "d1", []string{"operators"}, "read", "plant/3/alarm")
	require.True(t, d.Allowed)
	require.Equal(t, []string{"operators", "plant/+/alarm", "read", "allow"}, d.Rule)
}

// The roles a credential carries are resolved as Casbin resolves g lines:
// at most ten links deep, counted from the subject.
func TestIdentityRolesHierarchyDepth(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	for i := range 12 {
		_, err := e.AddGroupingPolicy(fmt.Sprintf("r%d", i), fmt.Sprintf("r%d", i+1))
		require.NoError(t, err)
		_, err = e.AddPolicy(fmt.Sprintf("r%d", i+1), fmt.Sprintf("t/%d", i+1), "read", "allow")
		require.NoError(t, err)
	}
	shadow := shadowEnforcer(t, e)
	for _, roles := range [][]string{{"r0"}, {"r3"}, {"r0", "r5"}, {"r9", "r1"}} {
		cl := &mqttsec.Client{ID: "c", Username: "u", Identity: &mqttsec.Identity{Subject: "u", Roles: roles}}
		for i := range 13 {
			tp := fmt.Sprintf("t/%d", i)
			want := withRoles(t, shadow, "u", roles, func() bool { ok, _ := shadow.Enforce("u", "c", tp, "read"); return ok })
			require.Equal(t, want, c.Bind(cl).Authorize(context.Background(), cl, mqttsec.Receive, tp) == nil, "%v %s", roles, tp)
			require.Equal(t, want, c.Authorize(context.Background(), cl, mqttsec.Receive, tp) == nil, "%v %s", roles, tp)
		}
	}
}

// shadowEnforcer returns a second enforcer with e's policy, where identity
// roles can be added as g lines without touching e's index.
func shadowEnforcer(t testing.TB, e casbin.IEnforcer) *casbin.Enforcer {
	t.Helper()
	s := newEnforcer(t)
	_, err := acl.NewCasbin(s) // registers mqttMatch and mqttAct
	require.NoError(t, err)
	p, _ := e.GetPolicy()
	g, _ := e.GetGroupingPolicy()
	if len(p) > 0 {
		_, err = s.AddPolicies(p)
		require.NoError(t, err)
	}
	if len(g) > 0 {
		_, err = s.AddGroupingPolicies(g)
		require.NoError(t, err)
	}
	return s
}

// withRoles runs f on shadow with the g lines (user, role) added for each
// identity role, then removes the ones it added.
func withRoles(t testing.TB, shadow *casbin.Enforcer, user string, roles []string, f func() bool) bool {
	t.Helper()
	var added [][]string
	for _, r := range roles {
		ok, err := shadow.AddGroupingPolicy(user, r)
		require.NoError(t, err)
		if ok {
			added = append(added, []string{user, r})
		}
	}
	defer func() {
		for _, l := range added {
			_, err := shadow.RemoveGroupingPolicy(l)
			require.NoError(t, err)
		}
	}()
	return f()
}

// TestDifferentialIdentityRoles compares the index, given identity roles,
// with Enforce on an enforcer that has the equivalent g lines.
func TestDifferentialIdentityRoles(t *testing.T) {
	ctx := context.Background()
	idRoles := append([]string{"extra", "*", ""}, diffRoles...)
	for seed := range uint64(12) {
		r := rand.New(rand.NewPCG(seed, 17))
		e := newEnforcer(t)
		c, err := acl.NewCasbin(e)
		require.NoError(t, err)
		for range 10 + r.IntN(20) {
			_, _ = e.AddPolicy(randRule(r))
		}
		_, _ = e.AddPolicy("extra", randFilter(r, commonLevels), "readwrite", "allow")
		for range r.IntN(6) {
			_, _ = e.AddGroupingPolicy(randGroup(r))
		}
		shadow := shadowEnforcer(t, e)
		allowed := 0
		for range 150 {
			user, client := diffUsers[r.IntN(4)], diffClients[r.IntN(3)]
			var roles []string
			for range r.IntN(3) {
				roles = append(roles, idRoles[r.IntN(len(idRoles))])
			}
			tp := randFilter(r, reqCommon)
			act, a := "read", mqttsec.Receive
			if r.IntN(2) == 0 {
				act, a = "write", mqttsec.Publish
			}
			want := withRoles(t, shadow, user, roles, func() bool {
				ok, err := shadow.Enforce(user, client, tp, act)
				return err == nil && ok
			}) && documented(e, user)
			if want {
				allowed++
			}
			cl := &mqttsec.Client{ID: client, Username: user, Identity: &mqttsec.Identity{Subject: user, Roles: roles}}
			gotA := c.Authorize(ctx, cl, a, tp) == nil
			gotB := c.Bind(cl).Authorize(ctx, cl, a, tp) == nil
			gotE := c.ExplainRoles(user, client, roles, act, tp).Allowed
			if gotA != want || gotB != want || gotE != want {
				t.Fatalf("seed %d: %q (roles %q) %s %q: Enforce with g lines %v, Authorize %v, bound %v, Explain %v\npolicy:\n%s",
					seed, user, roles, act, tp, want, gotA, gotB, gotE, dump(e))
			}
		}
		t.Logf("seed %d: %d of 150 allowed", seed, allowed)
	}
}
