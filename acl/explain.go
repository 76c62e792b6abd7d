package acl

import (
	"slices"

	"github.com/mqttsec/mqttsec/topic"
)

// Decision is the answer of [Casbin.Explain].
type Decision struct {
	// Allowed is the decision; it equals [Casbin.Allowed].
	Allowed bool
	// Rule is the policy line that decided: the first matching deny rule,
	// or, without one, the first matching allow rule (as Casbin's EnforceEx
	// reports it). Nil when no rule matched (denied by default) or the
	// policy is broken.
	Rule []string
	// Reason says why, in words.
	Reason string
}

// Explain decides a request like [Casbin.Allowed] and names the rule that
// decided it. It scans the enforcer's policy: use it for tools and logs of
// denials, not on the message path.
func (c *Casbin) Explain(user, client, act, t string) Decision {
	return c.ExplainRoles(user, client, nil, act, t)
}

// ExplainRoles is [Casbin.Explain] for a user whose credential carries
// roles (see [Casbin.AllowedRoles]).
func (c *Casbin) ExplainRoles(user, client string, roles []string, act, t string) Decision {
	s := c.snap.Load()
	resolved := s.resolve(user, roles)
	allowed := s.decideBits(user, client, resolved, act, t)
	d := Decision{Allowed: allowed}
	allow, deny, ok := actBits(act)
	switch {
	case !ok:
		d.Reason = "act must be read or write"
		return d
	case s.bad > 0:
		d.Reason = "the policy has lines with the wrong number of fields: everything is denied"
		return d
	case s.refused(user):
		d.Reason = "the subject is \"*\" or a role name: a subject may not take a role's rules, everything is denied"
		return d
	case s.dirty:
		d.Reason = "a role link has more than two fields or a comma, which Casbin does not keep consistently: everything is denied until the policy is reloaded without it"
		return d
	case topic.ValidateLiteral(t) != nil:
		d.Reason = "invalid topic"
		return d
	}
	p, _ := c.e.GetPolicy()
	var firstAllow []string
	for _, r := range p {
		if len(r) != 4 || !(r[0] == Everyone || r[0] == user || slices.Contains(resolved, r[0])) {
			continue
		}
		if !MQTTAct(act, r[2]) || !MQTTMatch(t, r[1], user, client) {
			continue
		}
		b := ruleBits(r[2], r[3])
		if b&deny != 0 {
			d.Rule = slices.Clone(r)
			d.Reason = "denied by a deny rule"
			return d
		}
		if b&allow != 0 && firstAllow == nil {
			firstAllow = slices.Clone(r)
		}
	}
	if firstAllow != nil {
		d.Rule = firstAllow
		d.Reason = "allowed by an allow rule"
	} else {
		d.Reason = "no rule allows it (default deny)"
	}
	return d
}
