package acl_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/stretchr/testify/require"
)

// benchPolicy returns n policy lines shaped like a fleet: ten rules per
// user, one deny in fifty, role rules, and a few rules for everyone.
func benchPolicy(n int) (p [][]string, g [][]string) {
	users := max(n/10, 1)
	acts := []string{"read", "write", "readwrite"}
	for i := range n - 24 {
		eft := "allow"
		if i%50 == 49 {
			eft = "deny"
		}
		p = append(p, []string{fmt.Sprintf("user%d", i%users), fmt.Sprintf("site%d/dev%d/+/telemetry", i%97, i), acts[i%3], eft})
	}
	for r := range 20 {
		p = append(p, []string{fmt.Sprintf("role%d", r), fmt.Sprintf("plant/role%d/#", r), "readwrite", "allow"})
	}
	p = append(p,
		[]string{"*", "public/#", "read", "allow"},
		[]string{"*", "%u/#", "readwrite", "allow"},
		[]string{"*", "devices/%c/#", "readwrite", "allow"},
		[]string{"*", "public/secret/#", "read", "deny"},
	)
	for u := range users {
		g = append(g, []string{fmt.Sprintf("user%d", u), fmt.Sprintf("role%d", u%20)})
	}
	return p, g
}

func benchEnforcer(b *testing.B, n int) (*casbin.Enforcer, *acl.Casbin) {
	b.Helper()
	e, err := casbin.NewEnforcer(acl.NewModel())
	require.NoError(b, err)
	e.EnableLog(false)
	p, g := benchPolicy(n)
	_, err = e.AddPolicies(p)
	require.NoError(b, err)
	_, err = e.AddGroupingPolicies(g)
	require.NoError(b, err)
	c, err := acl.NewCasbin(e)
	require.NoError(b, err)
	return e, c
}

// The request: user7 publishes on one of its own rules (allowed after
// scanning every rule in Casbin).
const (
	benchUser   = "user7"
	benchClient = "c7"
	benchTopic  = "site7/dev7/x/telemetry"
)

// BenchmarkAuthorize compares Casbin's Enforce with the index on the same
// enforcer and the same request, at 10,000 and 100,000 rules. The
// "speedup" metric is Enforce ns/op divided by Authorize ns/op, measured in
// this run.
func BenchmarkAuthorize(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		e, c := benchEnforcer(b, n)
		ok, err := e.Enforce(benchUser, benchClient, benchTopic, "write")
		require.NoError(b, err)
		require.True(b, ok)
		var enforceNs float64
		b.Run(fmt.Sprintf("rules=%d/Enforce", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = e.Enforce(benchUser, benchClient, benchTopic, "write")
			}
			enforceNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		cl := &mqttsec.Client{ID: benchClient, Username: benchUser}
		ctx := context.Background()
		bound := c.Bind(cl)
		require.NoError(b, bound.Authorize(ctx, cl, mqttsec.Publish, benchTopic))
		require.NoError(b, c.Authorize(ctx, cl, mqttsec.Publish, benchTopic))
		report := func(b *testing.B, parallel bool) {
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if enforceNs > 0 && ns > 0 {
				b.ReportMetric(enforceNs/ns, "speedup")
			}
		}
		b.Run(fmt.Sprintf("rules=%d/Bound", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if bound.Authorize(ctx, cl, mqttsec.Publish, benchTopic) != nil {
					b.Fatal("denied")
				}
			}
			report(b, false)
		})
		b.Run(fmt.Sprintf("rules=%d/BoundParallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if bound.Authorize(ctx, cl, mqttsec.Publish, benchTopic) != nil {
						b.Error("denied")
						return
					}
				}
			})
			report(b, true)
		})
		b.Run(fmt.Sprintf("rules=%d/UnboundParallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if c.Authorize(ctx, cl, mqttsec.Publish, benchTopic) != nil {
						b.Error("denied")
						return
					}
				}
			})
			report(b, true)
		})
		// The same request from a connection whose credential carries a
		// role instead of a g line: resolved at Bind, same per-check cost.
		roleCl := &mqttsec.Client{ID: benchClient, Username: "token-7", Identity: &mqttsec.Identity{Subject: "token-7", Roles: []string{"role7"}}}
		roleBound := c.Bind(roleCl)
		require.NoError(b, roleBound.Authorize(ctx, roleCl, mqttsec.Publish, "plant/role7/x"))
		b.Run(fmt.Sprintf("rules=%d/BoundIdentityRoles", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if roleBound.Authorize(ctx, roleCl, mqttsec.Publish, "plant/role7/x") != nil {
					b.Fatal("denied")
				}
			}
		})
		// A SUBSCRIBE with a QoS-limited grant (once per filter, not per
		// message).
		grantCl := &mqttsec.Client{ID: benchClient, Username: benchUser, Identity: &mqttsec.Identity{Subject: benchUser,
			Grants: []mqttsec.Grant{{Allow: true, Access: mqttsec.Subscribe, Topic: "public/#", QoS: []byte{0, 1}}}}}
		grantBound := c.Bind(grantCl).(mqttsec.SubscriptionAuthorizer)
		sub := &mqttsec.Subscription{Filter: "public/news/+", QoS: 2}
		if q, err := grantBound.AuthorizeSubscription(ctx, grantCl, sub); err != nil || q != 1 {
			b.Fatal(q, err)
		}
		b.Run(fmt.Sprintf("rules=%d/BoundSubscribeQoS", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := grantBound.AuthorizeSubscription(ctx, grantCl, sub); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rules=%d/BoundDenyParallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if bound.Authorize(ctx, cl, mqttsec.Receive, "public/secret/x") == nil {
						b.Error("allowed")
						return
					}
				}
			})
		})
	}
}

// BenchmarkPolicyUpdate measures one-rule policy changes at 100,000 rules:
// Index is the index patch alone (what NewCasbin adds to a Casbin policy
// change), AddRemove is e.AddPolicy plus e.RemovePolicy through Casbin
// (Casbin's own bookkeeping included), Rebuild is a full recompile.
func BenchmarkPolicyUpdate(b *testing.B) {
	e, c := benchEnforcer(b, 100_000)
	rule := []string{"user7", "new/rule/+/x", "read", "allow"}
	b.Run("rules=100000/Index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.PatchForTest(rule, 1)
			c.PatchForTest(rule, -1)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/change")
	})
	b.Run("rules=100000/AddRemove", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := e.AddPolicy(rule); !ok || err != nil {
				b.Fatal(ok, err)
			}
			if ok, err := e.RemovePolicy(rule); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/change")
	})
	b.Run("rules=100000/AddRemoveGrouping", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if ok, err := e.AddGroupingPolicy("user7", "role3"); !ok || err != nil {
				b.Fatal(ok, err)
			}
			if ok, err := e.RemoveGroupingPolicy("user7", "role3"); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N), "ns/change")
	})
	b.Run("rules=100000/Rebuild", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = c.Refresh()
		}
	})
	cl := &mqttsec.Client{ID: "c7", Username: "user7"}
	require.Error(b, c.Authorize(context.Background(), cl, mqttsec.Receive, "new/rule/a/x"))
}
