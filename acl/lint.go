package acl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mqttsec/mqttsec/topic"
)

// The IDs of the kinds of finding [Lint] reports. They are stable: tools
// may filter and count findings by them.
const (
	// FindingInvalidRule: an unknown act or eft, or an invalid topic
	// filter; the rule never matches.
	FindingInvalidRule = "invalid-rule"
	// FindingOverriddenRule: an allow rule entirely covered by a deny rule
	// of the same subject; it never allows anything.
	FindingOverriddenRule = "overridden-rule"
	// FindingShadowedRule: a rule covered by another rule with the same
	// effect; it never changes a decision.
	FindingShadowedRule = "shadowed-rule"
	// FindingPatternWithoutPlaceholder: a Mosquitto pattern without %u or
	// %c applies to every client alike.
	FindingPatternWithoutPlaceholder = "pattern-without-placeholder"
	// FindingBroadWildcardGrant: an allow rule whose filter starts with a
	// wildcard ("#", "+/#", "+/status"), for a user, a role or everyone:
	// it reaches every topic tree of the broker.
	FindingBroadWildcardGrant = "broad-wildcard-grant"
	// FindingAnonymousWildcard: such a rule for anonymous clients (the top
	// section of a Mosquitto acl_file, subject [Anonymous]).
	FindingAnonymousWildcard = "anonymous-wildcard-acl"
	// FindingClientIDTemplate: a rule with %c or ${clientid}. A client
	// picks its client ID: the rule is only safe when the broker binds
	// client IDs to identities. Drop this finding when it does.
	FindingClientIDTemplate = "clientid-template-unbound"
	// FindingTemplateSharePrefix: a first level that starts with '$' and
	// a placeholder, which a value can complete to "$share"; such
	// expansions never apply (see [MQTTMatch]).
	FindingTemplateSharePrefix = "template-share-prefix"
)

// The severities of findings, as security scanners grade them.
const (
	SeverityHigh   = "high"
	SeverityMedium = "medium"
	SeverityLow    = "low"
	SeverityInfo   = "info"
)

// Finding is one problem [Lint] reports.
type Finding struct {
	// ID names the kind of finding (one of the Finding... constants).
	ID string
	// Severity is "high", "medium", "low" or "info".
	Severity string
	// Line is the line of the rule the finding is about (0 if unknown).
	Line int
	// Rule is the rule as a policy line.
	Rule string
	// Message says what is wrong.
	Message string
}

// String returns "line N: message: rule [id]".
func (f Finding) String() string {
	return fmt.Sprintf("line %d: %s: %s [%s]", f.Line, f.Message, f.Rule, f.ID)
}

// Lint reports rules that can never change a decision and dangerous ones
// (the ID of each kind of finding in brackets):
//
//   - a rule with an unknown act or eft, or an invalid topic filter
//     [invalid-rule];
//   - an allow rule entirely covered by a deny rule that applies to the same
//     subject: it never takes effect [overridden-rule];
//   - a rule whose topic, act and subject are covered by another rule with
//     the same effect: it is redundant; of two equal rules the later one is
//     reported [shadowed-rule];
//   - a Mosquitto pattern without %u or %c: it applies to every client
//     alike [pattern-without-placeholder];
//   - an allow rule whose filter starts with a wildcard, such as
//     "p, x, #, readwrite, allow" or "topic readwrite #" in a user section
//     [broad-wildcard-grant], or in the anonymous section
//     [anonymous-wildcard-acl];
//   - a rule with %c: a client picks its client ID, so the rule is only safe
//     when client IDs are bound to identities [clientid-template-unbound];
//   - a template that can expand into a "$share/..." filter, which never
//     applies [template-share-prefix].
//
// groups are the g lines (user, role); a rule for a role applies to its
// members, and a rule for [Everyone] to all.
func Lint(rules []Rule, groups [][2]string) []Finding {
	roles := computeRoles(groups)
	appliesTo := func(a, b Rule) bool {
		return a.Sub == b.Sub || a.Sub == Everyone || slices.Contains(roles[b.Sub], a.Sub)
	}
	var out []Finding
	add := func(r Rule, id, sev, format string, args ...any) {
		out = append(out, Finding{ID: id, Severity: sev, Line: r.Line, Rule: r.String(), Message: fmt.Sprintf(format, args...)})
	}
	for i, b := range rules {
		if ruleBits(b.Act, b.Eft) == 0 {
			add(b, FindingInvalidRule, SeverityLow, "act %q or eft %q never matches (want read|write|readwrite and allow|deny)", b.Act, b.Eft)
			continue
		}
		if topic.ValidateFilter(b.Topic) != nil {
			add(b, FindingInvalidRule, SeverityLow, "topic %q is not a valid filter: the rule never matches", b.Topic)
			continue
		}
		if b.Pattern && !topic.HasPlaceholder(b.Topic) {
			add(b, FindingPatternWithoutPlaceholder, SeverityLow, "pattern without %%u or %%c applies to every client alike; use a topic line")
		}
		if b.Eft == EftAllow {
			if sev, ok := broad(b.Topic); ok {
				switch b.Sub {
				case Anonymous:
					add(b, FindingAnonymousWildcard, SeverityHigh, "anonymous clients may %s every topic tree", verb(b.Act))
				case Everyone:
					add(b, FindingBroadWildcardGrant, sev, "every user may %s every topic tree", verb(b.Act))
				default:
					add(b, FindingBroadWildcardGrant, sev, "%q may %s every topic tree; grant the topics it needs", b.Sub, verb(b.Act))
				}
			}
		}
		if strings.Contains(b.Topic, "%c") || strings.Contains(b.Topic, "${clientid}") {
			what := "gives these rights to any client that picks a matching client ID"
			if b.Eft == EftDeny {
				what = "is escaped by a client that picks another client ID"
			}
			add(b, FindingClientIDTemplate, SeverityMedium, "a rule with %%c %s: bind client IDs to identities", what)
		}
		if shareTemplate(b.Topic) {
			add(b, FindingTemplateSharePrefix, SeverityLow, "a placeholder value can complete the first level to \"$share\"; such expansions never apply")
		}
		// What b covers: a rule written as a shared subscription covers
		// its inner filter (topic.Covers takes its inner filter literally).
		inner, _ := topic.Unshare(b.Topic)
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
				if topic.Covers(a.Topic, inner) && actCovers(a.Act, b.Act) && pred(a, j) {
					return a, true
				}
			}
			return Rule{}, false
		}
		if b.Eft == EftAllow {
			if a, ok := covering(func(a Rule, _ int) bool { return a.Eft == EftDeny }); ok {
				add(b, FindingOverriddenRule, SeverityLow, "overridden by deny rule on line %d (%s): it never allows anything", a.Line, a.String())
				continue
			}
		}
		if a, ok := covering(func(a Rule, j int) bool {
			same := a.Sub == b.Sub && a.Topic == b.Topic && a.Act == b.Act
			return a.Eft == b.Eft && !(same && j > i) // of two equal rules, report the later
		}); ok {
			add(b, FindingShadowedRule, SeverityInfo, "shadowed by line %d (%s): it never changes a decision", a.Line, a.String())
		}
	}
	return out
}

// broad reports whether filter (after any $share prefix) starts with a
// wildcard level, and how severe a grant of it is: high when it reaches
// every topic ("#", "+/#"), medium otherwise ("+/status").
func broad(filter string) (severity string, ok bool) {
	f, _ := topic.Unshare(filter)
	if f == "#" || f == "+/#" {
		return SeverityHigh, true
	}
	if f == "+" || strings.HasPrefix(f, "+/") {
		return SeverityMedium, true
	}
	return "", false
}

func verb(act string) string {
	switch act {
	case ActRead:
		return "read"
	case ActWrite:
		return "publish to"
	}
	return "read and publish to"
}

// shareTemplate reports whether the first level of filter starts with '$'
// and holds a placeholder, so that a value can complete it to "$share".
func shareTemplate(filter string) bool {
	if strings.HasPrefix(filter, "$share/") {
		return false
	}
	first, _, _ := strings.Cut(filter, "/")
	if !strings.HasPrefix(first, "$") || !topic.HasPlaceholder(first) {
		return false
	}
	ps, _, _, _ := parseTemplate(first)
	return fits(ps, "$share")
}

// fits reports whether the template pieces can expand to exactly s, a
// placeholder standing for any non-empty text.
func fits(ps []piece, s string) bool {
	if len(ps) == 0 {
		return s == ""
	}
	if p := ps[0]; p.kind == 0 {
		return strings.HasPrefix(s, p.s) && fits(ps[1:], s[len(p.s):])
	}
	for n := 1; n <= len(s); n++ {
		if fits(ps[1:], s[n:]) {
			return true
		}
	}
	return false
}

func actCovers(outer, inner string) bool {
	return outer == inner || outer == ActReadWrite
}
