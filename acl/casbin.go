package acl

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/topic"
)

// GrantMode says how the grants a credential carries ([mqttsec.Grant], a JWT
// "acl" claim) combine with the policy.
//
// A grant's QoS list limits it to publishes at those QoS levels and to
// subscriptions granted at those levels: a subscription asking for QoS 2
// is granted the highest level up to 2 that the grants allow (see
// [Casbin.AuthorizeSubscription]), so a grant for QoS 0 and 1 turns it into
// a QoS 1 subscription in GrantsNarrow mode. Its Retain flag limits
// publishes only.
type GrantMode uint8

const (
	// GrantsNarrow (the default): when the identity carries grants, a
	// request must be allowed by the policy and by the first grant that
	// matches it; no matching grant denies (so an empty, non-nil list of
	// grants denies everything). Grants can only take rights away; a nil
	// list means the credential carries none and the policy alone decides.
	GrantsNarrow GrantMode = iota
	// GrantsWiden: the first grant that matches a request decides it
	// (allow or deny); when none matches, the policy decides. A token can
	// then give rights the policy does not.
	GrantsWiden
	// GrantsIgnore: grants are not looked at.
	GrantsIgnore
)

// Option configures [NewCasbin].
type Option func(*options)

type options struct {
	watcher persist.Watcher
	grants  GrantMode
	roles   map[string]bool
}

// WithWatcher chains a Casbin watcher (a cluster-wide one, say): NewCasbin
// installs its own watcher on the enforcer, forwards every notification to
// w, and reloads the policy when w reports a change made elsewhere. Use it
// instead of calling SetWatcher on the enforcer, which would replace the
// watcher that keeps the index in sync.
func WithWatcher(w persist.Watcher) Option { return func(o *options) { o.watcher = w } }

// WithGrants sets how credential grants combine with the policy; the
// default is [GrantsNarrow].
func WithGrants(m GrantMode) Option { return func(o *options) { o.grants = m } }

// WithRoles declares role names besides those the policy's g lines name:
// roles that only credentials carry ([mqttsec.Identity.Roles]). A subject
// may not be a role name (see the package documentation), so a token whose
// subject is "operators" does not get the rules of the role operators.
func WithRoles(names ...string) Option {
	return func(o *options) {
		if o.roles == nil {
			o.roles = make(map[string]bool, len(names))
		}
		for _, n := range names {
			o.roles[n] = true
		}
	}
}

// Casbin is an [mqttsec.Authorizer] whose decisions are exactly those of
// Enforce(user, client, topic, act) on a Casbin enforcer with [Model], taken
// from a compiled index instead of a scan of every rule, with two
// documented exceptions that only ever deny more: a subject that is "*" or
// a role name is denied everything, and so is every subject while a g line
// Casbin cannot keep consistently is in force (see the package
// documentation).
//
// NewCasbin keeps the index in sync with the enforcer: it wraps the
// enforcer's adapter (so LoadPolicy, LoadFilteredPolicy and watcher-driven
// reloads are seen) and installs a watcher (so AddPolicy, RemovePolicy,
// UpdatePolicy, AddGroupingPolicy and the other policy API calls are seen,
// each patching the index in place of a rebuild). Changes made behind those
// hooks — ClearPolicy, SetModel, SetAdapter, SetWatcher, Self* calls, a
// dispatcher, or EnableAutoNotifyWatcher(false) — need a call to
// [Casbin.Refresh]. A LoadFilteredPolicy that fails leaves the enforcer
// half-loaded: every check then denies until the next successful load or
// Refresh. Use one Casbin per enforcer: the enforcer has one
// watcher slot. Call NewCasbin after setting the enforcer's adapter, and
// chain your own watcher with [WithWatcher].
//
// Every change publishes a new immutable snapshot with a new generation;
// authorizers returned by [Casbin.Bind] notice it on their next check, so
// no decision is made on a stale policy.
//
// A Casbin is safe for concurrent use. Its checks take no lock and allocate
// nothing; policy changes are serialized.
type Casbin struct {
	e    casbin.IEnforcer
	opts options
	seed maphash.Seed

	mu   sync.Mutex // serializes writers of snap
	snap atomic.Pointer[snapshot]
	// base is the enforcer model the index mirrors; pending is a model an
	// adapter load filled that the enforcer may not have installed yet
	// (guarded by mu; see follow).
	base, pending uintptr
}

// NewCasbin registers mqttMatch and mqttAct on e, compiles e's policy and
// keeps the index in sync with it. e's model must be [Model].
func NewCasbin(e casbin.IEnforcer, opts ...Option) (*Casbin, error) {
	if e == nil {
		return nil, errors.New("acl: nil enforcer")
	}
	c := &Casbin{e: e, seed: maphash.MakeSeed()}
	for _, o := range opts {
		o(&c.opts)
	}
	m := e.GetModel()
	if err := checkModel(m); err != nil {
		return nil, err
	}
	e.AddFunction("mqttMatch", mqttMatchFunc)
	e.AddFunction("mqttAct", mqttActFunc)
	c.rebuild(m)
	if a := e.GetAdapter(); a != nil {
		e.SetAdapter(&policyAdapter{c: c, inner: a})
	}
	w := &policyWatcher{c: c, inner: c.opts.watcher}
	if err := e.SetWatcher(w); err != nil {
		return nil, err
	}
	if w.inner != nil {
		if err := w.inner.SetUpdateCallback(func(string) { _ = e.LoadPolicy() }); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Enforcer returns the enforcer c mirrors.
func (c *Casbin) Enforcer() casbin.IEnforcer { return c.e }

// Generation returns the generation of the current compiled policy. It
// changes on every policy change.
func (c *Casbin) Generation() uint64 { return c.snap.Load().gen }

// Refresh recompiles the index from the enforcer's current policy. Call it
// after changing the policy in a way NewCasbin cannot observe (see
// [Casbin]). With a casbin.SyncedEnforcer it reads the policy under the
// enforcer's read lock, and a LoadPolicy in progress (the new policy read,
// not yet installed) is left to finish: the index already mirrors the
// policy being installed, and compiling the old one would restore rules
// the load removed. Do not call Refresh from a watcher callback or while
// holding the enforcer's lock.
func (c *Casbin) Refresh() error {
	if l, ok := c.e.(interface{ GetLock() *sync.RWMutex }); ok {
		mu := l.GetLock()
		mu.RLock()
		defer mu.RUnlock()
	}
	c.watcherRefresh()
	return nil
}

// modelID identifies a model by its map, so that a model replaced by a
// copy (as LoadPolicy does) can be told from the one it replaced.
func modelID(m model.Model) uintptr { return reflect.ValueOf(m).Pointer() }

func policyOf(m model.Model) (p, g [][]string) {
	if a, ok := m["p"]["p"]; ok {
		p = a.Policy
	}
	if a, ok := m["g"]["g"]; ok {
		g = a.Policy
	}
	return p, g
}

func (c *Casbin) nextGen() uint64 {
	if s := c.snap.Load(); s != nil {
		return s.gen + 1
	}
	return 1
}

func (c *Casbin) rebuild(m model.Model) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store(m, true, false)
}

// store compiles m into a new snapshot; with ok false the snapshot denies
// every request. load says whether Casbin rebuilds its role links from m
// (a LoadPolicy): only then does a snapshot drop the mark of role links
// Casbin may no longer mirror exactly (see snapshot.dirty). The caller holds
// c.mu.
func (c *Casbin) store(m model.Model, ok, load bool) {
	p, g := policyOf(m)
	s := build(c.nextGen(), c.seed, p, g)
	s.declared = c.opts.roles
	if !ok {
		s.bad++
	}
	if prev := c.snap.Load(); !load && prev != nil && prev.dirty {
		s.dirty = true
	}
	c.snap.Store(s)
	c.base, c.pending = modelID(m), 0
}

// rebuildLoad recompiles the index from m, which an adapter has just
// filled; when the load failed, the new index denies every request. m is
// either the enforcer's live model (LoadFilteredPolicy) or a copy that
// LoadPolicy installs after the adapter returns.
func (c *Casbin) rebuildLoad(m model.Model, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := c.base
	c.store(m, ok, true)
	if id := modelID(m); id != modelID(c.e.GetModel()) {
		c.base, c.pending = base, id
	}
}

// follow decides how a change the watcher reports applies to the index.
// It returns true when the caller should apply the change to the current
// snapshot, false when there is nothing more to do: the index was rebuilt
// from the enforcer's model, or the change went to a model that a load in
// progress replaces (a SyncedEnforcer loads under a read lock and installs
// under the write lock, so a policy call can run in between; the index
// already mirrors the model being installed). The caller holds c.mu.
func (c *Casbin) follow() bool {
	cur := modelID(c.e.GetModel())
	switch {
	case c.pending != 0 && cur == c.pending:
		c.base, c.pending = cur, 0
		return true
	case cur == c.base:
		return c.pending == 0
	}
	c.store(c.e.GetModel(), true, false)
	return false
}

// watcherRefresh recompiles the index after a change the watcher reports
// without details (a batch call).
func (c *Casbin) watcherRefresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.follow() {
		c.store(c.e.GetModel(), true, false)
	}
}

// change is one rule added (d = 1) or removed (d = -1).
type change struct {
	rule []string
	d    int32
}

// patch applies changes of section "p" (policy lines) or "g" (role links)
// as one new snapshot.
//
// Casbin reports the rule it was given, which is not always the rule it
// changed: it keys rules by their fields joined with commas, so removing
// ("bob,x", "y/#", ...) removes ("bob", "x,y/#", ...). A change that could
// have collided (a field with a comma, or a removal while some rule has
// one), and a removal of a rule the index does not hold, recompiles that
// section from the enforcer's model instead. Role links Casbin may keep
// apart from its own g lines (see snapshot.dirty) make the index deny
// everything.
func (c *Casbin) patch(sec string, changes ...change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.follow() {
		return
	}
	s := c.snap.Load()
	gen := s.gen + 1
	switch sec {
	case "p":
		s = c.patchRules(s, gen, changes)
	case "g":
		s = c.patchGroups(s, gen, changes)
	default:
		return
	}
	c.snap.Store(s)
}

func (c *Casbin) patchRules(s *snapshot, gen uint64, changes []change) *snapshot {
	for _, ch := range changes {
		if hasComma(ch.rule) || (ch.d < 0 && s.commas > 0) {
			return s.withRules(gen, c.e.GetModel())
		}
	}
	for _, ch := range changes {
		ns, ok := s.withRule(gen, ch.rule, ch.d)
		if !ok {
			return s.withRules(gen, c.e.GetModel())
		}
		s = ns
	}
	return s
}

func (c *Casbin) patchGroups(s *snapshot, gen uint64, changes []change) *snapshot {
	for _, ch := range changes {
		if dirtyGroup(ch.rule) {
			ns := *s
			ns.gen, ns.dirty = gen, true
			return &ns
		}
	}
	for _, ch := range changes {
		ns, ok := s.withGroup(gen, ch.rule[0], ch.rule[1], ch.d)
		if !ok {
			return s.withGroups(gen, c.e.GetModel())
		}
		s = ns
	}
	return s
}

// access maps an mqttsec access to the request act and its decision bits.
func access(a mqttsec.Access) (allow, deny uint8, ok bool) {
	switch a {
	case mqttsec.Publish:
		return fAllowWrite, fDenyWrite, true
	case mqttsec.Subscribe, mqttsec.Receive:
		return fAllowRead, fDenyRead, true
	}
	return 0, 0, false
}

func actBits(act string) (allow, deny uint8, ok bool) {
	switch act {
	case ActWrite:
		return fAllowWrite, fDenyWrite, true
	case ActRead:
		return fAllowRead, fDenyRead, true
	}
	return 0, 0, false
}

// decide is the index's answer to Enforce(user, client, t, act), where
// roles are the roles of user ([snapshot.resolve]). t is taken literally (a
// subscription filter without its $share prefix, or a topic name).
func (s *snapshot) decide(user, client string, roles []string, t string, allow, deny uint8) bool {
	if s.broken() || s.refused(user) || topic.ValidateLiteral(t) != nil {
		return false
	}
	q := newQuery(user, client)
	q.setTopic(t)
	f := q.match(s.subject(user), t)
	if f&deny != 0 {
		return false
	}
	for _, r := range roles {
		if r == user || r == Everyone {
			continue // matched above and below
		}
		f |= q.match(s.subject(r), t)
		if f&deny != 0 {
			return false
		}
	}
	if user != Everyone {
		f |= q.match(s.subject(Everyone), t)
	}
	return f&allow != 0 && f&deny == 0
}

// identityRoles returns the roles cl's identity carries.
func identityRoles(cl *mqttsec.Client) []string {
	if cl.Identity == nil {
		return nil
	}
	return cl.Identity.Roles
}

// decideClient decides a request of cl, with the roles its identity
// carries. It allocates only when the identity carries roles.
func (s *snapshot) decideClient(cl *mqttsec.Client, t string, allow, deny uint8) bool {
	return s.decide(cl.Username, cl.ID, s.resolve(cl.Username, identityRoles(cl)), t, allow, deny)
}

// Allowed reports whether the policy allows the request: it equals
// e.Enforce(user, client, t, act) (with an error counted as a denial) for
// act "read" or "write", except that a user that is "*" or a role name is
// denied (see [Casbin]); any other act is denied.
func (c *Casbin) Allowed(user, client, act, t string) bool {
	return c.AllowedRoles(user, client, nil, act, t)
}

// AllowedRoles is [Casbin.Allowed] for a user whose credential carries
// roles: it equals Enforce on the enforcer with a g line (user, r) added
// for each r in roles.
func (c *Casbin) AllowedRoles(user, client string, roles []string, act, t string) bool {
	allow, deny, ok := actBits(act)
	if !ok {
		return false
	}
	s := c.snap.Load()
	return s.decide(user, client, s.resolve(user, roles), t, allow, deny)
}

// Authorize implements [mqttsec.Authorizer]: user is cl.Username, client is
// cl.ID, Publish is "write" and Subscribe and Receive are "read"; the roles
// cl.Identity carries count as g lines (cl.Username, role). It returns nil
// to allow or an error wrapping [mqttsec.ErrNotAuthorized]. Grants on
// cl.Identity combine with the policy as [WithGrants] says. It allocates
// nothing, except to expand grants and resolve identity roles: a
// [mqttsec.Guard] uses [Casbin.Bind], which does both once per connection.
func (c *Casbin) Authorize(_ context.Context, cl *mqttsec.Client, a mqttsec.Access, t string) error {
	allow, deny, ok := access(a)
	if !ok {
		return ErrDenied
	}
	s := c.snap.Load()
	if !s.decideClient(cl, t, allow, deny) {
		if s.refused(cl.Username) {
			return errRoleSubject
		}
		if c.grantsDecide(cl, a, t, nil) {
			return nil
		}
		return ErrDenied
	}
	if c.grantsRestrict(cl, a, t, nil) {
		return ErrDenied
	}
	return nil
}

// AuthorizeMessage implements [mqttsec.MessageAuthorizer]: the policy
// decides the topic, and grants may also look at QoS and retain.
func (c *Casbin) AuthorizeMessage(_ context.Context, cl *mqttsec.Client, m *mqttsec.Message) error {
	s := c.snap.Load()
	if !s.decideClient(cl, m.Topic, fAllowWrite, fDenyWrite) {
		if s.refused(cl.Username) {
			return errRoleSubject
		}
		if c.grantsDecide(cl, mqttsec.Publish, m.Topic, m) {
			return nil
		}
		return ErrDenied
	}
	if c.grantsRestrict(cl, mqttsec.Publish, m.Topic, m) {
		return ErrDenied
	}
	return nil
}

// Bind implements [mqttsec.ClientBinder]: it resolves the client's roles
// (its g lines and the roles cl.Identity carries) and subjects once, and the
// returned authorizer rebinds itself when the policy generation changes.
func (c *Casbin) Bind(cl *mqttsec.Client) mqttsec.Authorizer {
	b := &Bound{c: c, roles: identityRoles(cl)}
	if cl.Identity != nil && c.opts.grants != GrantsIgnore && cl.Identity.Grants != nil {
		b.grants = compileGrants(cl.Identity.Grants, cl.Username, cl.ID)
		b.hasGrants = true
	}
	b.v.Store(c.view(c.snap.Load(), cl.Username, cl.ID, b.roles))
	return b
}

// Bound is the per-connection authorizer [Casbin.Bind] returns. It is safe
// for concurrent use.
type Bound struct {
	c         *Casbin
	v         atomic.Pointer[view]
	roles     []string // carried by the identity
	grants    []grant
	hasGrants bool
}

// view is a client's subjects resolved against one snapshot.
type view struct {
	s    *snapshot
	q    query // per-client part, computed once
	subs []*subject
	// refused is set when the user is "*" or a role name: every request
	// is denied, grants included.
	refused bool
}

func (c *Casbin) view(s *snapshot, user, client string, roles []string) *view {
	v := &view{s: s, q: newQuery(user, client)}
	if s.refused(user) {
		v.refused = true
		return v
	}
	add := func(name string) {
		if sub := s.subject(name); sub != nil {
			v.subs = append(v.subs, sub)
		}
	}
	add(user)
	// resolve lists each role once and never user itself.
	for _, r := range s.resolve(user, roles) {
		if r != Everyone {
			add(r)
		}
	}
	if user != Everyone {
		add(Everyone)
	}
	return v
}

func (b *Bound) current() *view {
	s := b.c.snap.Load()
	v := b.v.Load()
	if v.s != s {
		v = b.c.view(s, v.q.u, v.q.c, b.roles)
		b.v.Store(v)
	}
	return v
}

func (v *view) decide(t string, allow, deny uint8) bool {
	if v.s.broken() || topic.ValidateLiteral(t) != nil {
		return false
	}
	q := v.q
	q.setTopic(t)
	var f uint8
	for _, sub := range v.subs {
		f |= q.match(sub, t)
		if f&deny != 0 {
			return false
		}
	}
	return f&allow != 0
}

// Authorize implements [mqttsec.Authorizer] for the bound client. cl must
// be the client Bind was called with.
func (b *Bound) Authorize(_ context.Context, cl *mqttsec.Client, a mqttsec.Access, t string) error {
	allow, deny, ok := access(a)
	if !ok {
		return ErrDenied
	}
	v := b.current()
	if v.refused {
		return errRoleSubject
	}
	if b.combine(v.decide(t, allow, deny), a, t, nil) {
		return nil
	}
	return ErrDenied
}

// AuthorizeMessage implements [mqttsec.MessageAuthorizer].
func (b *Bound) AuthorizeMessage(_ context.Context, cl *mqttsec.Client, m *mqttsec.Message) error {
	v := b.current()
	if v.refused {
		return errRoleSubject
	}
	pol := v.decide(m.Topic, fAllowWrite, fDenyWrite)
	if b.combine(pol, mqttsec.Publish, m.Topic, m) {
		return nil
	}
	return ErrDenied
}

// AuthorizeSubscription implements [mqttsec.SubscriptionAuthorizer]: the
// policy decides sub.Filter as [Casbin.Authorize] decides a Subscribe, and
// grants on cl.Identity may also limit the QoS. Each QoS level from
// sub.QoS down to 0 is decided as a publish at that QoS would be: by the
// first grant that applies to it (Subscribe access, a filter covering
// sub.Filter, a QoS list that is empty or holds the level), combined with
// the policy as [WithGrants] says. It returns the highest level allowed,
// or an error wrapping [mqttsec.ErrNotAuthorized] when none is.
func (c *Casbin) AuthorizeSubscription(_ context.Context, cl *mqttsec.Client, sub *mqttsec.Subscription) (byte, error) {
	s := c.snap.Load()
	if s.refused(cl.Username) {
		return 0, errRoleSubject
	}
	pol := s.decideClient(cl, sub.Filter, fAllowRead, fDenyRead)
	gs, has := c.grantsOf(cl)
	return subscriptionQoS(c.opts.grants, pol, has, gs, sub)
}

// AuthorizeSubscription implements [mqttsec.SubscriptionAuthorizer] for the
// bound client (see [Casbin.AuthorizeSubscription]). It allocates nothing.
func (b *Bound) AuthorizeSubscription(_ context.Context, cl *mqttsec.Client, sub *mqttsec.Subscription) (byte, error) {
	v := b.current()
	if v.refused {
		return 0, errRoleSubject
	}
	pol := v.decide(sub.Filter, fAllowRead, fDenyRead)
	return subscriptionQoS(b.c.opts.grants, pol, b.hasGrants, b.grants, sub)
}

// errRoleSubject is the denial of every request of a subject that is "*"
// or a role name.
var errRoleSubject = fmt.Errorf("%w: the subject is a role name or \"*\" and may not take its rules", ErrDenied)

// errQoS is the denial of a subscription whose grants allow no QoS level up
// to the one asked for.
var errQoS = fmt.Errorf("%w: no QoS level up to the one asked for is granted", ErrDenied)

// subscriptionQoS combines the policy's decision pol with the grants gs
// (when the identity carries grants, has) for a subscription.
func subscriptionQoS(mode GrantMode, pol, has bool, gs []grant, sub *mqttsec.Subscription) (byte, error) {
	if sub.QoS > 2 {
		return 0, ErrDenied
	}
	if !has {
		if pol {
			return sub.QoS, nil
		}
		return 0, ErrDenied
	}
	if mode != GrantsWiden && !pol {
		return 0, ErrDenied
	}
	for q := int(sub.QoS); q >= 0; q-- {
		allow, found := firstSubscribeGrant(gs, sub.Filter, byte(q))
		if found && allow || !found && mode == GrantsWiden && pol {
			return byte(q), nil
		}
	}
	return 0, errQoS
}

func (b *Bound) combine(pol bool, a mqttsec.Access, t string, m *mqttsec.Message) bool {
	if !b.hasGrants {
		return pol
	}
	g, found := firstGrant(b.grants, a, t, m)
	switch b.c.opts.grants {
	case GrantsWiden:
		if found {
			return g
		}
		return pol
	default:
		return pol && found && g
	}
}

var (
	_ mqttsec.Authorizer        = (*Casbin)(nil)
	_ mqttsec.ClientBinder      = (*Casbin)(nil)
	_ mqttsec.MessageAuthorizer = (*Casbin)(nil)
	_ mqttsec.Authorizer        = (*Bound)(nil)
	_ mqttsec.MessageAuthorizer = (*Bound)(nil)

	_ mqttsec.SubscriptionAuthorizer = (*Casbin)(nil)
	_ mqttsec.SubscriptionAuthorizer = (*Bound)(nil)
)

// decideBits is decide for an act given as text; an act other than "read"
// or "write" is denied.
func (s *snapshot) decideBits(user, client string, roles []string, act, t string) bool {
	allow, deny, ok := actBits(act)
	return ok && s.decide(user, client, roles, t, allow, deny)
}
