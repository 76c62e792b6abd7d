package acl_test

import (
	"bufio"
	"errors"
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

// Lint reports broad wildcard grants, anonymous wildcards, %c rules and
// templates that can expand into $share, each with a stable ID and the
// line of the rule.
func TestLintSecurityFindings(t *testing.T) {
	policy := `p, x, #, readwrite, allow
p, ops, +/status, read, allow
p, w, $share/g/+/#, read, allow
p, "", #, read, allow
p, *, devices/%c/#, write, allow
p, *, devices/%c/secret, write, deny
p, *, $%c/x, read, allow
p, y, #, read, deny
p, z, $SYS/#, read, allow
p, *, $h%c/x, read, allow
`
	rules, groups, err := acl.ParsePolicy(strings.NewReader(policy))
	require.NoError(t, err)
	type f struct {
		id       string
		severity string
		line     int
	}
	var got []f
	for _, x := range acl.Lint(rules, groups) {
		got = append(got, f{x.ID, x.Severity, x.Line})
		require.Contains(t, x.String(), "["+x.ID+"]")
	}
	require.Equal(t, []f{
		{acl.FindingBroadWildcardGrant, acl.SeverityHigh, 1},
		{acl.FindingBroadWildcardGrant, acl.SeverityMedium, 2},
		{acl.FindingBroadWildcardGrant, acl.SeverityHigh, 3},
		{acl.FindingAnonymousWildcard, acl.SeverityHigh, 4},
		{acl.FindingClientIDTemplate, acl.SeverityMedium, 5},
		{acl.FindingClientIDTemplate, acl.SeverityMedium, 6},
		{acl.FindingClientIDTemplate, acl.SeverityMedium, 7},
		{acl.FindingTemplateSharePrefix, acl.SeverityLow, 7},
		{acl.FindingClientIDTemplate, acl.SeverityMedium, 10},
	}, got)

	// The same in a Mosquitto acl_file: the top section is anonymous.
	rules, err = acl.ParseMosquitto(strings.NewReader("topic read #\nuser alice\ntopic readwrite #\npattern readwrite devices/%c/#\npattern read fixed\n"))
	require.NoError(t, err)
	got = nil
	for _, x := range acl.Lint(rules, nil) {
		got = append(got, f{x.ID, x.Severity, x.Line})
	}
	require.Equal(t, []f{
		{acl.FindingAnonymousWildcard, acl.SeverityHigh, 1},
		{acl.FindingBroadWildcardGrant, acl.SeverityHigh, 3},
		{acl.FindingClientIDTemplate, acl.SeverityMedium, 4},
		{acl.FindingPatternWithoutPlaceholder, acl.SeverityLow, 5},
	}, got)
}

// A g line with more than two names or a comma is a syntax error: the
// index would deny every check.
func TestParsePolicyGroupLines(t *testing.T) {
	for _, in := range []string{"g, alice, ops, extra\n", "g, alice\n", "g, \"alice,x\", ops\n"} {
		_, _, err := acl.ParsePolicy(strings.NewReader(in))
		require.ErrorIs(t, err, acl.ErrSyntax, "%q", in)
		require.ErrorContains(t, err, "line 1")
	}
	_, g, err := acl.ParsePolicy(strings.NewReader("p, a, b, read, allow\ng, alice, ops\n"))
	require.NoError(t, err)
	require.Equal(t, [][2]string{{"alice", "ops"}}, g)
}

// FuzzParsePolicy checks that the CSV policy parser never panics, that its
// errors wrap ErrSyntax, and that every rule it returns prints to a line
// that parses back to the same rule.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"p, alice, a/#, read, allow\ng, alice, ops\n",
		"# comment\n\np, \"a,b\", \"x, y\", write, deny\n",
		"g, a, b, c\n",
		"p, \"\", #, read, allow\n",
		"p, a, \"q\"\"uote\", read, allow",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rules, groups, err := acl.ParsePolicy(strings.NewReader(in))
		if err != nil {
			if !errors.Is(err, acl.ErrSyntax) && !errors.Is(err, bufio.ErrTooLong) {
				t.Fatalf("error %v does not wrap ErrSyntax", err)
			}
			return
		}
		for _, g := range groups {
			require.NotContains(t, g[0]+g[1], ",")
		}
		var b strings.Builder
		for _, r := range rules {
			require.Positive(t, r.Line)
			b.WriteString(r.String())
			b.WriteByte('\n')
		}
		back, _, err := acl.ParsePolicy(strings.NewReader(b.String()))
		if err != nil {
			return // CSV cannot carry every byte (a bare '\r', say)
		}
		require.Len(t, back, len(rules))
		for i := range back {
			require.Equal(t, rules[i].Policy(), back[i].Policy())
		}
		_ = acl.Lint(rules, groups) // never panics
	})
}

// A rule written as a shared subscription means its inner filter: Lint
// compares that, not the "$share/..." text as a topic.
func TestLintSharedRules(t *testing.T) {
	policy := `p, a, x/#, read, allow
p, a, $share/g/x/y, read, allow
p, b, $share/h/$share/#, read, deny
p, b, $share/g/x, read, allow
`
	rules, groups, err := acl.ParsePolicy(strings.NewReader(policy))
	require.NoError(t, err)
	var got []string
	for _, f := range acl.Lint(rules, groups) {
		got = append(got, f.String())
	}
	require.Len(t, got, 1, strings.Join(got, "\n"))
	require.True(t, strings.HasPrefix(got[0], "line 2: shadowed by line 1"), got[0])
}
