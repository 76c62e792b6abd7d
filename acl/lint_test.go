package acl_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/acl"
)

func TestLint(t *testing.T) {
	policy := `p, operators, plant/#, read, allow
p, alice, plant/7/temp, read, allow
p, *, plant/+/alarm, readwrite, deny
p, bob, plant/3/alarm, read, allow
p, carol, x/#, read, allow
p, carol, x/#, readwrite, allow
p, dave, y, subscribe, allow
p, dave, y/#/z, read, allow
p, erin, %u/#, read, allow
p, erin, erin/x, read, allow
g, alice, operators
`
	rules, groups, err := acl.ParsePolicy(strings.NewReader(policy))
	require.NoError(t, err)
	var got []string
	for _, f := range acl.Lint(rules, groups) {
		got = append(got, f.String())
	}
	want := []string{
		"line 2: shadowed by line 1 (p, operators, plant/#, read, allow)",
		"line 4: overridden by deny rule on line 3 (p, *, plant/+/alarm, readwrite, deny)",
		"line 5: shadowed by line 6 (p, carol, x/#, readwrite, allow)",
		`line 7: act "subscribe" or eft "allow" never matches`,
		`line 8: topic "y/#/z" is not a valid filter`,
	}
	require.Len(t, got, len(want), strings.Join(got, "\n"))
	for i := range want {
		require.True(t, strings.HasPrefix(got[i], want[i]), "finding %d: %s", i, got[i])
	}
}
