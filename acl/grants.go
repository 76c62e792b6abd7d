package acl

import (
	"slices"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/topic"
)

// grant is a credential grant with its placeholders expanded.
type grant struct {
	g      mqttsec.Grant
	filter string
	ok     bool
}

func compileGrants(gs []mqttsec.Grant, user, client string) []grant {
	out := make([]grant, len(gs))
	for i, g := range gs {
		f, ok := expand(g.Topic, user, client)
		out[i] = grant{g: g, filter: f, ok: ok}
	}
	return out
}

// grantMatches reports whether grant g applies to the request. A Subscribe
// grant also covers Receive. QoS and retain limits apply to publishes with
// a message; without one (a bare Authorize), a limited allow grant does not
// apply and a limited deny grant does.
func (g *grant) matches(a mqttsec.Access, t string, m *mqttsec.Message) bool {
	if !g.ok {
		return false
	}
	acc := g.g.Access
	if acc&mqttsec.Subscribe != 0 {
		acc |= mqttsec.Receive
	}
	if acc&a == 0 {
		return false
	}
	if !topic.Covers(g.filter, t) {
		return false
	}
	limited := len(g.g.QoS) != 0 || g.g.Retain != nil
	if a != mqttsec.Publish || !limited {
		return true
	}
	if m == nil {
		return !g.g.Allow
	}
	if len(g.g.QoS) != 0 && !slices.Contains(g.g.QoS, m.QoS) {
		return false
	}
	if g.g.Retain != nil && *g.g.Retain != m.Retain {
		return false
	}
	return true
}

// firstSubscribeGrant returns the effect of the first grant that applies
// to a subscription to filter at QoS level q, and whether one did.
func firstSubscribeGrant(gs []grant, filter string, q byte) (allow, found bool) {
	for i := range gs {
		g := &gs[i]
		if !g.ok || g.g.Access&mqttsec.Subscribe == 0 || !topic.Covers(g.filter, filter) {
			continue
		}
		if len(g.g.QoS) == 0 || slices.Contains(g.g.QoS, q) {
			return g.g.Allow, true
		}
	}
	return false, false
}

// firstGrant returns the effect of the first grant that applies, and
// whether one did.
func firstGrant(gs []grant, a mqttsec.Access, t string, m *mqttsec.Message) (allow, found bool) {
	for i := range gs {
		if gs[i].matches(a, t, m) {
			return gs[i].g.Allow, true
		}
	}
	return false, false
}

func (c *Casbin) grantsOf(cl *mqttsec.Client) ([]grant, bool) {
	if c.opts.grants == GrantsIgnore || cl.Identity == nil || cl.Identity.Grants == nil {
		return nil, false
	}
	return compileGrants(cl.Identity.Grants, cl.Username, cl.ID), true
}

// grantsDecide reports whether grants allow a request the policy denied
// (only in GrantsWiden mode).
func (c *Casbin) grantsDecide(cl *mqttsec.Client, a mqttsec.Access, t string, m *mqttsec.Message) bool {
	if c.opts.grants != GrantsWiden {
		return false
	}
	gs, ok := c.grantsOf(cl)
	if !ok {
		return false
	}
	allow, found := firstGrant(gs, a, t, m)
	return found && allow
}

// grantsRestrict reports whether grants deny a request the policy allowed.
func (c *Casbin) grantsRestrict(cl *mqttsec.Client, a mqttsec.Access, t string, m *mqttsec.Message) bool {
	gs, ok := c.grantsOf(cl)
	if !ok {
		return false
	}
	allow, found := firstGrant(gs, a, t, m)
	if c.opts.grants == GrantsWiden {
		return found && !allow
	}
	return !found || !allow
}
