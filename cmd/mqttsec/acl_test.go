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
			out, code := runACL(t, append([]string{"check", "--policy", policy, "--model-default"}, tc.args...)...)
			require.Equal(t, tc.code, code, out)
			require.Contains(t, out, tc.out)
		})
	}
	_, code := runACL(t, "check", "--policy", filepath.Join(t.TempDir(), "missing.csv"), "a", "b", "read", "x")
	require.Equal(t, 2, code)
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
	out, code := runACL(t, "lint", clean)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "no findings")

	shadowed := writeFile(t, "shadowed.csv", testPolicy+"p, alice, a/b/c, read, allow\np, alice, a/b/secret/x, read, allow\n")
	out, code = runACL(t, "lint", shadowed)
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
