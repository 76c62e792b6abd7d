package bridge

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/topic"
)

// TestRemapMosquittoTable checks the valid rows of the remapping table of
// mosquitto.conf(5) and its examples, both ways.
func TestRemapMosquittoTable(t *testing.T) {
	cases := []struct {
		m             Mapping
		local, remote string
	}{
		{Mapping{Pattern: "pattern", LocalPrefix: "L/", RemotePrefix: "R/"}, "L/pattern", "R/pattern"},
		{Mapping{Pattern: "pattern", LocalPrefix: "L/"}, "L/pattern", "pattern"},
		{Mapping{Pattern: "pattern", RemotePrefix: "R/"}, "pattern", "R/pattern"},
		{Mapping{Pattern: "pattern"}, "pattern", "pattern"},
		{Mapping{Pattern: "", LocalPrefix: "local", RemotePrefix: "remote"}, "local", "remote"},
		{Mapping{Pattern: "#", LocalPrefix: "local/topic/", RemotePrefix: "remote/topic/"}, "local/topic/a/b", "remote/topic/a/b"},
		{Mapping{Pattern: "clients/total", LocalPrefix: "test/mosquitto/org/", RemotePrefix: "$SYS/broker/"}, "test/mosquitto/org/clients/total", "$SYS/broker/clients/total"},
		{Mapping{Pattern: "sensors/#", RemotePrefix: "site1/"}, "sensors/a/temp", "site1/sensors/a/temp"},
		{Mapping{Pattern: "+/x", LocalPrefix: "a/"}, "a/b/x", "b/x"},
	}
	for _, c := range cases {
		c.m.Direction = Both
		ms := []Mapping{c.m}
		got, r, ok := remap(routes(ms, true), c.local)
		require.True(t, ok, "%+v out %q", c.m, c.local)
		require.Equal(t, c.remote, got, "%+v out", c.m)
		require.Equal(t, 0, r.index)
		got, _, ok = remap(routes(ms, false), c.remote)
		require.True(t, ok, "%+v in %q", c.m, c.remote)
		require.Equal(t, c.local, got, "%+v in", c.m)
		_, ok = matchRoute(routes(ms, true), c.local)
		require.True(t, ok)
	}
}

func TestRemapFirstMatchAndMisses(t *testing.T) {
	ms := []Mapping{
		{Pattern: "a/#", Direction: Out, RemotePrefix: "first/"},
		{Pattern: "a/b", Direction: Out, RemotePrefix: "second/"},
		{Pattern: "#", Direction: Out, LocalPrefix: "p/", RemotePrefix: ""},
		{Pattern: "in/#", Direction: In},
	}
	rs := routes(ms, true)
	require.Len(t, rs, 3)
	got, r, ok := remap(rs, "a/b")
	require.True(t, ok)
	require.Equal(t, "first/a/b", got) // the first mapping wins, as in Mosquitto
	require.Equal(t, 0, r.index)
	_, _, ok = remap(rs, "in/x") // an in mapping does not forward out
	require.False(t, ok)
	// "p/#" matches "p", which lacks the prefix "p/": not forwarded.
	_, _, ok = remap(rs, "p")
	require.False(t, ok)
	// "p/" + "#" on "p/" leaves an empty topic: not forwarded.
	_, _, ok = remap(rs, "p/")
	require.False(t, ok)
	_, ok = matchRoute(rs, "p/")
	require.False(t, ok)
	got, _, ok = remap(rs, "p/x")
	require.True(t, ok)
	require.Equal(t, "x", got)
	// A mapped topic longer than the MQTT limit is not forwarded.
	long := strings.Repeat("x", topic.MaxLen-2)
	_, _, ok = remap(rs, "a/"+long)
	require.False(t, ok)
}

func TestReverseTopic(t *testing.T) {
	ms := []Mapping{
		{Pattern: "req/#", Direction: Out, RemotePrefix: "site1/"},
		{Pattern: "replies/#", Direction: In, LocalPrefix: "cloud/", RemotePrefix: "site1/"},
	}
	out := routes(ms, true)
	in := routes(ms, false)
	// A local request names the local reply topic cloud/replies/d1; the
	// responder on the remote must publish to site1/replies/d1, which the
	// in mapping brings back to cloud/replies/d1.
	got, ok := reverseTopic(in, "cloud/replies/d1")
	require.True(t, ok)
	require.Equal(t, "site1/replies/d1", got)
	back, _, ok := remap(in, got)
	require.True(t, ok)
	require.Equal(t, "cloud/replies/d1", back)
	_, ok = reverseTopic(in, "elsewhere/x")
	require.False(t, ok)
	_, ok = reverseTopic(out, "nothing")
	require.False(t, ok)
}

// TestOverlapsBruteForce compares overlaps with its definition, some name
// matching both filters, over every filter of up to three levels on a small
// alphabet.
func TestOverlapsBruteForce(t *testing.T) {
	levels := []string{"a", "b", "$c", "", "+", "#"}
	var filters []string
	var build func(prefix []string)
	build = func(prefix []string) {
		if len(prefix) > 0 {
			f := strings.Join(prefix, "/")
			if topic.ValidateFilter(f) == nil {
				filters = append(filters, f)
			}
		}
		if len(prefix) == 3 {
			return
		}
		for _, l := range levels {
			build(append(append([]string(nil), prefix...), l))
		}
	}
	build(nil)
	nameLevels := []string{"a", "b", "$c", "", "z"}
	var names []string
	var buildNames func(prefix []string)
	buildNames = func(prefix []string) {
		if len(prefix) > 0 {
			n := strings.Join(prefix, "/")
			if n != "" && topic.ValidateName(n) == nil {
				names = append(names, n)
			}
		}
		if len(prefix) == 4 {
			return
		}
		for _, l := range nameLevels {
			buildNames(append(append([]string(nil), prefix...), l))
		}
	}
	buildNames(nil)
	require.Greater(t, len(filters), 100)
	matches := make([][]bool, len(filters))
	for i, f := range filters {
		matches[i] = make([]bool, len(names))
		for j, n := range names {
			matches[i][j] = topic.Match(f, n)
		}
	}
	for i, a := range filters {
		for k, b := range filters {
			want := false
			for j := range names {
				if matches[i][j] && matches[k][j] {
					want = true
					break
				}
			}
			if got := overlaps(a, b); got != want {
				t.Fatalf("overlaps(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}

func TestLoops(t *testing.T) {
	require.Equal(t, [][2]int{{0, 0}}, loops([]Mapping{{Pattern: "#", Direction: Both}}))
	require.Empty(t, loops([]Mapping{{Pattern: "a/#", Direction: Out}, {Pattern: "b/#", Direction: In}}))
	require.Equal(t, [][2]int{{0, 1}}, loops([]Mapping{{Pattern: "a/#", Direction: Out}, {Pattern: "+/x", Direction: In}}))
	// Disjoint on the remote side thanks to prefixes: no loop.
	require.Empty(t, loops([]Mapping{{Pattern: "#", Direction: Out, RemotePrefix: "up/"}, {Pattern: "#", Direction: In, RemotePrefix: "down/"}}))
	// Disjoint on the local side: no loop either.
	require.Empty(t, loops([]Mapping{{Pattern: "#", Direction: Out, LocalPrefix: "o/"}, {Pattern: "#", Direction: In, LocalPrefix: "i/"}}))
}

func TestSubscriptions(t *testing.T) {
	ms := []Mapping{
		{Pattern: "a/#", Direction: Out, QoS: 0},
		{Pattern: "a/#", Direction: Out, QoS: 1, RemotePrefix: "x/"},
		{Pattern: "b", Direction: Both, QoS: 2},
	}
	subs := subscriptions(routes(ms, true), true)
	require.Len(t, subs, 2)
	require.Equal(t, "a/#", subs[0].Topic)
	require.Equal(t, byte(1), subs[0].QoS)
	require.True(t, subs[0].NoLocal)
	require.True(t, subs[0].RetainAsPublished)
	require.Equal(t, byte(1), subs[0].RetainHandling)
	require.Equal(t, "b", subs[1].Topic)
	require.False(t, subscriptions(routes(ms, true), false)[0].NoLocal)
}
