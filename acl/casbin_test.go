package acl_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/casbin/casbin/v2"
	fileadapter "github.com/casbin/casbin/v2/persist/file-adapter"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

func TestAuthorizeAccessMapping(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicies([][]string{
		{"alice", "r/#", "read", "allow"},
		{"alice", "w/#", "write", "allow"},
		{"alice", "rw/#", "readwrite", "allow"},
	})
	require.NoError(t, err)
	cl := &mqttsec.Client{ID: "c1", Username: "alice"}
	ctx := context.Background()
	for _, tc := range []struct {
		a     mqttsec.Access
		topic string
		ok    bool
	}{
		{mqttsec.Publish, "w/x", true},
		{mqttsec.Publish, "r/x", false},
		{mqttsec.Subscribe, "r/#", true},
		{mqttsec.Subscribe, "w/#", false},
		{mqttsec.Receive, "r/x", true},
		{mqttsec.Receive, "w/x", false},
		{mqttsec.Publish, "rw/x", true},
		{mqttsec.Receive, "rw/x", true},
		{mqttsec.Subscribe, "#", false},
		{mqttsec.Publish | mqttsec.Receive, "rw/x", false},
	} {
		for name, authz := range map[string]mqttsec.Authorizer{"unbound": c, "bound": c.Bind(cl)} {
			err := authz.Authorize(ctx, cl, tc.a, tc.topic)
			if tc.ok {
				require.NoError(t, err, "%s %v %s", name, tc.a, tc.topic)
				continue
			}
			require.ErrorIs(t, err, mqttsec.ErrNotAuthorized, "%s %v %s", name, tc.a, tc.topic)
			require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
		}
	}
}

func TestNewCasbinRejectsOtherModels(t *testing.T) {
	e, err := casbin.NewEnforcer("testdata/rbac_model.conf")
	require.NoError(t, err)
	_, err = acl.NewCasbin(e)
	require.ErrorIs(t, err, acl.ErrModel)
}

// TestFileAdapterLoadPolicy covers the common path: an enforcer on a CSV
// policy file, reloaded with LoadPolicy after the file changed.
func TestFileAdapterLoadPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, alice, a/#, read, allow\n"), 0o600))
	e, err := casbin.NewEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	require.True(t, c.Allowed("alice", "c", "read", "a/b"))
	gen := c.Generation()

	require.NoError(t, os.WriteFile(path, []byte("p, bob, a/#, read, allow\ng, alice, bob\np, *, a/secret, read, deny\n"), 0o600))
	require.NoError(t, e.LoadPolicy())
	require.Greater(t, c.Generation(), gen)
	require.True(t, c.Allowed("alice", "c", "read", "a/b"))
	require.False(t, c.Allowed("alice", "c", "read", "a/secret"))
	require.False(t, c.Allowed("carol", "c", "read", "a/b"))

	// SavePolicy goes through the wrapped adapter to the file.
	_, err = e.AddPolicy("carol", "c/#", "write", "allow")
	require.NoError(t, err)
	require.True(t, c.Allowed("carol", "c", "write", "c/x"))
	require.NoError(t, e.SavePolicy())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(b), "carol")
}

func TestPolicyAPIKeepsIndexInSync(t *testing.T) {
	e := newEnforcer(t)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	cl := &mqttsec.Client{ID: "c1", Username: "alice"}
	bound := c.Bind(cl)
	ctx := context.Background()
	allowed := func() bool { return bound.Authorize(ctx, cl, mqttsec.Receive, "x/y") == nil }

	steps := []struct {
		name string
		do   func() error
		want bool
	}{
		{"AddPolicy", func() error { _, err := e.AddPolicy("ops", "x/#", "read", "allow"); return err }, false},
		{"AddGroupingPolicy", func() error { _, err := e.AddGroupingPolicy("alice", "ops"); return err }, true},
		{"UpdatePolicy", func() error {
			_, err := e.UpdatePolicy([]string{"ops", "x/#", "read", "allow"}, []string{"ops", "x/+", "write", "allow"})
			return err
		}, false},
		{"UpdatePolicy back", func() error {
			_, err := e.UpdatePolicy([]string{"ops", "x/+", "write", "allow"}, []string{"ops", "x/+", "readwrite", "allow"})
			return err
		}, true},
		{"AddPoliciesEx with a repeat", func() error {
			_, err := e.AddPoliciesEx([][]string{{"ops", "x/+", "readwrite", "allow"}, {"*", "x/y", "read", "deny"}})
			return err
		}, false},
		{"RemovePolicies", func() error {
			_, err := e.RemovePolicies([][]string{{"*", "x/y", "read", "deny"}})
			return err
		}, true},
		{"RemoveFilteredPolicy", func() error { _, err := e.RemoveFilteredPolicy(0, "ops"); return err }, false},
		{"AddPolicies", func() error {
			_, err := e.AddPolicies([][]string{{"alice", "x/#", "read", "allow"}, {"bob", "x/#", "read", "allow"}})
			return err
		}, true},
		{"RemoveGroupingPolicy keeps own rule", func() error { _, err := e.RemoveGroupingPolicy("alice", "ops"); return err }, true},
		{"DeleteUser", func() error { _, err := e.DeleteUser("alice"); return err }, false},
	}
	for _, s := range steps {
		require.NoError(t, s.do(), s.name)
		want, _ := e.Enforce("alice", "c1", "x/y", "read")
		require.Equal(t, s.want, want, "%s: Enforce", s.name)
		require.Equal(t, s.want, allowed(), "%s: bound Authorize", s.name)
		require.Equal(t, s.want, c.Allowed("alice", "c1", "read", "x/y"), "%s: Allowed", s.name)
	}

	// Changes Casbin does not report need Refresh.
	e.ClearPolicy()
	require.NoError(t, c.Refresh())
	require.False(t, c.Allowed("bob", "c1", "read", "x/y"))
}

func TestSyncedEnforcer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, alice, a/#, read, allow\n"), 0o600))
	e, err := casbin.NewSyncedEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	_, err = e.AddPolicy("bob", "b/#", "read", "allow")
	require.NoError(t, err)
	require.True(t, c.Allowed("bob", "c", "read", "b/x"))
	// The file adapter does not auto-save: a reload drops bob's rule.
	require.NoError(t, e.LoadPolicy())
	require.False(t, c.Allowed("bob", "c", "read", "b/x"))
	require.True(t, c.Allowed("alice", "c", "read", "a/x"))
	ok, err := e.Enforce("alice", "c", "a/x", "read")
	require.NoError(t, err)
	require.True(t, ok)
}

type countingWatcher struct {
	updates  int
	callback func(string)
}

func (w *countingWatcher) SetUpdateCallback(f func(string)) error { w.callback = f; return nil }
func (w *countingWatcher) Update() error                          { w.updates++; return nil }
func (w *countingWatcher) Close()                                 {}

func TestWithWatcherChains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, alice, a/#, read, allow\n"), 0o600))
	e, err := casbin.NewEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	w := &countingWatcher{}
	c, err := acl.NewCasbin(e, acl.WithWatcher(w))
	require.NoError(t, err)
	_, err = e.AddPolicy("bob", "b/#", "read", "allow")
	require.NoError(t, err)
	require.Equal(t, 1, w.updates, "the chained watcher is notified")
	// Another node changed the shared policy: the watcher's callback
	// reloads it, and the index follows.
	require.NoError(t, os.WriteFile(path, []byte("p, carol, c/#, read, allow\n"), 0o600))
	require.NotNil(t, w.callback)
	w.callback("changed elsewhere")
	require.True(t, c.Allowed("carol", "x", "read", "c/1"))
	require.False(t, c.Allowed("alice", "x", "read", "a/1"))
}

func TestLoadPolicyFailureKeepsOldIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.csv")
	require.NoError(t, os.WriteFile(path, []byte("p, alice, a/#, read, allow\n"), 0o600))
	e, err := casbin.NewEnforcer(acl.NewModel(), fileadapter.NewAdapter(path))
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	// Casbin refuses a g line with one name and keeps the old policy.
	require.NoError(t, os.WriteFile(path, []byte("p, bob, a/#, read, allow\ng, bob\n"), 0o600))
	require.Error(t, e.LoadPolicy())
	for _, u := range []string{"alice", "bob"} {
		want, _ := e.Enforce(u, "c", "a/x", "read")
		require.Equal(t, want, c.Allowed(u, "c", "read", "a/x"), u)
	}
}
