package acl_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	fileadapter "github.com/casbin/casbin/v2/persist/file-adapter"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

// failingFilteredAdapter loads rules, and on a filtered load adds the rules
// it has and then fails, as a database adapter that loses its connection
// part-way does.
type failingFilteredAdapter struct {
	rules [][]string
	fail  bool
}

func (a *failingFilteredAdapter) LoadPolicy(m model.Model) error {
	for _, r := range a.rules {
		if err := persist.LoadPolicyArray(r, m); err != nil {
			return err
		}
	}
	return nil
}

func (a *failingFilteredAdapter) LoadFilteredPolicy(m model.Model, _ any) error {
	if err := a.LoadPolicy(m); err != nil {
		return err
	}
	if a.fail {
		return errors.New("connection lost")
	}
	return nil
}

func (a *failingFilteredAdapter) IsFiltered() bool             { return true }
func (a *failingFilteredAdapter) SavePolicy(model.Model) error { return errors.New("not implemented") }
func (a *failingFilteredAdapter) AddPolicy(string, string, []string) error {
	return errors.New("not implemented")
}
func (a *failingFilteredAdapter) RemovePolicy(string, string, []string) error {
	return errors.New("not implemented")
}
func (a *failingFilteredAdapter) RemoveFilteredPolicy(string, string, int, ...string) error {
	return errors.New("not implemented")
}

// A failed filtered load leaves the enforcer with the policy Casbin cleared
// and partly refilled: the index must not keep allowing the old policy.
func TestLoadFilteredPolicyFailureDoesNotKeepOldIndex(t *testing.T) {
	a := &failingFilteredAdapter{rules: [][]string{{"p", "alice", "a/#", "read", "allow"}}}
	e, err := casbin.NewEnforcer(acl.NewModel(), a)
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	require.NoError(t, e.LoadFilteredPolicy("anything"))
	require.True(t, c.Allowed("alice", "c", "read", "a/x"))

	a.rules, a.fail = [][]string{{"p", "bob", "b/#", "read", "allow"}}, true
	require.Error(t, e.LoadFilteredPolicy("anything"))
	for _, u := range []string{"alice", "bob"} {
		for _, tp := range []string{"a/x", "b/x"} {
			want, _ := e.Enforce(u, "c", tp, "read")
			if !want {
				require.False(t, c.Allowed(u, "c", "read", tp), "%s %s: Enforce denies, the index allows", u, tp)
			}
		}
	}
	require.False(t, c.Allowed("alice", "c", "read", "a/x"), "the old policy is gone")

	// A successful load mirrors the enforcer again.
	a.fail = false
	require.NoError(t, e.LoadFilteredPolicy("anything"))
	require.True(t, c.Allowed("bob", "c", "read", "b/x"))
}

// Mosquitto's "user *" section is for the user named "*"; the model's "*"
// subject is everyone, so the import must refuse it rather than widen it.
func TestParseMosquittoRefusesUserStar(t *testing.T) {
	_, err := acl.ParseMosquitto(strings.NewReader("user *\ntopic readwrite #\n"))
	require.ErrorIs(t, err, acl.ErrSyntax)
}

// WildcardPolicy.Wrap is an Authorizer of its own: a filter that still has
// its $share prefix must be judged by the filter inside it.
func TestWildcardPolicySharePrefix(t *testing.T) {
	allowAll := mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })
	p := &acl.WildcardPolicy{MinLevels: 1, SysSubjects: []string{"monitor"}}
	authz := p.Wrap(allowAll)
	user := &mqttsec.Client{ID: "c", Username: "bob"}
	for _, f := range []string{"$share/g/#", "$share/site/+/x", "$share/g/$SYS/#", "$share/x/#"} {
		require.ErrorIs(t, p.Check(user, f), acl.ErrWildcard, f)
		require.ErrorIs(t, authz.Authorize(context.Background(), user, mqttsec.Subscribe, f), acl.ErrWildcard, f)
	}
	require.NoError(t, authz.Authorize(context.Background(), user, mqttsec.Subscribe, "$share/g/site/#"))
	require.NoError(t, p.Check(user, "$share/g/site/#"))
}

// A Kubernetes ConfigMap volume changes the file by swapping a "..data"
// symlink: no event names the policy file itself.
func TestWatchFileSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	write := func(version, content string) {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, version), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, version, "policy.csv"), []byte(content), 0o600))
		require.NoError(t, os.Symlink(version, filepath.Join(dir, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	}
	write("v1", "p, alice, a/#, read, allow\n")
	path := filepath.Join(dir, "policy.csv")
	require.NoError(t, os.Symlink(filepath.Join("..data", "policy.csv"), path))
	e, err := casbin.NewEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	reloads := make(chan error, 10)
	w, err := acl.WatchFile(e, path, acl.WithDebounce(20*time.Millisecond), acl.WithReloadHook(func(err error) { reloads <- err }))
	require.NoError(t, err)
	defer w.Close()
	require.True(t, c.Allowed("alice", "c", "read", "a/x"))

	write("v2", "p, bob, b/#, read, allow\n")
	select {
	case err := <-reloads:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("no reload after the symlink swap: the revoked rule stays in force")
	}
	require.False(t, c.Allowed("alice", "c", "read", "a/x"))
	require.True(t, c.Allowed("bob", "c", "read", "b/x"))
}

// gateAdapter loads like its inner adapter, then waits for release.
type gateAdapter struct {
	persist.Adapter
	loaded, release chan struct{}
}

func (a *gateAdapter) LoadPolicy(m model.Model) error {
	err := a.Adapter.LoadPolicy(m)
	if a.loaded != nil {
		close(a.loaded)
		<-a.release
		a.loaded = nil
	}
	return err
}

// A SyncedEnforcer loads the adapter's policy under a read lock and installs
// it later under the write lock: a policy change made between the two goes
// to the model Casbin then throws away, and must not reach the index.
func TestConcurrentChangeDuringLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, alice, a/#, read, allow\n"), 0o600))
	gate := &gateAdapter{Adapter: fileadapter.NewAdapter(path)}
	e, err := casbin.NewSyncedEnforcer(acl.NewModel(), gate)
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)

	gate.loaded, gate.release = make(chan struct{}), make(chan struct{})
	loadDone := make(chan error)
	go func() { loadDone <- e.LoadPolicy() }()
	<-gate.loaded
	addDone := make(chan error)
	go func() {
		_, err := e.AddPolicy("mallory", "x/#", "read", "allow")
		addDone <- err
	}()
	time.Sleep(50 * time.Millisecond) // AddPolicy waits for the write lock
	close(gate.release)
	require.NoError(t, <-loadDone)
	require.NoError(t, <-addDone)

	for _, u := range []string{"alice", "mallory"} {
		for _, tp := range []string{"a/1", "x/1"} {
			want, err := e.Enforce(u, "c", tp, "read")
			require.NoError(t, err)
			require.Equal(t, want, c.Allowed(u, "c", "read", tp), "%s %s", u, tp)
		}
	}
	// Later changes are mirrored again.
	_, err = e.AddPolicy("bob", "b/#", "read", "allow")
	require.NoError(t, err)
	require.True(t, c.Allowed("bob", "c", "read", "b/1"))
	_, err = e.RemovePolicy("alice", "a/#", "read", "allow")
	require.NoError(t, err)
	require.False(t, c.Allowed("alice", "c", "read", "a/1"))
}

// Mosquitto expands %u and %c in pattern lines only, and never ${username}
// or ${clientid}: the model expands them in every rule, so importing such a
// line would give a client rights it chooses with its client ID.
func TestParseMosquittoRefusesPlaceholdersMosquittoKeepsLiteral(t *testing.T) {
	for _, in := range []string{
		"user carol\ntopic readwrite %c/#\n",
		"topic read users/%u/#\n",
		"pattern read ${clientid}/#\n",
		"user carol\ntopic read a/${username}\n",
	} {
		_, err := acl.ParseMosquitto(strings.NewReader(in))
		require.ErrorIs(t, err, acl.ErrSyntax, "%q", in)
	}
	rules, err := acl.ParseMosquitto(strings.NewReader("pattern read users/%u/%c\ntopic read 100%/x\n"))
	require.NoError(t, err)
	require.Len(t, rules, 2)
}

// A client ID or username that starts with '$' must not carry a pattern
// such as "%c/#" into the topics reserved to the server ($SYS/...).
func TestPlaceholderValueCannotReachDollarTopics(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{
		{"*", "%c/#", "readwrite", "allow"},
		{"*", "users/%u/#", "readwrite", "allow"},
		{"*", "$share/g/%u/#", "read", "allow"},
		{"ops", "$%c/x", "read", "allow"},
	})
	require.NoError(t, err)
	ctx := context.Background()
	for _, tc := range []struct {
		user, client, act, topic string
		want                     bool
	}{
		{"bob", "$SYS", "read", "$SYS/broker/version", false},
		{"bob", "$SYS", "write", "$SYS/x", false},
		{"bob", "$SYS", "read", "$SYS/#", false},
		{"bob", "$share", "read", "$share/#", false},
		{"$SYS", "c", "read", "$SYS/x", false},
		{"$SYS", "c", "read", "$share/grp/$SYS/x", false},
		{"$x", "c", "read", "users/$x/a", true}, // not the first level
		{"bob", "dev1", "read", "dev1/a", true},
		{"ops", "SYS", "read", "$SYS/x", true}, // the policy wrote the '$'
	} {
		want, err := e.Enforce(tc.user, tc.client, tc.topic, tc.act)
		require.NoError(t, err)
		require.Equal(t, tc.want, want, "Enforce %+v", tc)
		require.Equal(t, tc.want, c.Allowed(tc.user, tc.client, tc.act, tc.topic), "Allowed %+v", tc)
		cl := &mqttsec.Client{ID: tc.client, Username: tc.user}
		a := mqttsec.Receive
		if tc.act == "write" {
			a = mqttsec.Publish
		}
		require.Equal(t, tc.want, c.Bind(cl).Authorize(ctx, cl, a, tc.topic) == nil, "bound %+v", tc)
	}
	// Grants follow the same rule.
	g := &mqttsec.Client{ID: "$SYS", Username: "bob", Identity: &mqttsec.Identity{Grants: []mqttsec.Grant{{Topic: "%c/#", Access: mqttsec.Subscribe, Allow: true}}}}
	w, err := acl.NewCasbin(newEnforcer(t), acl.WithGrants(acl.GrantsWiden))
	require.NoError(t, err)
	require.Error(t, w.Authorize(ctx, g, mqttsec.Receive, "$SYS/x"))
	require.Error(t, w.Bind(g).Authorize(ctx, g, mqttsec.Receive, "$SYS/x"))
}
