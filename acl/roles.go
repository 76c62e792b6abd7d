package acl

import (
	"maps"
	"slices"
)

// smap is a string-to-names map split into shards, so that a change copies
// one shard, not the whole map.
type smap [nShards]map[string][]string

// roleGraph is the g relation: direct roles (up), direct members (down),
// and for every name with roles, all roles it reaches within maxHierarchy
// links (closure), as Casbin's default role manager's HasLink follows them.
type roleGraph struct {
	up, down, closure smap
}

// cow copies shards of an smap on their first change.
type cow struct {
	m    *smap
	done [nShards]bool
}

func (c *cow) set(i int, name string, v []string) {
	if !c.done[i] {
		c.m[i] = maps.Clone(c.m[i])
		if c.m[i] == nil {
			c.m[i] = make(map[string][]string)
		}
		c.done[i] = true
	}
	if len(v) == 0 {
		delete(c.m[i], name)
	} else {
		c.m[i][name] = v
	}
}

func (s *snapshot) rolesOf(name string) []string {
	return s.rg.closure[s.shard(name)][name]
}

// closureOf returns the roles name reaches within maxHierarchy links.
func (s *snapshot) closureOf(name string) []string { return s.closureWith(name, nil) }

// resolve returns the roles of user for a connection whose identity
// carries roles extra: what Casbin's role manager reaches from user with a
// g line (user, r) added for every r in extra. Without extra it is the
// precomputed closure and allocates nothing.
func (s *snapshot) resolve(user string, extra []string) []string {
	if len(extra) == 0 {
		return s.rolesOf(user)
	}
	return s.closureWith(user, extra)
}

// closureWith returns the roles name reaches within maxHierarchy links,
// with extra as direct roles of name besides its g lines.
func (s *snapshot) closureWith(name string, extra []string) []string {
	seen := map[string]bool{name: true}
	var res []string
	var frontier []string
	for _, to := range extra {
		if !seen[to] {
			seen[to] = true
			res = append(res, to)
			frontier = append(frontier, to)
		}
	}
	for _, to := range s.rg.up[s.shard(name)][name] {
		if !seen[to] {
			seen[to] = true
			res = append(res, to)
			frontier = append(frontier, to)
		}
	}
	for level := 1; level < maxHierarchy && len(frontier) > 0; level++ {
		var next []string
		for _, r := range frontier {
			for _, to := range s.rg.up[s.shard(r)][r] {
				if !seen[to] {
					seen[to] = true
					res = append(res, to)
					next = append(next, to)
				}
			}
		}
		frontier = next
	}
	return res
}

// setGroups builds the role graph from g lines (in place: s is not
// published yet).
func (s *snapshot) setGroups(grouping [][]string) {
	s.dirty = false
	for i := range nShards {
		s.rg.up[i] = make(map[string][]string)
		s.rg.down[i] = make(map[string][]string)
		s.rg.closure[i] = make(map[string][]string)
	}
	for _, g := range grouping {
		if len(g) < 2 {
			continue
		}
		if dirtyGroup(g) {
			s.dirty = true
		}
		a, b := g[0], g[1]
		ia, ib := s.shard(a), s.shard(b)
		if !slices.Contains(s.rg.up[ia][a], b) {
			s.rg.up[ia][a] = append(s.rg.up[ia][a], b)
			s.rg.down[ib][b] = append(s.rg.down[ib][b], a)
		}
	}
	for i := range nShards {
		for name := range s.rg.up[i] {
			s.rg.closure[i][name] = s.closureOf(name)
		}
	}
}

// withGroup returns a copy of s with the link a -> b added (d > 0) or
// removed, recomputing the closure of a and of every name that reaches a.
// It returns false when a removed link is not in s (s and the enforcer
// disagree; the caller rebuilds).
func (s *snapshot) withGroup(gen uint64, a, b string, d int32) (*snapshot, bool) {
	ns := *s
	ns.gen = gen
	ia, ib := ns.shard(a), ns.shard(b)
	has := slices.Contains(ns.rg.up[ia][a], b)
	if has == (d > 0) {
		return &ns, d > 0
	}
	up, down, clo := &cow{m: &ns.rg.up}, &cow{m: &ns.rg.down}, &cow{m: &ns.rg.closure}
	if d > 0 {
		up.set(ia, a, append(slices.Clip(ns.rg.up[ia][a]), b))
		down.set(ib, b, append(slices.Clip(ns.rg.down[ib][b]), a))
	} else {
		up.set(ia, a, slices.DeleteFunc(slices.Clone(ns.rg.up[ia][a]), func(x string) bool { return x == b }))
		down.set(ib, b, slices.DeleteFunc(slices.Clone(ns.rg.down[ib][b]), func(x string) bool { return x == a }))
	}
	// Names whose closure may change: a, and whoever reaches a.
	affected := []string{a}
	seen := map[string]bool{a: true}
	frontier := []string{a}
	for level := 0; level < maxHierarchy && len(frontier) > 0; level++ {
		var next []string
		for _, r := range frontier {
			for _, from := range ns.rg.down[ns.shard(r)][r] {
				if !seen[from] {
					seen[from] = true
					affected = append(affected, from)
					next = append(next, from)
				}
			}
		}
		frontier = next
	}
	for _, name := range affected {
		clo.set(ns.shard(name), name, ns.closureOf(name))
	}
	return &ns, true
}
