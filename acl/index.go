package acl

import (
	"hash/maphash"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/casbin/casbin/v2/model"

	"github.com/mqttsec/mqttsec/topic"
)

// The decision bits a rule contributes.
const (
	fAllowRead uint8 = 1 << iota
	fAllowWrite
	fDenyRead
	fDenyWrite
)

// ruleBits returns the decision bits of a policy line's act and eft, or 0
// when the line can never take part in a decision.
func ruleBits(act, eft string) uint8 {
	var rw uint8
	switch act {
	case ActRead:
		rw = 1
	case ActWrite:
		rw = 2
	case ActReadWrite:
		rw = 3
	default:
		return 0
	}
	switch eft {
	case EftAllow:
		return rw
	case EftDeny:
		return rw << 2
	}
	return 0
}

// counts keeps, per decision bit, how many rules set it, so that removing
// one rule of two that overlap keeps the bit.
type counts [4]int32

func (c *counts) add(bits uint8, d int32) {
	for i := range c {
		if bits&(1<<i) != 0 {
			c[i] += d
		}
	}
}

func (c *counts) flags() uint8 {
	var f uint8
	for i, n := range c {
		if n > 0 {
			f |= 1 << i
		}
	}
	return f
}

func (c *counts) zero() bool { return *c == counts{} }

// node is one level of a per-subject topic trie. Nodes reachable from a
// published snapshot are never modified: updates copy the path they change.
type node struct {
	lit   map[string]*node
	plus  *node
	tmpl  []*tmplEdge
	end   counts // rules that end at this node
	hash  counts // rules whose next (last) level is '#'
	endF  uint8
	hashF uint8
}

func (n *node) empty() bool {
	return n == nil || (len(n.lit) == 0 && n.plus == nil && len(n.tmpl) == 0 && n.end.zero() && n.hash.zero())
}

func (n *node) clone() *node {
	if n == nil {
		return &node{}
	}
	c := *n
	return &c
}

// piece is a part of a template level: a literal, or a placeholder ('u' for
// the username, 'c' for the client ID).
type piece struct {
	kind byte
	s    string
}

// tmplEdge is a level that contains placeholders.
type tmplEdge struct {
	level  string
	pieces []piece
	useU   bool
	useC   bool
	child  *node
}

// parseTemplate splits a level into pieces exactly as topic.Expand scans it.
func parseTemplate(level string) (ps []piece, useU, useC, has bool) {
	if !strings.Contains(level, "%") && !strings.Contains(level, "${") {
		return nil, false, false, false
	}
	lit := 0
	flush := func(i int) {
		if i > lit {
			ps = append(ps, piece{s: level[lit:i]})
		}
	}
	for i := 0; i < len(level); {
		var kind byte
		n := 0
		switch {
		case strings.HasPrefix(level[i:], "%u"):
			kind, n = 'u', 2
		case strings.HasPrefix(level[i:], "%c"):
			kind, n = 'c', 2
		case strings.HasPrefix(level[i:], "${username}"):
			kind, n = 'u', len("${username}")
		case strings.HasPrefix(level[i:], "${clientid}"):
			kind, n = 'c', len("${clientid}")
		default:
			i++
			continue
		}
		flush(i)
		ps = append(ps, piece{kind: kind})
		has = true
		if kind == 'u' {
			useU = true
		} else {
			useC = true
		}
		i += n
		lit = i
	}
	flush(len(level))
	return ps, useU, useC, has
}

// matchPieces reports whether the template expands to exactly s.
func matchPieces(ps []piece, s, u, c string) bool {
	for _, p := range ps {
		v := p.s
		switch p.kind {
		case 'u':
			v = u
		case 'c':
			v = c
		}
		if !strings.HasPrefix(s, v) {
			return false
		}
		s = s[len(v):]
	}
	return s == ""
}

func expandedLen(ps []piece, u, c string) int {
	n := 0
	for _, p := range ps {
		switch p.kind {
		case 'u':
			n += len(u)
		case 'c':
			n += len(c)
		default:
			n += len(p.s)
		}
	}
	return n
}

// slowRule is a rule the trie cannot represent exactly (a template that is
// not valid UTF-8 or longer than topic.MaxLen); it is evaluated with
// MQTTMatch.
type slowRule struct {
	filter string
	bits   uint8
}

// subject is the compiled rules of one policy subject.
type subject struct {
	root *node
	slow []slowRule
	// share is set when the root has a literal "$share" level.
	share bool
}

func (s *subject) finish() {
	s.share = s.root != nil && s.root.lit[shareLevel] != nil
}

// compiled classifies a policy filter: trie levels, a slow rule, or a rule
// that never matches (nil levels, slow false).
func compileFilter(f string) (levels []string, slow bool) {
	if !utf8.ValidString(f) || len(f) > topic.MaxLen {
		if topic.HasPlaceholder(f) || hasPlaceholderToken(f) {
			return nil, true
		}
		return nil, false
	}
	if topic.ValidateFilter(f) != nil {
		return nil, false
	}
	return strings.Split(f, "/"), false
}

func hasPlaceholderToken(f string) bool {
	for _, lv := range strings.Split(f, "/") {
		if _, _, _, has := parseTemplate(lv); has {
			return true
		}
	}
	return false
}

// apply adds (d = 1) or removes (d = -1) a rule's bits along levels in
// place. It is only used on nodes no snapshot has published yet.
func (n *node) applyMut(levels []string, bits uint8, d int32) {
	for _, lv := range levels {
		switch {
		case lv == "#":
			n.hash.add(bits, d)
			n.hashF = n.hash.flags()
			return
		case lv == "+":
			if n.plus == nil {
				n.plus = &node{}
			}
			n = n.plus
		default:
			if ps, useU, useC, has := parseTemplate(lv); has {
				var e *tmplEdge
				for _, x := range n.tmpl {
					if x.level == lv {
						e = x
						break
					}
				}
				if e == nil {
					e = &tmplEdge{level: lv, pieces: ps, useU: useU, useC: useC, child: &node{}}
					n.tmpl = append(n.tmpl, e)
				}
				n = e.child
				continue
			}
			if n.lit == nil {
				n.lit = make(map[string]*node)
			}
			c := n.lit[lv]
			if c == nil {
				c = &node{}
				n.lit[lv] = c
			}
			n = c
		}
	}
	n.end.add(bits, d)
	n.endF = n.end.flags()
}

// applyCOW returns a copy of n with the rule applied; nodes off the path are
// shared. It returns nil when the result is empty.
func applyCOW(n *node, levels []string, bits uint8, d int32) *node {
	nn := n.clone()
	if len(levels) == 0 {
		nn.end.add(bits, d)
		nn.endF = nn.end.flags()
	} else {
		lv := levels[0]
		switch {
		case lv == "#":
			nn.hash.add(bits, d)
			nn.hashF = nn.hash.flags()
		case lv == "+":
			nn.plus = applyCOW(n.childPlus(), levels[1:], bits, d)
		default:
			if ps, useU, useC, has := parseTemplate(lv); has {
				tm := slices.Clone(nn.tmpl)
				idx := slices.IndexFunc(tm, func(e *tmplEdge) bool { return e.level == lv })
				var old *node
				if idx >= 0 {
					old = tm[idx].child
				}
				child := applyCOW(old, levels[1:], bits, d)
				switch {
				case child == nil && idx >= 0:
					tm = slices.Delete(tm, idx, idx+1)
				case child != nil && idx >= 0:
					e := *tm[idx]
					e.child = child
					tm[idx] = &e
				case child != nil:
					tm = append(tm, &tmplEdge{level: lv, pieces: ps, useU: useU, useC: useC, child: child})
				}
				nn.tmpl = tm
				break
			}
			var old *node
			if n != nil {
				old = n.lit[lv]
			}
			child := applyCOW(old, levels[1:], bits, d)
			m := maps.Clone(nn.lit)
			if m == nil {
				m = make(map[string]*node)
			}
			if child == nil {
				delete(m, lv)
			} else {
				m[lv] = child
			}
			if len(m) == 0 {
				m = nil
			}
			nn.lit = m
		}
	}
	if nn.empty() {
		return nil
	}
	return nn
}

func (n *node) childPlus() *node {
	if n == nil {
		return nil
	}
	return n.plus
}

// query is one request as the trie walk needs it.
type query struct {
	u, c      string
	uOK, cOK  bool
	shareRisk bool
	dollar    bool
	// inLen is the length of the request topic.
	inLen int
}

// setTopic sets the per-topic part of q.
func (q *query) setTopic(t string) {
	q.dollar = t[0] == '$'
	q.inLen = len(t)
}

// newQuery prepares the per-client part of a query; set dollar per topic.
func newQuery(u, c string) query {
	q := query{u: u, c: c}
	q.uOK = topic.SafeLevel(u)
	q.cOK = topic.SafeLevel(c)
	// A template level can expand to "$share" only from values that are
	// substrings of it.
	q.shareRisk = (q.uOK && strings.Contains("$share", u)) || (q.cOK && strings.Contains("$share", c))
	return q
}

const shareLevel = "$share"

// walk returns the decision bits of every rule below n whose (expanded)
// filter covers rest, following topic.Covers level by level. depth is the
// number of levels consumed of the outer filter after any $share prefix; plen
// is the length of the expanded outer filter so far.
func (q *query) walk(n *node, rest string, depth, plen int) uint8 {
	var f uint8
	il, irest, imore := strings.Cut(rest, "/")
	sep := 0
	if plen > 0 {
		sep = 1
	}
	first := depth == 0
	if n.hashF != 0 && !(first && q.dollar) {
		l := plen + sep + 1
		if l <= topic.MaxLen {
			f |= n.hashF
		}
	}
	if il == "#" {
		// Besides "#", "+/#" covers a "#" that has no parent name: "#"
		// itself, or "/#" (the empty topic is not a name), as
		// topic.Covers decides.
		if consumed := q.inLen - len(rest); consumed <= 1 && n.plus != nil && n.plus.hashF != 0 && plen+sep+3 <= topic.MaxLen {
			f |= n.plus.hashF
		}
		return f
	}
	if il == "+" {
		if n.plus != nil {
			f |= q.next(n.plus, irest, imore, depth, plen+sep+1)
		}
		return f
	}
	if c := n.lit[il]; c != nil {
		if first && il == shareLevel && plen == 0 {
			f |= q.shareEnd(c, imore, plen+sep+len(il))
		} else {
			f |= q.next(c, irest, imore, depth, plen+sep+len(il))
		}
	}
	if n.plus != nil && !(first && q.dollar) {
		f |= q.next(n.plus, irest, imore, depth, plen+sep+1)
	}
	for _, e := range n.tmpl {
		if (e.useU && !q.uOK) || (e.useC && !q.cOK) {
			continue
		}
		if first && q.dollarLead(e) {
			continue
		}
		if first && plen == 0 && q.shareRisk && matchPieces(e.pieces, shareLevel, q.u, q.c) {
			// A placeholder value may not make the rule a shared
			// subscription (see expand): only the one-level filter
			// "$share" applies.
			if il == shareLevel {
				f |= q.shareEnd(e.child, imore, plen+sep+len(il))
			}
			continue
		}
		if matchPieces(e.pieces, il, q.u, q.c) {
			f |= q.next(e.child, irest, imore, depth, plen+sep+len(il))
		}
	}
	return f
}

// dollarLead reports whether template level e, as the first level of a
// filter, starts with a placeholder whose value starts with '$' (see
// expand: such a rule does not apply).
func (q *query) dollarLead(e *tmplEdge) bool {
	var v string
	switch e.pieces[0].kind {
	case 'u':
		v = q.u
	case 'c':
		v = q.c
	}
	return v != "" && v[0] == '$'
}

// shareEnd handles a first level "$share" matched as a plain level: only a
// one-level rule "$share" is a plain filter.
func (q *query) shareEnd(n *node, imore bool, l int) uint8 {
	if !imore && l <= topic.MaxLen {
		return n.endF
	}
	return 0
}

func (q *query) next(n *node, irest string, imore bool, depth, plen int) uint8 {
	if !imore {
		var f uint8
		if plen <= topic.MaxLen {
			f = n.endF
		}
		if n.hashF != 0 && plen+2 <= topic.MaxLen {
			f |= n.hashF
		}
		return f
	}
	return q.walk(n, irest, depth+1, plen)
}

// shareWalk evaluates the rules of root that are shared-subscription filters
// "$share/{group}/{filter}" as the policy writes them: the group is any
// literal or template level, and the filter after it is matched from its
// first level.
func (q *query) shareWalk(root *node, inner string) uint8 {
	if s := root.lit[shareLevel]; s != nil {
		return q.groups(s, inner, len(shareLevel))
	}
	return 0
}

func (q *query) groups(s *node, inner string, plen int) uint8 {
	var f uint8
	for g, gn := range s.lit {
		if g == "" {
			continue
		}
		f |= q.walk(gn, inner, 0, plen+1+len(g))
	}
	for _, e := range s.tmpl {
		if (e.useU && !q.uOK) || (e.useC && !q.cOK) {
			continue
		}
		f |= q.walk(e.child, inner, 0, plen+1+expandedLen(e.pieces, q.u, q.c))
	}
	return f
}

// match returns the decision bits of a subject's rules for the request.
func (q *query) match(s *subject, inner string) uint8 {
	if s == nil {
		return 0
	}
	var f uint8
	if s.root != nil {
		f = q.walk(s.root, inner, 0, 0)
		if s.share {
			f |= q.shareWalk(s.root, inner)
		}
	}
	for _, r := range s.slow {
		if MQTTMatch(inner, r.filter, q.u, q.c) {
			f |= r.bits
		}
	}
	return f
}

const nShards = 64

// snapshot is an immutable compiled policy.
type snapshot struct {
	gen    uint64
	seed   maphash.Seed
	shards [nShards]map[string]*subject
	// rg is the role graph of the g lines.
	rg roleGraph
	// bad counts policy lines with the wrong number of fields: Casbin's
	// Enforce fails on them, so every request is denied.
	bad   int
	rules int
	// commas counts policy lines with a comma in a field: Casbin's key of
	// such a line collides with another line's, so a removal reported with
	// one line may have removed another.
	commas int
	// dirty is set when a g line has more than two fields or a comma in a
	// field: Casbin truncates such lines to two names and keys them by
	// their joined fields, so its role links stop matching its own g lines
	// once one of them is removed (a link dropped that another line still
	// gives, or kept after its line went). The index then denies every
	// request, until a load rebuilds Casbin's role links from g lines
	// without them.
	dirty bool
	// declared are the role names given with WithRoles.
	declared map[string]bool
}

// broken reports whether the snapshot denies every request.
func (s *snapshot) broken() bool { return s.bad > 0 || s.dirty }

// refused reports whether user may have no rights at all: a subject may
// not be "*" or a role name (the role of a g line, or one declared with
// WithRoles).
func (s *snapshot) refused(user string) bool {
	return user == Everyone || s.isRole(user)
}

// isRole reports whether name is the role of a g line or declared with
// WithRoles.
func (s *snapshot) isRole(name string) bool {
	return len(s.rg.down[s.shard(name)][name]) != 0 || s.declared[name]
}

func hasComma(rule []string) bool {
	for _, f := range rule {
		if strings.Contains(f, ",") {
			return true
		}
	}
	return false
}

// dirtyGroup reports whether Casbin's role links may disagree with its g
// lines once g line r is added or removed (see snapshot.dirty).
func dirtyGroup(r []string) bool { return len(r) != 2 || hasComma(r) }

func (s *snapshot) shard(name string) int {
	return int(maphash.String(s.seed, name) % nShards)
}

func (s *snapshot) subject(name string) *subject {
	return s.shards[s.shard(name)][name]
}

// maxHierarchy is the depth limit of Casbin's default role manager.
const maxHierarchy = 10

// computeRoles returns, for every name with a g line, the roles it reaches
// within maxHierarchy steps, as Casbin's default role manager HasLink does.
func computeRoles(groups [][2]string) map[string][]string {
	edges := make(map[string][]string)
	for _, g := range groups {
		if !slices.Contains(edges[g[0]], g[1]) {
			edges[g[0]] = append(edges[g[0]], g[1])
		}
	}
	out := make(map[string][]string, len(edges))
	for name := range edges {
		seen := map[string]bool{name: true}
		var res []string
		frontier := []string{name}
		for level := 0; level < maxHierarchy && len(frontier) > 0; level++ {
			var nextF []string
			for _, r := range frontier {
				for _, to := range edges[r] {
					if !seen[to] {
						seen[to] = true
						res = append(res, to)
						nextF = append(nextF, to)
					}
				}
			}
			frontier = nextF
		}
		out[name] = res
	}
	return out
}

// build compiles a policy from scratch.
func build(gen uint64, seed maphash.Seed, policy [][]string, grouping [][]string) *snapshot {
	s := &snapshot{gen: gen, seed: seed}
	s.setRules(policy)
	s.setGroups(grouping)
	return s
}

// withRules returns a copy of s with the policy lines recompiled from m
// (role links kept).
func (s *snapshot) withRules(gen uint64, m model.Model) *snapshot {
	ns := *s
	ns.gen = gen
	p, _ := policyOf(m)
	ns.setRules(p)
	return &ns
}

// withGroups returns a copy of s with the role links rebuilt from m's g
// lines (policy lines kept).
func (s *snapshot) withGroups(gen uint64, m model.Model) *snapshot {
	ns := *s
	ns.gen = gen
	_, g := policyOf(m)
	ns.rg = roleGraph{}
	dirty := ns.dirty
	ns.setGroups(g)
	ns.dirty = ns.dirty || dirty
	return &ns
}

// setRules compiles the policy lines into fresh subject tables (in place:
// s is not published yet).
func (s *snapshot) setRules(policy [][]string) {
	s.bad, s.rules, s.commas = 0, 0, 0
	for i := range s.shards {
		s.shards[i] = make(map[string]*subject)
	}
	for _, r := range policy {
		if hasComma(r) {
			s.commas++
		}
		if len(r) != 4 {
			s.bad++
			continue
		}
		s.rules++
		bits := ruleBits(r[2], r[3])
		if bits == 0 {
			continue
		}
		levels, slow := compileFilter(r[1])
		if levels == nil && !slow {
			continue
		}
		m := s.shards[s.shard(r[0])]
		sub := m[r[0]]
		if sub == nil {
			sub = &subject{}
			m[r[0]] = sub
		}
		if slow {
			sub.slow = append(sub.slow, slowRule{filter: r[1], bits: bits})
			continue
		}
		if sub.root == nil {
			sub.root = &node{}
		}
		sub.root.applyMut(levels, bits, 1)
	}
	for _, m := range s.shards {
		for _, sub := range m {
			sub.finish()
		}
	}
}

// holds reports whether a rule with bits along levels is in the trie below
// n (every bit it sets counted at least once where it ends).
func (n *node) holds(levels []string, bits uint8) bool {
	for _, lv := range levels {
		if n == nil {
			return false
		}
		switch {
		case lv == "#":
			return countsHold(&n.hash, bits)
		case lv == "+":
			n = n.plus
		default:
			if _, _, _, has := parseTemplate(lv); has {
				i := slices.IndexFunc(n.tmpl, func(e *tmplEdge) bool { return e.level == lv })
				if i < 0 {
					return false
				}
				n = n.tmpl[i].child
				continue
			}
			n = n.lit[lv]
		}
	}
	return n != nil && countsHold(&n.end, bits)
}

func countsHold(c *counts, bits uint8) bool {
	for i, v := range c {
		if bits&(1<<i) != 0 && v < 1 {
			return false
		}
	}
	return true
}

// withRule returns a copy of s with one policy line added (d = 1) or
// removed (d = -1). Only the path of the rule is copied. It returns false
// when a removed rule is not in s (s and the enforcer disagree; the caller
// recompiles).
func (s *snapshot) withRule(gen uint64, r []string, d int32) (*snapshot, bool) {
	ns := *s
	ns.gen = gen
	if hasComma(r) {
		ns.commas += int(d)
	}
	if len(r) != 4 {
		ns.bad += int(d)
		return &ns, ns.bad >= 0 && ns.commas >= 0
	}
	ns.rules += int(d)
	if ns.rules < 0 || ns.commas < 0 {
		return nil, false
	}
	bits := ruleBits(r[2], r[3])
	if bits == 0 {
		return &ns, true
	}
	levels, slow := compileFilter(r[1])
	if levels == nil && !slow {
		return &ns, true
	}
	i := s.shard(r[0])
	old := s.shards[i][r[0]]
	sub := &subject{}
	if old != nil {
		*sub = *old
	}
	if slow {
		if d > 0 {
			sub.slow = append(slices.Clip(sub.slow), slowRule{filter: r[1], bits: bits})
		} else if k := slices.Index(sub.slow, slowRule{filter: r[1], bits: bits}); k >= 0 {
			sub.slow = slices.Delete(slices.Clone(sub.slow), k, k+1)
		} else {
			return nil, false
		}
	} else {
		if d < 0 && !sub.root.holds(levels, bits) {
			return nil, false
		}
		sub.root = applyCOW(sub.root, levels, bits, d)
	}
	sub.finish()
	m := maps.Clone(s.shards[i])
	if sub.root == nil && len(sub.slow) == 0 {
		delete(m, r[0])
	} else {
		m[r[0]] = sub
	}
	ns.shards[i] = m
	return &ns, true
}
