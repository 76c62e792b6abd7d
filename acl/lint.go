package acl

import (
	"fmt"
	"slices"

	"github.com/mqttsec/mqttsec/topic"
)

// Finding is one problem [Lint] reports.
type Finding struct {
	// Line is the line of the rule the finding is about (0 if unknown).
	Line int
	// Rule is the rule as a policy line.
	Rule string
	// Message says what is wrong.
	Message string
}

// String returns "line N: message: rule".
func (f Finding) String() string {
	return fmt.Sprintf("line %d: %s: %s", f.Line, f.Message, f.Rule)
}

// Lint reports rules that can never change a decision and suspicious ones:
//
//   - a rule whose topic, act and subject are covered by another rule with
//     the same effect (it is redundant; of two equal rules the later one is
//     reported);
//   - an allow rule entirely covered by a deny rule that applies to the same
//     subject (it never takes effect);
//   - a Mosquitto pattern without %u or %c (it applies to every client alike);
//   - rules with an unknown act or eft, or an invalid topic filter.
//
// groups are the g lines (user, role); a rule for a role applies to its
// members, and a rule for [Everyone] to all.
func Lint(rules []Rule, groups [][2]string) []Finding {
	roles := computeRoles(groups)
	appliesTo := func(a, b Rule) bool {
		return a.Sub == b.Sub || a.Sub == Everyone || slices.Contains(roles[b.Sub], a.Sub)
	}
	var out []Finding
	add := func(r Rule, format string, args ...any) {
		out = append(out, Finding{Line: r.Line, Rule: r.String(), Message: fmt.Sprintf(format, args...)})
	}
	for i, b := range rules {
		if ruleBits(b.Act, b.Eft) == 0 {
			add(b, "act %q or eft %q never matches (want read|write|readwrite and allow|deny)", b.Act, b.Eft)
			continue
		}
		if topic.ValidateFilter(b.Topic) != nil {
			add(b, "topic %q is not a valid filter: the rule never matches", b.Topic)
			continue
		}
		if b.Pattern && !topic.HasPlaceholder(b.Topic) {
			add(b, "pattern without %%u or %%c applies to every client alike; use a topic line")
		}
		covering := func(pred func(a Rule, j int) bool) (Rule, bool) {
			for j, a := range rules {
				if i == j || !appliesTo(a, b) || ruleBits(a.Act, a.Eft) == 0 {
					continue
				}
				// A template only covers what it covers for every
				// expansion; compared as text, that holds when the outer
				// has none.
				if topic.HasPlaceholder(a.Topic) && a.Topic != b.Topic {
					continue
				}
				if topic.Covers(a.Topic, b.Topic) && actCovers(a.Act, b.Act) && pred(a, j) {
					return a, true
				}
			}
			return Rule{}, false
		}
		if b.Eft == EftAllow {
			if a, ok := covering(func(a Rule, _ int) bool { return a.Eft == EftDeny }); ok {
				add(b, "overridden by deny rule on line %d (%s): it never allows anything", a.Line, a.String())
				continue
			}
		}
		if a, ok := covering(func(a Rule, j int) bool {
			same := a.Sub == b.Sub && a.Topic == b.Topic && a.Act == b.Act
			return a.Eft == b.Eft && !(same && j > i) // of two equal rules, report the later
		}); ok {
			add(b, "shadowed by line %d (%s): it never changes a decision", a.Line, a.String())
		}
	}
	return out
}

func actCovers(outer, inner string) bool {
	return outer == inner || outer == ActReadWrite
}
