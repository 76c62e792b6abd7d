package topic_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/topic"
)

func TestValidate(t *testing.T) {
	long := strings.Repeat("a", topic.MaxLen)
	tests := []struct {
		s          string
		name, filt error
	}{
		{"a/b", nil, nil},
		{"/", nil, nil},
		{"a//b", nil, nil},
		{"$SYS/x", nil, nil},
		{"", topic.ErrEmpty, topic.ErrEmpty},
		{long, nil, nil},
		{long + "a", topic.ErrTooLong, topic.ErrTooLong},
		{"a\x00b", topic.ErrNUL, topic.ErrNUL},
		{"a/\xff", topic.ErrInvalidUTF8, topic.ErrInvalidUTF8},
		{"a/\xed\xa0\x80", topic.ErrInvalidUTF8, topic.ErrInvalidUTF8}, // surrogate U+D800
		{"ünïcødé/日本", nil, nil},
		{"+", topic.ErrWildcardInName, nil},
		{"#", topic.ErrWildcardInName, nil},
		{"a/+/b", topic.ErrWildcardInName, nil},
		{"a/#", topic.ErrWildcardInName, nil},
		{"+/+", topic.ErrWildcardInName, nil},
		{"a+", topic.ErrWildcardInName, topic.ErrBadWildcard},
		{"a/+b", topic.ErrWildcardInName, topic.ErrBadWildcard},
		{"a/#/b", topic.ErrWildcardInName, topic.ErrBadWildcard},
		{"a#", topic.ErrWildcardInName, topic.ErrBadWildcard},
		{"##", topic.ErrWildcardInName, topic.ErrBadWildcard},
		{"$share/g/a/#", topic.ErrWildcardInName, nil},
		{"$share/g/a", nil, nil},
		{"$share/g/+", topic.ErrWildcardInName, nil},
		{"$share/g", nil, topic.ErrBadShare},
		{"$share//a", nil, topic.ErrBadShare},
		{"$share/g/", nil, topic.ErrBadShare},
		{"$share/+/a", topic.ErrWildcardInName, topic.ErrBadShare},
		{"$share/g#/a", topic.ErrWildcardInName, topic.ErrBadShare},
		{"$share", nil, nil},
	}
	for _, tt := range tests {
		name := tt.s
		if len(name) > 40 {
			name = name[:20] + "..."
		}
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, topic.ValidateName(tt.s), tt.name, "ValidateName")
			if tt.name == nil {
				require.NoError(t, topic.ValidateName(tt.s))
			}
			if tt.filt == nil {
				require.NoError(t, topic.ValidateFilter(tt.s))
			} else {
				require.ErrorIs(t, topic.ValidateFilter(tt.s), tt.filt, "ValidateFilter")
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"#", "a", true},
		{"#", "/", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"+/+", "/", true},
		{"+", "/", false},
		{"$share/g/a/+", "a/b", true},
		{"$share/g/#", "$SYS/a", false},
		{"a/b", "a/+", false}, // invalid name
		{"a+", "a+", false},   // invalid filter
	}
	for _, tt := range tests {
		t.Run(tt.filter+" "+tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, topic.Match(tt.filter, tt.name))
			if topic.ValidateName(tt.name) == nil {
				require.Equal(t, tt.want, topic.Covers(tt.filter, tt.name), "Covers(f, name) == Match(f, name)")
			}
		})
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		outer, inner string
		want         bool
	}{
		{"a/#", "a/#", true},
		{"a/#", "a/b/#", true},
		{"a/b/#", "a/#", false},
		{"a/+", "a/#", false},
		{"a/+", "a/+", true},
		{"a/+", "a/b", true},
		{"a/b", "a/+", false},
		{"#", "a/#", true},
		{"#", "#", true},
		{"#", "$SYS/#", false},
		{"+/#", "$SYS/#", false},
		{"$SYS/#", "$SYS/a/+", true},
		{"+/#", "#", true},
		{"+/#", "+", true},
		{"+/+/#", "#", false},
		{"+/+/#", "+/#", false},
		{"a/+/#", "a/#", false},
		{"a/#", "a", true},
		{"a/#", "a/+", true},
		{"+", "#", false},
		{"#", "+/+", true},
		{"a/+/c", "a/+/c", true},
		{"a/+/c", "a/b/+", false},
		{"$share/g/a/#", "a/b", true},
		// inner is literal: a name "$share/g/..." is a '$' topic.
		{"a/#", "$share/g/a/b", false},
		{"#", "$share/g/x", false},
		{"+/g/x", "$share/g/x", false},
		{"$share/g/x", "$share/g/x", false},
		{"$share/h/$share/g/x", "$share/g/x", true},
		{"$share/h/$share/#", "$share/g/x", true},
		{"$share/h/$share/", "$share/", true}, // "$share/" is a literal filter
		{"$share/h/$share/+", "$share/x", true},
		{"#", "$share/", false},
		// "/#" has no parent name (the empty topic is not one).
		{"+/+/#", "/#", true},
		{"+/#", "/#", true},
		{"+/+/#", "//#", true}, // its parent "/" is a name, which "+/+" matches
		{"+/+/+/#", "//#", false},
		{"+/+/+/#", "/#", false},
		{"$share/g/+/+/#", "/#", true},
	}
	for _, tt := range tests {
		t.Run(tt.outer+" ⊇ "+tt.inner, func(t *testing.T) {
			require.Equal(t, tt.want, topic.Covers(tt.outer, tt.inner))
		})
	}
}

// literal returns a filter that matches exactly the names filter f matches
// when f is taken literally (a "$share/..." filter as a '$' topic filter):
// Match unshares a filter once.
func literal(f string) string { return "$share/z/" + f }

// TestCoversExhaustive checks Covers against its definition over every
// filter and name built from a small alphabet with empty levels, '$' lead
// bytes and shared subscriptions: Covers(o, i) iff every name matched by i,
// taken literally, is matched by o.
func TestCoversExhaustive(t *testing.T) {
	filterLevels := []string{"a", "$s", "", "+", "#", "$share"}
	nameLevels := []string{"a", "$s", "", "z", "$share"} // "z" appears in no filter
	filters := build(filterLevels, 4, true)
	names := build(nameLevels, 5, false)
	words := (len(names) + 63) / 64
	bits := func(f string) []uint64 {
		b := make([]uint64, words)
		for j, n := range names {
			if topic.Match(f, n) {
				b[j/64] |= 1 << (j % 64)
			}
		}
		return b
	}
	matched := make([][]uint64, len(filters))
	inner := make([][]uint64, len(filters))
	for i, f := range filters {
		matched[i], inner[i] = bits(f), bits(literal(f))
	}
	for i, o := range filters {
		for k, in := range filters {
			want := true
			for w := range words {
				if inner[k][w]&^matched[i][w] != 0 {
					want = false
					break
				}
			}
			if got := topic.Covers(o, in); got != want {
				t.Fatalf("Covers(%q, %q) = %v, want %v", o, in, got, want)
			}
		}
	}
}

// A topic name is never unshared: "#" does not match (nor cover) the '$'
// topic "$share/g/x", so a rule for "#" cannot publish to it.
func TestShareNamesAreLiteral(t *testing.T) {
	require.NoError(t, topic.ValidateName("$share/g/x"))
	require.False(t, topic.Match("#", "$share/g/x"))
	require.False(t, topic.Covers("#", "$share/g/x"))
	require.False(t, topic.Covers("x", "$share/g/x"))
	require.True(t, topic.Covers("$share/g/x", "x"), "a shared outer filter covers its inner filter")
}

// build returns every valid topic (filter when filter is true) of 1..depth
// levels over the given levels.
func build(levels []string, depth int, filter bool) []string {
	var out []string
	var rec func(prefix []string)
	rec = func(prefix []string) {
		if len(prefix) > 0 {
			s := strings.Join(prefix, "/")
			valid := topic.ValidateName(s) == nil
			if filter {
				valid = topic.ValidateFilter(s) == nil
			}
			if valid {
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

func TestExpand(t *testing.T) {
	tests := []struct {
		filter, user, client string
		want                 string
		ok                   bool
	}{
		{"a/b", "", "", "a/b", true},
		{"devices/%u/#", "alice", "c1", "devices/alice/#", true},
		{"devices/%c/up", "alice", "c1", "devices/c1/up", true},
		{"d/${username}/${clientid}", "alice", "c1", "d/alice/c1", true},
		{"d/%u-%c", "alice", "c1", "d/alice-c1", true},
		{"d/%u", "", "c1", "", false},
		{"d/%u", "a/b", "c1", "", false},
		{"d/%u", "+", "c1", "", false},
		{"d/%c", "alice", "#", "", false},
		{"d/%c", "alice", "x\x00", "", false},
		{"d/%u%c", "\xc3", "\xa9", "", false}, // two halves of "é"
		{"d/%c", "alice", "\xff", "", false},
		{"d/100%/x", "alice", "c1", "d/100%/x", true},
		{"d/%x", "alice", "c1", "d/%x", true},
		{"d/${other}", "alice", "c1", "d/${other}", true},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			got, ok := topic.Expand(tt.filter, tt.user, tt.client)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
	require.True(t, topic.HasPlaceholder("a/%u"))
	require.False(t, topic.HasPlaceholder("a/%x"))
}

// TestMosquittoVectors checks the topic-matching and validation cases of
// Mosquitto's own unit tests, kept as data in the shared conformance folder.
func TestMosquittoVectors(t *testing.T) {
	dir := testenv.SharedDir(t)
	if dir == "" {
		if testenv.CI() {
			t.Fatal("shared conformance folder missing under CI")
		}
		t.Skip("shared conformance folder (../shared) not present")
	}
	f, err := os.Open(filepath.Join(dir, "conformance", "mosquitto_topic_vectors.tsv"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "\t")
		require.GreaterOrEqual(t, len(cols), 2, "line %d", line)
		a, b := cols[1], ""
		if len(cols) > 2 {
			b = cols[2]
		}
		n++
		switch cols[0] {
		case "match":
			require.True(t, topic.Match(a, b), "line %d: %q should match %q", line, a, b)
		case "nomatch", "invalid":
			require.False(t, topic.Match(a, b), "line %d: %q should not match %q", line, a, b)
		case "name-ok":
			require.NoError(t, topic.ValidateName(a), "line %d", line)
		case "name-bad":
			require.Error(t, topic.ValidateName(a), "line %d", line)
		case "filter-ok":
			require.NoError(t, topic.ValidateFilter(a), "line %d", line)
		case "filter-bad":
			require.Error(t, topic.ValidateFilter(a), "line %d", line)
		default:
			t.Fatalf("line %d: unknown kind %q", line, cols[0])
		}
	}
	require.NoError(t, sc.Err())
	require.Greater(t, n, 90)
}
