package acl_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/casbin/casbin/v2"
	fileadapter "github.com/casbin/casbin/v2/persist/file-adapter"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/topic"
)

// requireSame checks the index (unbound and bound) against Enforce for
// each request.
func requireSame(t *testing.T, e casbin.IEnforcer, c *acl.Casbin, reqs ...[4]string) {
	t.Helper()
	ctx := context.Background()
	for _, r := range reqs {
		user, client, act, tp := r[0], r[1], r[2], r[3]
		want, err := e.Enforce(user, client, tp, act)
		if err != nil {
			want = false
		}
		want = want && documented(e, user)
		cl := &mqttsec.Client{ID: client, Username: user}
		a := mqttsec.Receive
		if act == acl.ActWrite {
			a = mqttsec.Publish
		}
		require.Equal(t, want, c.Allowed(user, client, act, tp), "Allowed %q", r)
		require.Equal(t, want, c.Authorize(ctx, cl, a, tp) == nil, "Authorize %q", r)
		require.Equal(t, want, c.Bind(cl).Authorize(ctx, cl, a, tp) == nil, "bound %q", r)
		requireExplained(t, c.Explain(user, client, act, tp), want, r)
	}
}

// requireExplained checks that an explanation agrees with the decision: an
// allow names an allow rule, a deny names a deny rule or none.
func requireExplained(t testing.TB, d acl.Decision, want bool, req any) {
	t.Helper()
	require.Equal(t, want, d.Allowed, "Explain %q", req)
	if want {
		require.Len(t, d.Rule, 4, "Explain %q: %s", req, d.Reason)
		require.Equal(t, acl.EftAllow, d.Rule[3], "Explain %q: %s", req, d.Reason)
		return
	}
	if d.Rule != nil {
		require.Equal(t, acl.EftDeny, d.Rule[3], "Explain %q names an allow rule for a denial: %s", req, d.Reason)
	}
}

// Placeholder values can make an expanded filter longer than a topic may
// be: such an expansion is invalid and never applies, in the index too.
func TestExpansionLongerThanMaxLen(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{{"*", "%u/%u", "read", "allow"}, {"*", "x/%u/#", "read", "allow"}, {"*", "$share/%u/%u/#", "write", "allow"}})
	require.NoError(t, err)
	long := strings.Repeat("u", topic.MaxLen/2)
	longer := long + "u"
	var reqs [][4]string
	for _, u := range []string{long[:100], long[:topic.MaxLen/2-1], long, longer} {
		for _, tp := range []string{u + "/" + u, "x/" + u + "/a", "x/" + u, u + "/a", u, u + "/x", "+/+", "#", "x/+/#"} {
			if len(tp) <= topic.MaxLen {
				reqs = append(reqs, [4]string{u, "c", "read", tp}, [4]string{u, "c", "write", tp})
			}
		}
	}
	requireSame(t, e, c, reqs...)
	require.True(t, c.Allowed(long[:topic.MaxLen/2-1], "c", "read", long[:topic.MaxLen/2-1]+"/"+long[:topic.MaxLen/2-1]))
	short := long[:100]
	require.True(t, c.Allowed(short, "c", "write", short+"/x"))
	require.False(t, c.Allowed(long, "c", "write", long+"/x"), "$share/%u/%u/# would be longer than 65535 bytes")
	require.True(t, c.Allowed(long, "c", "read", long+"/"+long), "%u/%u is 65535 bytes long")
}

// documented reports whether the model of this package lets user have
// rights at all under e's current policy (see doc.go): a subject may not be
// "*" or a role name, and no g line Casbin cannot keep consistently.
func documented(e casbin.IEnforcer, user string) bool { return documentedFor(e)(user) }

// documentedFor is documented for many users of one policy.
func documentedFor(e casbin.IEnforcer) func(user string) bool {
	g, _ := e.GetGroupingPolicy()
	roles := map[string]bool{acl.Everyone: true}
	for _, l := range g {
		if len(l) > 2 || strings.Contains(strings.Join(l, ""), ",") {
			return func(string) bool { return false } // see TestGroupLineWithThreeFields
		}
		if len(l) == 2 {
			roles[l[1]] = true // see TestSubjectMayNotBeRole
		}
	}
	return func(user string) bool { return !roles[user] }
}

// A subject (the user name after authentication) equal to "*" or to a role
// name does not take that role's rules: it is denied everything. Raw
// Casbin would give a user named "operators" the rules of operators.
func TestSubjectMayNotBeRole(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e, acl.WithGrants(acl.GrantsWiden), acl.WithRoles("tokenonly"))
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{
		{"operators", "plant/#", "readwrite", "allow"},
		{"tokenonly", "t/#", "read", "allow"},
		{"*", "public/#", "read", "allow"},
		{"alice", "alice/#", "read", "allow"},
	})
	require.NoError(t, err)
	_, err = e.AddGroupingPolicy("alice", "operators")
	require.NoError(t, err)
	ctx := context.Background()
	for _, user := range []string{"operators", "*", "tokenonly"} {
		raw, err := e.Enforce(user, "c", "public/x", "read")
		require.NoError(t, err)
		require.True(t, raw, "raw Casbin allows %q", user)
		wide := &mqttsec.Identity{Subject: user, Grants: []mqttsec.Grant{{Allow: true, Access: mqttsec.Publish | mqttsec.Subscribe, Topic: "#"}}}
		cl := &mqttsec.Client{ID: "c", Username: user, Identity: wide}
		for _, tp := range []string{"public/x", "plant/1", "t/1"} {
			require.False(t, c.Allowed(user, "c", "read", tp), "%q %s", user, tp)
			require.ErrorIs(t, c.Authorize(ctx, cl, mqttsec.Receive, tp), mqttsec.ErrNotAuthorized)
			require.ErrorIs(t, c.Bind(cl).Authorize(ctx, cl, mqttsec.Receive, tp), mqttsec.ErrNotAuthorized)
			require.ErrorIs(t, c.AuthorizeMessage(ctx, cl, &mqttsec.Message{Topic: tp}), mqttsec.ErrNotAuthorized)
			_, err := c.Bind(cl).(mqttsec.SubscriptionAuthorizer).AuthorizeSubscription(ctx, cl, &mqttsec.Subscription{Filter: tp})
			require.ErrorIs(t, err, mqttsec.ErrNotAuthorized)
		}
		require.Contains(t, c.Explain(user, "c", "read", "public/x").Reason, "role name")
	}
	requireSame(t, e, c,
		[4]string{"alice", "c", "read", "plant/1"},
		[4]string{"operators", "c", "read", "plant/1"},
		[4]string{"*", "c", "read", "public/1"},
		[4]string{"bob", "c", "read", "public/1"},
	)
	require.True(t, c.Allowed("alice", "c", "read", "plant/1"))
	// alice becomes a role: she loses her rules; a bound connection sees
	// it on its next check.
	cl := &mqttsec.Client{ID: "c", Username: "alice"}
	bound := c.Bind(cl)
	require.NoError(t, bound.Authorize(ctx, cl, mqttsec.Receive, "alice/x"))
	_, err = e.AddGroupingPolicy("bob", "alice")
	require.NoError(t, err)
	require.Error(t, bound.Authorize(ctx, cl, mqttsec.Receive, "alice/x"))
	requireSame(t, e, c, [4]string{"alice", "c", "read", "alice/x"}, [4]string{"bob", "c", "read", "alice/x"})
	require.True(t, c.Allowed("bob", "c", "read", "alice/x"), "members keep the role's rules")
	_, err = e.RemoveGroupingPolicy("bob", "alice")
	require.NoError(t, err)
	require.NoError(t, bound.Authorize(ctx, cl, mqttsec.Receive, "alice/x"))
}

// Casbin keys rules by their fields joined with commas: removing
// ("bob,x", "y/#", ...) removes ("bob", "x,y/#", ...). The index must follow
// what Casbin removed, not what it was told.
func TestCommaKeyCollision(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicy("bob", "x,y/#", "read", "allow")
	require.NoError(t, err)
	reqs := [][4]string{{"bob", "c", "read", "x,y/z"}, {"bob,x", "c", "read", "y/z"}}
	requireSame(t, e, c, reqs...)
	require.True(t, c.Allowed("bob", "c", "read", "x,y/z"))

	ok, err := e.RemovePolicy("bob,x", "y/#", "read", "allow") // a rule that never existed
	require.NoError(t, err)
	require.True(t, ok, "Casbin removed bob's rule through the colliding key")
	requireSame(t, e, c, reqs...)
	require.False(t, c.Allowed("bob", "c", "read", "x,y/z"), "the removed rule must be gone from the index")

	// A real re-add is seen.
	_, err = e.AddPolicy("bob", "x,y/#", "read", "allow")
	require.NoError(t, err)
	requireSame(t, e, c, reqs...)
	require.True(t, c.Allowed("bob", "c", "read", "x,y/z"))

	// The same through UpdatePolicy and role links.
	_, err = e.UpdatePolicy([]string{"bob,x", "y/#", "read", "allow"}, []string{"bob", "q/#", "read", "allow"})
	require.NoError(t, err)
	requireSame(t, e, c, append(reqs, [4]string{"bob", "c", "read", "q/1"})...)

	// Role links: Casbin's role manager acts on the names it is given
	// while its g lines lose the colliding line, so the two disagree. The
	// index denies everything while that can be the case.
	_, err = e.AddPolicy("ops,x", "o/#", "read", "allow")
	require.NoError(t, err)
	_, err = e.AddGroupingPolicy("carol", "ops,x")
	require.NoError(t, err)
	requireSame(t, e, c, [4]string{"carol", "c", "read", "o/1"}, [4]string{"bob", "c", "read", "q/1"})
	require.False(t, c.Allowed("bob", "c", "read", "q/1"))
	_, err = e.RemoveGroupingPolicy("carol,ops", "x")
	require.NoError(t, err)
	g, err := e.GetGroupingPolicy()
	require.NoError(t, err)
	require.Empty(t, g, "Casbin removed carol's g line")
	ok, err = e.Enforce("carol", "c", "o/1", "read")
	require.NoError(t, err)
	require.True(t, ok, "but its role manager kept the link")
	require.False(t, c.Allowed("carol", "c", "read", "o/1"))
	require.False(t, c.Allowed("bob", "c", "read", "q/1"), "denied until a load rebuilds Casbin's role links")
	require.Contains(t, c.Explain("bob", "c", "read", "q/1").Reason, "everything is denied")
}

// A g line with more than two fields: Casbin links its first two names,
// and removing it drops the link another line still gives.
func TestGroupLineWithThreeFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, ops, o/#, read, allow\np, bob, b/#, read, allow\ng, carol, ops\n"), 0o600))
	e, err := casbin.NewEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	require.True(t, c.Allowed("carol", "c", "read", "o/1"))
	_, err = e.AddGroupingPolicy("carol", "ops", "extra")
	require.NoError(t, err)
	require.False(t, c.Allowed("bob", "c", "read", "b/1"))
	_, err = e.RemoveGroupingPolicy("carol", "ops", "extra")
	require.NoError(t, err)
	ok, err := e.Enforce("carol", "c", "o/1", "read")
	require.NoError(t, err)
	require.False(t, ok, "Casbin dropped the link although the line \"g, carol, ops\" remains")
	require.False(t, c.Allowed("carol", "c", "read", "o/1"))
	require.NoError(t, c.Refresh())
	require.False(t, c.Allowed("carol", "c", "read", "o/1"), "a Refresh does not rebuild Casbin's role links")
	// A load does: both agree again.
	require.NoError(t, e.LoadPolicy())
	requireSame(t, e, c, [4]string{"carol", "c", "read", "o/1"}, [4]string{"bob", "c", "read", "b/1"})
	require.True(t, c.Allowed("carol", "c", "read", "o/1"))
}

// A removal the index cannot find (the index and Casbin disagree about
// what existed) must not drive counts negative: the index rebuilds.
func TestPatchOfAbsentRuleRebuilds(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicy("alice", "a/#", "read", "allow")
	require.NoError(t, err)
	c.PatchForTest([]string{"alice", "a/#", "read", "allow"}, -1) // as if Casbin reported a removal it did not make
	c.PatchForTest([]string{"alice", "a/#", "read", "allow"}, -1)
	c.PatchForTest([]string{"bob", "b/#", "read", "allow"}, -1)
	requireSame(t, e, c, [4]string{"alice", "c", "read", "a/1"}, [4]string{"bob", "c", "read", "b/1"})
	_, err = e.AddPolicy("bob", "b/#", "read", "allow")
	require.NoError(t, err)
	requireSame(t, e, c, [4]string{"alice", "c", "read", "a/1"}, [4]string{"bob", "c", "read", "b/1"})
	require.True(t, c.Allowed("bob", "c", "read", "b/1"))
}

// Refresh reads the enforcer's model; a load that replaced it meanwhile
// must not be undone (a revoked rule restored).
func TestRefreshDuringLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, alice, a/#, read, allow\np, bob, b/#, read, allow\n"), 0o600))
	e, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	// Pause the load after the index saw the new policy and before
	// Casbin installs it.
	gate := &gateAdapter{Adapter: e.GetAdapter(), loaded: make(chan struct{}), release: make(chan struct{})}
	e.SetAdapter(gate)
	require.NoError(t, os.WriteFile(path, []byte("p, bob, b/#, read, allow\n"), 0o600)) // alice revoked
	loadDone := make(chan error)
	go func() { loadDone <- e.LoadPolicy() }()
	<-gate.loaded
	require.NoError(t, c.Refresh())
	close(gate.release)
	require.NoError(t, <-loadDone)
	requireSame(t, e, c, [4]string{"alice", "c", "read", "a/1"}, [4]string{"bob", "c", "read", "b/1"})
	require.False(t, c.Allowed("alice", "c", "read", "a/1"), "the revoked rule is back")
}

// Refresh and loads run concurrently without a data race (go test -race)
// and end with the index equal to the enforcer.
func TestRefreshConcurrentWithLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, alice, a/#, read, allow\n"), 0o600))
	e, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 30 {
			_ = e.LoadPolicy()
		}
	})
	wg.Go(func() {
		for range 30 {
			_ = c.Refresh()
		}
	})
	wg.Wait()
	requireSame(t, e, c, [4]string{"alice", "c", "read", "a/1"})
}

// "/#" is covered by "+/+/#" (every name it matches has two levels or
// more): a deny rule for "+/+/#" denies it, in Enforce, the index and
// Explain alike.
func TestSubscribeSlashHash(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{{"alice", "#", "read", "allow"}, {"alice", "+/+/#", "read", "deny"}, {"bob", "+/#", "read", "allow"}})
	require.NoError(t, err)
	require.True(t, topic.Covers("+/+/#", "/#"))
	requireSame(t, e, c,
		[4]string{"alice", "c", "read", "/#"},
		[4]string{"alice", "c", "read", "#"},
		[4]string{"alice", "c", "read", "a"},
		[4]string{"bob", "c", "read", "/#"},
		[4]string{"bob", "c", "read", "#"},
	)
	require.False(t, c.Allowed("alice", "c", "read", "/#"))
	d := c.Explain("alice", "c", "read", "/#")
	require.False(t, d.Allowed)
	require.Equal(t, []string{"alice", "+/+/#", "read", "deny"}, d.Rule)
}

// A topic name "$share/g/x" is a '$' topic, not "x": a rule for "#" does
// not reach it, a rule for "x" does not either.
func TestShareNamesAreLiteral(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e, acl.WithGrants(acl.GrantsWiden))
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{
		{"alice", "#", "readwrite", "allow"},
		{"alice", "x", "readwrite", "allow"},
		{"bob", "$share/g/x", "read", "allow"},
		{"carol", "$share/h/$share/g/#", "readwrite", "allow"},
	})
	require.NoError(t, err)
	requireSame(t, e, c,
		[4]string{"alice", "c", "write", "$share/g/x"},
		[4]string{"alice", "c", "read", "$share/g/x"},
		[4]string{"alice", "c", "write", "x"},
		[4]string{"bob", "c", "read", "x"},
		[4]string{"bob", "c", "read", "$share/g/x"},
		[4]string{"carol", "c", "write", "$share/g/x"},
		[4]string{"carol", "c", "read", "x"},
		[4]string{"carol", "c", "write", "$share/g/"},
		[4]string{"carol", "c", "write", "$share/"},
	)
	require.False(t, c.Allowed("alice", "c", "write", "$share/g/x"))
	require.True(t, c.Allowed("bob", "c", "read", "x"), "a shared rule allows its inner filter")
	require.True(t, c.Allowed("carol", "c", "write", "$share/g/x"), "a rule may name a '$share/...' topic literally")
	// Grants take names literally too.
	cl := &mqttsec.Client{ID: "c", Username: "dave", Identity: &mqttsec.Identity{Subject: "dave",
		Grants: []mqttsec.Grant{{Allow: true, Access: mqttsec.Publish, Topic: "#"}}}}
	require.Error(t, c.Authorize(context.Background(), cl, mqttsec.Publish, "$share/g/x"))
	require.Error(t, c.Bind(cl).Authorize(context.Background(), cl, mqttsec.Publish, "$share/g/x"))
	require.NoError(t, c.Bind(cl).Authorize(context.Background(), cl, mqttsec.Publish, "x"))
}

// A placeholder value may not turn a rule into a shared subscription:
// "$%c/g/%u" for client "share" would be "$share/g/<user>", that is the
// filter "<user>" (and "$SYS" for a user named so).
func TestTemplateExpandingIntoShare(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{
		{"*", "$%c/g/%u", "read", "allow"},
		{"*", "$%c/g/%u/#", "write", "allow"},
		{"*", "$%c", "read", "allow"},
		{"*", "$share/%c/%u/#", "read", "allow"},
	})
	require.NoError(t, err)
	var reqs [][4]string
	for _, u := range []string{"alice", "$SYS", "$share"} {
		for _, cl := range []string{"share", "x", "$share"} {
			for _, tp := range []string{u, u + "/a", "$share/g/" + u, "$" + cl + "/g/" + u, "$share", "$" + cl, "#", "$SYS/#"} {
				reqs = append(reqs, [4]string{u, cl, "read", tp}, [4]string{u, cl, "write", tp})
			}
		}
	}
	requireSame(t, e, c, reqs...)
	require.False(t, acl.MQTTMatch("alice", "$%c/g/%u", "alice", "share"), "a client ID made the rule a shared subscription")
	require.False(t, acl.MQTTMatch("$SYS", "$%c/g/%u", "$SYS", "share"))
	require.True(t, acl.MQTTMatch("$xx/g/alice", "$%c/g/%u", "alice", "xx"))
	require.True(t, acl.MQTTMatch("$share", "$%c", "alice", "share"), "a one-level \"$share\" is a topic, not a shared subscription")
	require.True(t, acl.MQTTMatch("alice/x", "$share/%c/%u/#", "alice", "grp"), "the policy wrote the $share prefix")
	require.False(t, acl.MQTTMatch("$SYS/x", "$share/%c/%u/#", "$SYS", "grp"))
}

// Placeholder values are substituted one by one: two halves of a UTF-8
// character never join into one.
func TestSplitUTF8Placeholders(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{{"*", "%u%c", "read", "allow"}, {"*", "p/%u%c/#", "write", "allow"}})
	require.NoError(t, err)
	requireSame(t, e, c,
		[4]string{"\xc3", "\xa9", "read", "é"},
		[4]string{"\xc3", "\xa9", "write", "p/é/x"},
		[4]string{"a", "b", "read", "ab"},
	)
	require.False(t, c.Allowed("\xc3", "\xa9", "read", "é"))
}

// TestOneRuleTries compares the trie of every one-rule policy built from a
// small alphabet (empty levels, '$' lead bytes, "$share", templates) with
// MQTTMatch, and so with topic.Covers, for every request built from another
// small alphabet.
func TestOneRuleTries(t *testing.T) {
	ruleLevels := []string{"a", "", "+", "#", "$s", "$share", "g", "%u", "$%c", "%c"}
	reqLevels := []string{"a", "", "+", "#", "$s", "$share", "g"}
	rules := buildTopics(ruleLevels, 3, true)
	for _, r := range buildTopics([]string{"a", "", "+", "#", "$s", "$share", "%u"}, 2, true) {
		rules = append(rules, "$share/g/"+r, "$share/%c/"+r)
	}
	reqs := buildTopics(reqLevels, 3, true)
	reqs = append(reqs, "$share/", "$share/a", "$share//#", "$share/+", "$share/$share/")
	pairs := [][2]string{{"a", "g"}, {"$s", "share"}, {"g", "$share"}, {"", "a"}}
	n := 0
	for _, rule := range rules {
		e := newEnforcer(t)
		c, err := acl.NewCasbin(e)
		require.NoError(t, err)
		_, err = e.AddPolicy("*", rule, "read", "allow")
		require.NoError(t, err)
		for _, p := range pairs {
			for _, tp := range reqs {
				want := acl.MQTTMatch(tp, rule, p[0], p[1])
				if !topic.HasPlaceholder(rule) && want != topic.Covers(rule, tp) {
					t.Fatalf("MQTTMatch(%q, %q) = %v, Covers %v", tp, rule, want, !want)
				}
				if got := c.Allowed(p[0], p[1], "read", tp); got != want {
					t.Fatalf("rule %q, user %q, client %q, request %q: index %v, MQTTMatch %v", rule, p[0], p[1], tp, got, want)
				}
				n++
			}
		}
		// Enforce agrees on a sample.
		for i := 0; i < len(reqs); i += 37 {
			want, err := e.Enforce("a", "g", reqs[i], "read")
			require.NoError(t, err)
			require.Equal(t, want, c.Allowed("a", "g", "read", reqs[i]), "rule %q request %q", rule, reqs[i])
		}
	}
	t.Logf("%d rules, %d checks", len(rules), n)
}

// buildTopics returns every valid topic filter (or name) of 1..depth
// levels over the given levels; template levels are kept when the filter
// is valid as written.
func buildTopics(levels []string, depth int, filter bool) []string {
	var out []string
	var rec func(prefix []string)
	rec = func(prefix []string) {
		if len(prefix) > 0 {
			s := strings.Join(prefix, "/")
			err := topic.ValidateName(s)
			if filter {
				err = topic.ValidateFilter(s)
			}
			if err == nil {
				out = append(out, s)
			}
		}
		if len(prefix) == depth {
			return
		}
		for _, l := range levels {
			rec(append(prefix[:len(prefix):len(prefix)], l))
		}
	}
	rec(nil)
	return out
}
