package acl_test

import (
	"os"
	"strings"
	"testing"

	"github.com/casbin/casbin/v2"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/stretchr/testify/require"
)

func TestParseMosquitto(t *testing.T) {
	f, err := os.Open("testdata/acl_file")
	require.NoError(t, err)
	defer f.Close()
	rules, err := acl.ParseMosquitto(f)
	require.NoError(t, err)
	var got []string
	for _, r := range rules {
		got = append(got, r.String())
	}
	require.Equal(t, []string{
		`p, "", public/#, read, allow`,
		`p, alice, alice/#, readwrite, allow`,
		`p, alice, alice/secret/#, readwrite, deny`,
		`p, alice, shared/cmd, write, allow`,
		`p, bob, shared/#, read, allow`,
		`p, *, devices/%c/#, readwrite, allow`,
		`p, *, users/%u/inbox, read, allow`,
	}, got)
	require.Equal(t, 2, rules[0].Line)
	require.True(t, rules[5].Pattern)
}

func TestParseMosquittoForms(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"no access means readwrite", "topic a/b", []string{`p, "", a/b, readwrite, allow`}},
		{"access word alone is a topic", "topic read", []string{`p, "", read, readwrite, allow`}},
		{"topic keeps inner spaces", "user u\ntopic write a b/c  ", []string{`p, u, a b/c, write, allow`}},
		{"leading spaces and blank lines", "\n   \n  topic read x\n", []string{`p, "", x, read, allow`}},
		{"comment in first column", "# topic read x\ntopic deny y", []string{`p, "", y, readwrite, deny`}},
		{"username with spaces", "user  a b \ntopic c", []string{`p, a b, c, readwrite, allow`}},
		{"no trailing newline", "pattern write %u/x", []string{`p, *, %u/x, write, allow`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := acl.ParseMosquitto(strings.NewReader(tc.in))
			require.NoError(t, err)
			var got []string
			for _, r := range rules {
				got = append(got, r.String())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseMosquittoErrors(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{"topic", "line 1: topic without a topic"},
		{"\n\ntopic maybe x", "line 3: invalid access \"maybe\""},
		{"topic read a/#/b", "line 1: invalid topic \"a/#/b\""},
		{"user", "line 1: user without a name"},
		{"top read x", "line 1: unknown keyword \"top\""},
		{" # indented comment", "line 1: unknown keyword \"#\""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := acl.ParseMosquitto(strings.NewReader(tc.in))
			require.ErrorIs(t, err, acl.ErrSyntax)
			require.ErrorContains(t, err, tc.msg)
		})
	}
}

func TestMosquittoAdapter(t *testing.T) {
	e, err := casbin.NewEnforcer(acl.NewModel(), acl.MosquittoAdapter{Path: "testdata/acl_file"})
	require.NoError(t, err)
	c, err := acl.NewCasbin(e)
	require.NoError(t, err)
	for _, tc := range []struct {
		user, client, act, topic string
		want                     bool
	}{
		{"", "anon", "read", "public/x", true},
		{"", "anon", "write", "public/x", false},
		{"alice", "c1", "read", "public/x", false},
		{"alice", "c1", "write", "alice/x", true},
		{"alice", "c1", "read", "alice/secret/x", false},
		{"alice", "c1", "write", "shared/cmd", true},
		{"bob", "c2", "read", "shared/cmd", true},
		{"bob", "c2", "write", "shared/cmd", false},
		{"bob", "dev7", "write", "devices/dev7/t", true},
		{"", "dev7", "write", "devices/dev7/t", true},
		{"bob", "dev7", "write", "devices/dev8/t", false},
		{"bob", "x", "read", "users/bob/inbox", true},
		{"", "x", "read", "users//inbox", false},
	} {
		want, _ := e.Enforce(tc.user, tc.client, tc.topic, tc.act)
		require.Equal(t, tc.want, want, "Enforce %+v", tc)
		require.Equal(t, tc.want, c.Allowed(tc.user, tc.client, tc.act, tc.topic), "%+v", tc)
	}
}

// FuzzParseMosquitto checks that the parser never panics, that every rule
// it returns is well-formed, and that its rules survive a round trip
// through the Casbin CSV format.
func FuzzParseMosquitto(f *testing.F) {
	for _, s := range []string{
		"topic read a/b\nuser alice\ntopic write alice/#\npattern readwrite %u/%c/#\n",
		"topic deny $SYS/#\n# comment\n\n  user  bob  \ntopic x",
		"topic read \"q,uoted\"/x",
		"user\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rules, err := acl.ParseMosquitto(strings.NewReader(in))
		if err != nil {
			require.ErrorIs(t, err, acl.ErrSyntax)
			return
		}
		var b strings.Builder
		for _, r := range rules {
			require.Contains(t, []string{"read", "write", "readwrite"}, r.Act)
			require.Contains(t, []string{"allow", "deny"}, r.Eft)
			require.Positive(t, r.Line)
			b.WriteString(r.String())
			b.WriteByte('\n')
		}
		back, _, err := acl.ParsePolicy(strings.NewReader(b.String()))
		if err != nil {
			// Casbin's CSV reader cannot carry every byte (a bare '\r', say).
			return
		}
		require.Len(t, back, len(rules))
		for i := range back {
			require.Equal(t, rules[i].Policy(), back[i].Policy())
		}
	})
}
