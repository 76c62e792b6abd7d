package ratelimit

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mqttsec/mqttsec"
)

// BanKind is what a [Ban] covers.
type BanKind uint8

// The kinds of ban.
const (
	// BanClientID bans an MQTT client identifier.
	BanClientID BanKind = iota + 1
	// BanSubject bans an authenticated subject: a user name, a token
	// subject, a certificate name. Before authentication it is compared
	// with the user name the CONNECT claims, after it with the identity's
	// subject.
	BanSubject
	// BanAddr bans an IP address or a CIDR prefix of addresses.
	BanAddr
)

// String returns the kind as the ban-list format writes it: "client_id",
// "subject" or "ip".
func (k BanKind) String() string {
	switch k {
	case BanClientID:
		return "client_id"
	case BanSubject:
		return "subject"
	case BanAddr:
		return "ip"
	}
	return fmt.Sprintf("BanKind(%d)", uint8(k))
}

// ParseBanKind returns the kind [BanKind.String] names.
func ParseBanKind(s string) (BanKind, error) {
	switch s {
	case "client_id":
		return BanClientID, nil
	case "subject":
		return BanSubject, nil
	case "ip":
		return BanAddr, nil
	}
	return 0, fmt.Errorf("%w: unknown ban kind %q", ErrInvalidBan, s)
}

// Ban refuses the CONNECTs of a client ID, a subject or an address (0x8A
// banned) until it expires, and ends the sessions it covers when it is
// added with [Bans.Add].
type Ban struct {
	Kind BanKind
	// Value is the client ID, the subject, or for BanAddr an IP address or
	// a CIDR prefix ("192.0.2.7", "10.0.0.0/8", "2001:db8::/32").
	// [Bans.Add] stores it in canonical form (an IPv4-mapped IPv6 address
	// as IPv4); a prefix with bits set past its length is refused.
	Value string
	// Until is when the ban ends; zero means never (until removed).
	Until time.Time
	// Reason says why, for administrators; it is never sent to a client.
	Reason string
	// Auto marks a ban the [Limiter] added by itself (failed logins,
	// flapping). Automatic bans are not persisted and do not end live
	// sessions.
	Auto bool
}

// Active reports whether the ban is in force at now.
func (b Ban) Active(now time.Time) bool { return b.Until.IsZero() || now.Before(b.Until) }

// ErrInvalidBan is returned for a ban that cannot be applied: an unknown
// kind, an empty or invalid value, an address that does not parse.
var ErrInvalidBan = errors.New("ratelimit: invalid ban")

// maxBanValue is the longest client ID or subject a ban takes: the longest
// MQTT string.
const maxBanValue = 65535

// normalize validates b and returns it in canonical form, with its prefix
// for an address ban.
func normalize(b Ban) (Ban, netip.Prefix, error) {
	if !b.Until.IsZero() {
		if y := b.Until.UTC().Year(); y < 1 || y > 9999 {
			return b, netip.Prefix{}, fmt.Errorf("%w: expiry year %d not in 1..9999", ErrInvalidBan, y)
		}
	}
	switch b.Kind {
	case BanClientID, BanSubject:
		if b.Value == "" || len(b.Value) > maxBanValue || !utf8.ValidString(b.Value) {
			return b, netip.Prefix{}, fmt.Errorf("%w: %s must be 1 to %d bytes of UTF-8", ErrInvalidBan, b.Kind, maxBanValue)
		}
		return b, netip.Prefix{}, nil
	case BanAddr:
		p, err := parseAddrOrPrefix(b.Value)
		if err != nil {
			return b, p, err
		}
		if p.IsSingleIP() {
			b.Value = p.Addr().String()
		} else {
			b.Value = p.String()
		}
		return b, p, nil
	}
	return b, netip.Prefix{}, fmt.Errorf("%w: unknown kind %d", ErrInvalidBan, uint8(b.Kind))
}

// parseAddrOrPrefix parses an address (a single-address prefix) or a
// masked CIDR prefix, without a zone; IPv4-mapped IPv6 becomes IPv4.
func parseAddrOrPrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%w: %q is not an IP address or CIDR prefix", ErrInvalidBan, s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%w: %q is not an IP address or CIDR prefix", ErrInvalidBan, s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%w: %q has bits set past its prefix length (did you mean %q?)", ErrInvalidBan, s, p.Masked().String())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// BanStore persists the bans added with [Bans.Add]: [BanFile] keeps them in
// a file, a distributed store in a database. It must be safe for concurrent
// use.
type BanStore interface {
	// LoadBans returns the stored bans.
	LoadBans(ctx context.Context) ([]Ban, error)
	// SaveBans replaces the stored bans with bans.
	SaveBans(ctx context.Context, bans []Ban) error
}

// Kicker ends the sessions a matcher selects; [*mqttsec.Guard] is one.
type Kicker interface {
	Kick(match func(*mqttsec.Session) bool, code mqttsec.ReasonCode) int
}

// BansConfig configures [NewBans].
type BansConfig struct {
	// Store persists the bans added with [Bans.Add]; nil keeps them in
	// memory only.
	Store BanStore
	// MaxAutomatic bounds the automatic bans remembered (active ones, and
	// expired ones kept for their growing durations); when it is reached
	// the one that would be forgotten first goes. Zero means
	// DefaultMaxAutomaticBans.
	MaxAutomatic int
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time
}

// DefaultMaxAutomaticBans is [BansConfig.MaxAutomatic]'s default: about
// 20 MB of bans at most.
const DefaultMaxAutomaticBans = 100_000

// Bans is a ban list: client IDs, subjects, addresses and CIDR prefixes that
// may not connect, each until its ban expires. The administrator's API is
// [Bans.Add], [Bans.Remove] and [Bans.List]; [Limiter] adds automatic bans
// (failed logins, flapping) whose durations grow for a key banned again.
//
// Checking a client costs a few map lookups under a read lock, one per
// distinct prefix length for address bans. Bans is safe for concurrent use;
// the zero Bans is an empty list in memory with the defaults of
// [BansConfig].
type Bans struct {
	now     func() time.Time
	store   BanStore
	maxAuto int
	kicker  atomic.Pointer[Kicker]
	count   atomic.Int64 // entries of every map: zero skips the lock

	saveMu sync.Mutex // serializes Add, Remove and Load with their saves

	mu       sync.RWMutex
	ids      map[string]*banEntry
	subjects map[string]*banEntry
	addrs    map[netip.Prefix]*banEntry // single addresses and prefixes
	plens    map[int]int                // prefix length (bits, +256 for IPv6) -> entries
	auto     autoHeap
}

type banEntry struct {
	Ban
	prefix  netip.Prefix
	strikes int       // automatic: bans of this key before this one
	forget  time.Time // automatic: when the entry is dropped
	index   int       // in the automatic heap, -1 for a manual ban
}

// NewBans returns an empty ban list. Call [Bans.Load] to read the stored
// bans, and [Bans.Attach] to end live sessions when a ban is added.
func NewBans(cfg BansConfig) *Bans {
	b := &Bans{now: cfg.Clock, store: cfg.Store, maxAuto: cfg.MaxAutomatic,
		ids: map[string]*banEntry{}, subjects: map[string]*banEntry{},
		addrs: map[netip.Prefix]*banEntry{}, plens: map[int]int{}}
	if b.now == nil {
		b.now = time.Now
	}
	if b.maxAuto <= 0 {
		b.maxAuto = DefaultMaxAutomaticBans
	}
	return b
}

func (b *Bans) clock() time.Time {
	if b.now == nil {
		return time.Now()
	}
	return b.now()
}

// Attach makes [Bans.Add] end the live and kept sessions a new ban covers,
// through k (the Guard): k.Kick with 0x8A (banned). A v5 client is sent a
// DISCONNECT with 0x98 (administrative action), because 0x8A is not a
// DISCONNECT reason code ([mqttsec.ReasonCode.ForDisconnect]); its will
// message is not published.
func (b *Bans) Attach(k Kicker) {
	if k == nil {
		b.kicker.Store(nil)
		return
	}
	b.kicker.Store(&k)
}

// Load replaces the bans added with [Bans.Add] by those of the store.
// Automatic bans stay. When the store fails or holds an invalid ban, nothing
// changes and the error is returned. Without a store Load does nothing.
func (b *Bans) Load(ctx context.Context) error {
	if b.store == nil {
		return nil
	}
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	list, err := b.store.LoadBans(ctx)
	if err != nil {
		return fmt.Errorf("ratelimit: load bans: %w", err)
	}
	entries := make([]*banEntry, 0, len(list))
	for _, ban := range list {
		ban.Auto = false
		nb, p, err := normalize(ban)
		if err != nil {
			return fmt.Errorf("ratelimit: load bans: %w", err)
		}
		entries = append(entries, &banEntry{Ban: nb, prefix: p, index: -1})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.each(func(e *banEntry) bool {
		if !e.Auto {
			b.remove(e)
		}
		return true
	})
	for _, e := range entries {
		if old := b.lookup(e.Kind, e.Value, e.prefix); old != nil {
			b.remove(old)
		}
		b.insert(e)
	}
	return nil
}

// Add bans a client ID, subject or address. A ban replaces any ban of the
// same value (an automatic one included). The bans are then saved to the
// store; when saving fails the ban is in force nevertheless and the error is
// returned. When a [Kicker] is attached, the sessions the ban covers are
// ended.
func (b *Bans) Add(ctx context.Context, ban Ban) error {
	ban.Auto = false
	nb, p, err := normalize(ban)
	if err != nil {
		return err
	}
	b.saveMu.Lock()
	b.mu.Lock()
	if old := b.lookup(nb.Kind, nb.Value, p); old != nil {
		b.remove(old)
	}
	b.insert(&banEntry{Ban: nb, prefix: p, index: -1})
	b.sweepManual(b.clock())
	b.mu.Unlock()
	err = b.save(ctx)
	b.saveMu.Unlock()
	if k := b.kicker.Load(); k != nil && nb.Active(b.clock()) {
		(*k).Kick(matcher(nb.Kind, nb.Value, p), mqttsec.CodeBanned)
	}
	return err
}

// Remove lifts the ban of kind on value (an automatic one included, whose
// growing duration is forgotten too) and reports whether there was one. The
// remaining bans are then saved.
func (b *Bans) Remove(ctx context.Context, kind BanKind, value string) (bool, error) {
	nb, p, err := normalize(Ban{Kind: kind, Value: value})
	if err != nil {
		return false, err
	}
	b.saveMu.Lock()
	defer b.saveMu.Unlock()
	b.mu.Lock()
	e := b.lookup(nb.Kind, nb.Value, p)
	if e != nil {
		b.remove(e)
	}
	b.mu.Unlock()
	if e == nil {
		return false, nil
	}
	return true, b.save(ctx)
}

// List returns the bans in force, sorted by kind and value.
func (b *Bans) List() []Ban {
	now := b.clock()
	b.mu.RLock()
	out := make([]Ban, 0, b.count.Load())
	b.each(func(e *banEntry) bool {
		if e.Active(now) {
			out = append(out, e.Ban)
		}
		return true
	})
	b.mu.RUnlock()
	slices.SortFunc(out, func(x, y Ban) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), strings.Compare(x.Value, y.Value))
	})
	return out
}

// Check returns a denial wrapping [mqttsec.ErrBanned] (0x8A) when a ban in
// force covers the client's ID, its user name (the subject after
// authentication) or its address, and nil otherwise.
func (b *Bans) Check(cl *mqttsec.Client) error {
	if b == nil || b.count.Load() == 0 {
		return nil
	}
	now := b.clock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	if e := b.ids[cl.ID]; cl.ID != "" && e != nil && e.Active(now) {
		return fmt.Errorf("%w: client ID %q", mqttsec.ErrBanned, cl.ID)
	}
	if e := b.subjects[cl.Username]; cl.Username != "" && e != nil && e.Active(now) {
		return fmt.Errorf("%w: user %q", mqttsec.ErrBanned, cl.Username)
	}
	if a, ok := clientAddr(cl); ok {
		if e := b.addrLookup(a); e != nil && e.Active(now) {
			return fmt.Errorf("%w: address %s", mqttsec.ErrBanned, e.Value)
		}
	}
	return nil
}

// addrLookup returns the entry covering a, the most specific first. The
// caller holds b.mu.
func (b *Bans) addrLookup(a netip.Addr) *banEntry {
	if len(b.addrs) == 0 {
		return nil
	}
	off := 0
	if a.Is6() {
		off = 256
	}
	for bits := a.BitLen(); bits >= 0; bits-- {
		if b.plens[off+bits] == 0 {
			continue
		}
		p, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		if e := b.addrs[p]; e != nil {
			return e
		}
	}
	return nil
}

// clientAddr returns the client's address, IPv4-mapped IPv6 as IPv4,
// without a zone.
func clientAddr(cl *mqttsec.Client) (netip.Addr, bool) {
	a, err := netip.ParseAddr(cl.IP())
	if err != nil {
		return a, false
	}
	return a.Unmap().WithZone(""), true
}

// matcher selects the sessions a ban covers.
func matcher(kind BanKind, value string, p netip.Prefix) func(*mqttsec.Session) bool {
	switch kind {
	case BanClientID:
		return mqttsec.MatchClientID(value)
	case BanSubject:
		return mqttsec.MatchSubject(value)
	}
	return func(s *mqttsec.Session) bool {
		a, ok := clientAddr(s.Client())
		return ok && p.Contains(a)
	}
}

// autoBan bans a key for base, doubled for every earlier automatic ban of
// the key still remembered, at most maxBan; the entry is remembered for
// maxBan after the ban ends. A manual ban in force is left as it is. It
// returns the ban and whether it was added.
func (b *Bans) autoBan(kind BanKind, value, reason string, base, maxBan time.Duration) (Ban, bool) {
	nb, p, err := normalize(Ban{Kind: kind, Value: value})
	if err != nil {
		return Ban{}, false
	}
	now := b.clock()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expireAuto(now)
	strikes := 0
	if old := b.lookup(nb.Kind, nb.Value, p); old != nil {
		if !old.Auto && old.Active(now) {
			return old.Ban, false
		}
		if old.Auto {
			strikes = old.strikes + 1
		}
		b.remove(old)
	}
	d := base
	for i := 0; i < strikes && d < maxBan; i++ {
		d *= 2
	}
	d = min(d, maxBan)
	nb.Until = now.Add(d)
	nb.Reason = reason
	nb.Auto = true
	b.insert(&banEntry{Ban: nb, prefix: p, strikes: strikes, forget: nb.Until.Add(maxBan)})
	for len(b.auto) > cmp.Or(b.maxAuto, DefaultMaxAutomaticBans) {
		b.remove(b.auto[0])
	}
	return nb, true
}

// expireAuto drops the automatic entries to forget. The caller holds b.mu.
func (b *Bans) expireAuto(now time.Time) {
	for len(b.auto) > 0 && !now.Before(b.auto[0].forget) {
		b.remove(b.auto[0])
	}
}

// sweepManual drops expired manual bans. The caller holds b.mu.
func (b *Bans) sweepManual(now time.Time) {
	b.each(func(e *banEntry) bool {
		if !e.Auto && !e.Active(now) {
			b.remove(e)
		}
		return true
	})
}

// save writes the manual bans in force to the store. The caller holds
// b.saveMu, not b.mu.
func (b *Bans) save(ctx context.Context) error {
	if b.store == nil {
		return nil
	}
	var manual []Ban
	for _, ban := range b.List() {
		if !ban.Auto {
			manual = append(manual, ban)
		}
	}
	if err := b.store.SaveBans(ctx, manual); err != nil {
		return fmt.Errorf("ratelimit: save bans: %w", err)
	}
	return nil
}

func (b *Bans) lookup(kind BanKind, value string, p netip.Prefix) *banEntry {
	switch kind {
	case BanClientID:
		return b.ids[value]
	case BanSubject:
		return b.subjects[value]
	case BanAddr:
		return b.addrs[p]
	}
	return nil
}

// each calls f for every entry until it returns false; f may remove the
// entry it is given. The caller holds b.mu.
func (b *Bans) each(f func(*banEntry) bool) {
	for _, e := range b.ids {
		if !f(e) {
			return
		}
	}
	for _, e := range b.subjects {
		if !f(e) {
			return
		}
	}
	for _, e := range b.addrs {
		if !f(e) {
			return
		}
	}
}

func plenKey(p netip.Prefix) int {
	if p.Addr().Is6() {
		return 256 + p.Bits()
	}
	return p.Bits()
}

// insert adds e; no entry of its value exists. The caller holds b.mu.
func (b *Bans) insert(e *banEntry) {
	if b.ids == nil {
		b.ids, b.subjects = map[string]*banEntry{}, map[string]*banEntry{}
		b.addrs, b.plens = map[netip.Prefix]*banEntry{}, map[int]int{}
	}
	switch e.Kind {
	case BanClientID:
		b.ids[e.Value] = e
	case BanSubject:
		b.subjects[e.Value] = e
	case BanAddr:
		b.addrs[e.prefix] = e
		b.plens[plenKey(e.prefix)]++
	}
	e.index = -1
	if e.Auto {
		heap.Push(&b.auto, e)
	}
	b.count.Add(1)
}

// remove deletes e. The caller holds b.mu.
func (b *Bans) remove(e *banEntry) {
	switch e.Kind {
	case BanClientID:
		delete(b.ids, e.Value)
	case BanSubject:
		delete(b.subjects, e.Value)
	case BanAddr:
		delete(b.addrs, e.prefix)
		k := plenKey(e.prefix)
		if b.plens[k]--; b.plens[k] <= 0 {
			delete(b.plens, k)
		}
	}
	if e.index >= 0 {
		heap.Remove(&b.auto, e.index)
	}
	b.count.Add(-1)
}

// autoHeap orders automatic entries by the time they are forgotten.
type autoHeap []*banEntry

func (h autoHeap) Len() int           { return len(h) }
func (h autoHeap) Less(i, j int) bool { return h[i].forget.Before(h[j].forget) }
func (h autoHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *autoHeap) Push(x any) {
	e := x.(*banEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *autoHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
