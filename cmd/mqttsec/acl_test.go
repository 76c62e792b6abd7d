package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func runACL(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := execute(newACLCmd(), "", args...)
	return out, exitCode(err)
}

const testPolicy = `p, alice, a/b/#, read, allow
p, operators, a/b/secret/#, readwrite, deny
p, *, public/#, read, allow
p, *, devices/%c/#, write, allow
g, alice, operators
`

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestACLCheck(t *testing.T) {
	policy := writeFile(t, "policy.csv", testPolicy)
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"allow", []string{"alice", "c1", "read", "a/b/c"}, 0, "allow\nrule:   p, alice, a/b/#, read, allow\n"},
		{"filter wider than the rule", []string{"alice", "c1", "read", "a/#"}, 1, "deny\nreason: no rule allows it (default deny)\n"},
		{"deny through a role", []string{"alice", "c1", "read", "a/b/secret/x"}, 1, "deny\nrule:   p, operators, a/b/secret/#, readwrite, deny\n"},
		{"pattern", []string{"bob", "dev9", "write", "devices/dev9/t"}, 0, "allow\nrule:   p, *, devices/%c/#, write, allow\n"},
		{"bad act", []string{"bob", "dev9", "subscribe", "x"}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := runACL(t, append([]string{"check", "--policy", policy}, tc.args...)...)
			require.Equal(t, tc.code, code, out)
			require.Contains(t, out, tc.out)
		})
	}
	_, code := runACL(t, "check", "--policy", filepath.Join(t.TempDir(), "missing.csv"), "a", "b", "read", "x")
	require.Equal(t, 2, code)
}

// The built-in model is the default: --model-default is not needed (nor
// advertised); it is still accepted, as a deprecated no-op.
func TestACLCheckModelDefaultNotRequired(t *testing.T) {
	policy := writeFile(t, "policy.csv", testPolicy)
	help, code := runACL(t, "check", "--help")
	require.Equal(t, 0, code)
	require.NotContains(t, help, "model-default")
	out, code := runACL(t, "check", "--policy", policy, "alice", "c1", "read", "a/b/c")
	require.Equal(t, 0, code, out)
	out, code = runACL(t, "check", "--policy", policy, "--model-default", "alice", "c1", "read", "a/b/c")
	require.Equal(t, 0, code, out)
	// A model file must be the built-in model.
	other := writeFile(t, "model.conf", "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\nm = r.sub == p.sub\n")
	out, code = runACL(t, "check", "--policy", policy, "--model", other, "alice", "c1", "read", "a/b/c")
	require.Equal(t, 2, code, out)
}

// --role gives the user the roles a credential would carry, as the broker
// does with a JWT roles claim; a user named like a role is denied.
func TestACLCheckRoles(t *testing.T) {
	policy := writeFile(t, "policy.csv", testPolicy+"p, operators, plant/#, read, allow\n")
	out, code := runACL(t, "check", "--policy", policy, "dev9", "c1", "read", "plant/1")
	require.Equal(t, 1, code, out)
	out, code = runACL(t, "check", "--policy", policy, "--role", "operators", "dev9", "c1", "read", "plant/1")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "rule:   p, operators, plant/#, read, allow")
	out, code = runACL(t, "check", "--policy", policy, "operators", "c1", "read", "plant/1")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "role name")
}

func TestACLCheckMosquitto(t *testing.T) {
	f := writeFile(t, "acl_file", "topic read public/#\nuser alice\ntopic readwrite alice/#\npattern write devices/%c/#\n")
	out, code := runACL(t, "check", "--mosquitto", f, "alice", "c1", "write", "alice/x")
	require.Equal(t, 0, code, out)
	out, code = runACL(t, "check", "--mosquitto", f, "", "anon", "read", "public/x")
	require.Equal(t, 0, code, out)
	out, code = runACL(t, "check", "--mosquitto", f, "alice", "c1", "read", "public/x")
	require.Equal(t, 1, code, out)
}

func TestACLLint(t *testing.T) {
	clean := writeFile(t, "clean.csv", testPolicy)
	out, code := runACL(t, "lint", "--clientid-bound", clean)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "no findings")
	out, code = runACL(t, "lint", clean)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "clean.csv:4: medium clientid-pattern-unbound: a rule with %c gives these rights to any client that picks a matching client ID")

	// Broad wildcard grants, in both formats.
	wide := writeFile(t, "wide.csv", "p, x, #, readwrite, allow\n")
	out, code = runACL(t, "lint", wide)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "wide.csv:1: medium broad-wildcard-grant: \"x\" may read and publish to every topic tree")
	anon := writeFile(t, "anon_acl", "topic readwrite #\nuser bob\ntopic read #\n")
	out, code = runACL(t, "lint", anon)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "anon_acl:1: high anonymous-wildcard-acl: anonymous clients may read and publish to every topic tree")
	require.Contains(t, out, "anon_acl:3: medium broad-wildcard-grant: \"bob\" may read every topic tree")

	shadowed := writeFile(t, "shadowed.csv", testPolicy+"p, alice, a/b/c, read, allow\np, alice, a/b/secret/x, read, allow\n")
	out, code = runACL(t, "lint", "--clientid-bound", shadowed)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "shadowed.csv:6: low acl-shadowed: shadowed by line 1")
	require.Contains(t, out, "shadowed.csv:7: low acl-shadowed: overridden by deny rule on line 2")

	mosq := writeFile(t, "acl_file", "user bob\ntopic read x/#\ntopic read x/y\npattern read fixed/topic\npattern read %u/in\n")
	out, code = runACL(t, "lint", mosq)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "acl_file:3: low acl-shadowed: shadowed by line 2")
	require.Contains(t, out, "acl_file:4: medium pattern-without-placeholder: pattern without %u or %c")
	require.NotContains(t, out, "acl_file:5:")

	bad := writeFile(t, "bad", "topic maybe x\n")
	_, code = runACL(t, "lint", bad)
	require.Equal(t, 2, code)
}
