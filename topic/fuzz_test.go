package topic_test

import (
	"strings"
	"testing"

	"github.com/mqttsec/mqttsec/topic"
)

// refMatch is a deliberately simple reference: split both into levels.
func refMatch(filter, name string) bool {
	if topic.ValidateFilter(filter) != nil || topic.ValidateName(name) != nil {
		return false
	}
	if strings.HasPrefix(filter, "$share/") {
		filter = strings.SplitN(filter, "/", 3)[2]
	}
	if strings.HasPrefix(name, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f := strings.Split(filter, "/")
	n := strings.Split(name, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(n) {
			return false
		}
		if l != "+" && l != n[i] {
			return false
		}
	}
	return len(f) == len(n)
}

// FuzzMatch compares Match with the split-based reference.
func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"a/#", "a"},           // '#' matches the parent
		{"#", "$SYS/x"},        // wildcard-first never matches '$'
		{"+/+", "/"},           // empty levels
		{"a/+/#", "a/b"},       // '+' then '#'
		{"$share/g/+", "x"},    // shared subscription
		{"a\x00", "a\x00"},     // NUL is invalid
		{"ü/+", "ü/\xff"},      // invalid UTF-8
		{"foo/bar", "foo/bar"}, // literal
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		if got, want := topic.Match(filter, name), refMatch(filter, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference %v", filter, name, got, want)
		}
		if topic.ValidateName(name) == nil && topic.Covers(filter, name) != topic.Match(filter, name) {
			t.Fatalf("Covers(%q, %q) != Match", filter, name)
		}
	})
}

// FuzzCovers checks the containment property: Covers(a, b) and Match(b, t)
// imply Match(a, t); and every filter covers itself.
func FuzzCovers(f *testing.F) {
	seeds := [][3]string{
		{"a/#", "a/b/#", "a/b/c"},
		{"+/#", "#", "x"},
		{"/+/#", "/#", "/x"},
		{"#", "$SYS/#", "$SYS/a"},
		{"a/+", "a/b", "a/b"},
		{"$share/g/a/#", "a/+", "a/x"},
		{"#", "$share/g/x", "$share/g/x"},
		{"+/+/#", "/#", "/x"},
		{"$share/h/$share/#", "$share/g/x", "$share/g/x"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, a, b, name string) {
		// b is taken literally (a "$share/..." inner is a '$' filter);
		// every valid filter covers itself once a's share prefix is gone.
		if topic.ValidateFilter(b) == nil && !topic.Covers(b, b) {
			if _, shared := topic.Unshare(b); !shared {
				t.Fatalf("Covers(%q, %q) = false for a valid filter", b, b)
			}
		}
		if u, shared := topic.Unshare(b); shared && topic.ValidateFilter(b) == nil && !topic.Covers(b, u) {
			t.Fatalf("Covers(%q, %q) = false: a shared filter must cover its inner filter", b, u)
		}
		lit := "$share/z/" + b // matches what b matches taken literally
		if topic.Covers(a, b) && topic.Match(lit, name) && !topic.Match(a, name) {
			t.Fatalf("Covers(%q, %q) but %q matches only the inner filter", a, b, name)
		}
		// Derive a name from b by filling its wildcards: if a covers b,
		// a must match it.
		if topic.Covers(a, b) {
			n := strings.NewReplacer("+", "x", "/#", "/y/z", "#", "y").Replace(b)
			if topic.ValidateName(n) == nil && topic.Match(lit, n) && !topic.Match(a, n) {
				t.Fatalf("Covers(%q, %q) but derived name %q matches only the inner filter", a, b, n)
			}
		}
	})
}

// FuzzExpand checks that a placeholder never widens a rule: the expanded
// filter has no more wildcards than the rule, and its levels are kept.
func FuzzExpand(f *testing.F) {
	f.Add("devices/%u/#", "alice", "c1")
	f.Add("d/%c", "a", "x/+")
	f.Add("d/${username}/${clientid}", "#", "c")
	f.Fuzz(func(t *testing.T, filter, user, client string) {
		got, ok := topic.Expand(filter, user, client)
		if !ok {
			return
		}
		if strings.Count(got, "+") != strings.Count(filter, "+") || strings.Count(got, "#") != strings.Count(filter, "#") {
			t.Fatalf("Expand(%q, %q, %q) = %q changed the wildcards", filter, user, client, got)
		}
		if strings.Count(got, "/") != strings.Count(filter, "/") {
			t.Fatalf("Expand(%q, %q, %q) = %q changed the levels", filter, user, client, got)
		}
	})
}
