package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/ratelimit"
)

var (
	//go:embed lua/bans.lua
	bansLua    string
	bansScript = redis.NewScript(bansLua)
)

// maxBans bounds the ban list a node reads from Redis.
const maxBans = 1 << 20

// maxReason bounds the reason of a ban stored in Redis, in bytes.
const maxReason = 1024

// BanConfig configures a [BanStore].
type BanConfig struct {
	// InsecureFailOpen makes [BanStore.Limiter] admit CONNECTs while this
	// node's copy of the ban list may be stale (its subscription is down,
	// or the last reload failed): a client banned elsewhere meanwhile could
	// connect here. The default refuses such CONNECTs with 0x88 (server
	// unavailable).
	InsecureFailOpen bool
}

// BanStore is the cluster's ban list in Redis: a [ratelimit.BanStore] that
// all brokers share, so that a ban added on one broker refuses the client
// on every broker and ends its sessions wherever they are.
//
//	bans := node.BanStore(redisstore.BanConfig{})
//	list := ratelimit.NewBans(ratelimit.BansConfig{Store: bans})
//	lim, err := ratelimit.New(ratelimit.Config{Bans: list, NewStore: node.NewStore(redisstore.RateConfig{})})
//	err = bans.Follow(list)            // load it, and keep it in sync
//	guard := mqttsec.New(mqttsec.Config{Limiter: bans.Limiter(lim), ...})
//	list.Attach(guard)                 // a ban ends the sessions it covers here
//	node.Attach(guard)                 // ... and on the other brokers
//
// Each broker checks CONNECTs against its own copy of the list (no round
// trip). [ratelimit.Bans.Add] and Remove write the change to Redis (only the
// bans that changed, so that two brokers banning at once keep both bans) and
// publish it; every other broker reloads its copy and ends the live and
// kept sessions the list covers (0x8A, sent as 0x98 to a v5 client).
// Automatic bans (failed logins, flapping) stay per broker; share them by
// keeping their rate limits in Redis ([Node.NewStore]).
//
// # Faults
//
// A change that cannot be written returns the error (the ban is in force on
// the broker that made it) and is written when Redis answers again. While a
// broker's copy may be stale — its subscription is broken, or its last
// reload failed — [BanStore.Limiter] refuses CONNECTs with 0x88, unless
// [BanConfig.InsecureFailOpen]. After the subscription is back, the copy is
// reloaded at once.
//
// The list is one hash, "<prefix>bans"; bans are dropped when they end and
// the key expires with the last one, except that a ban without an end keeps
// the key (as the administrator asked). A BanStore is safe for concurrent
// use.
type BanStore struct {
	n        *Node
	key      string
	failOpen bool
	wake     chan struct{}

	saveMu  sync.Mutex        // serializes flushes
	mu      sync.Mutex        // guards last, want and pending
	last    map[string]string // the list as this node last read or wrote it
	want    map[string]string // the newest list given to SaveBans
	pending bool              // want is not written yet

	bans      atomic.Pointer[ratelimit.Bans]
	loadOK    atomic.Bool
	loadedGen atomic.Uint64 // the subscription generation of the last good reload
}

// BanStore returns the [BanStore] of the node's cluster and starts the
// goroutine that reloads the followed list (stopped by [Node.Close]). A node
// normally has one.
func (n *Node) BanStore(cfg BanConfig) *BanStore {
	s := &BanStore{n: n, key: n.prefix + "bans", failOpen: cfg.InsecureFailOpen, wake: make(chan struct{}, 1)}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		return s
	}
	n.banStores = append(n.banStores, s)
	n.wg.Add(1)
	go s.run()
	return s
}

func banField(b ratelimit.Ban) string { return b.Kind.String() + "|" + b.Value }

func banValue(b ratelimit.Ban) string {
	var until int64
	if !b.Until.IsZero() {
		until = max(b.Until.UnixMilli(), 1)
	}
	reason := b.Reason
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	return strconv.FormatInt(until, 10) + "|" + reason
}

func parseBan(field, value string) (ratelimit.Ban, bool) {
	kind, v, ok := strings.Cut(field, "|")
	if !ok {
		return ratelimit.Ban{}, false
	}
	k, err := ratelimit.ParseBanKind(kind)
	if err != nil {
		return ratelimit.Ban{}, false
	}
	u, reason, ok := strings.Cut(value, "|")
	if !ok {
		return ratelimit.Ban{}, false
	}
	ms, err := strconv.ParseInt(u, 10, 64)
	if err != nil || ms < 0 {
		return ratelimit.Ban{}, false
	}
	b := ratelimit.Ban{Kind: k, Value: v, Reason: reason}
	if ms > 0 {
		b.Until = time.UnixMilli(ms)
	}
	return b, true
}

// LoadBans implements [ratelimit.BanStore]: it reads the cluster's list.
// Entries that do not parse are skipped and reported.
func (s *BanStore) LoadBans(ctx context.Context) ([]ratelimit.Ban, error) {
	ctx, cancel := s.n.opContext(ctx)
	defer cancel()
	pipe := s.n.rdb.Pipeline()
	hlen := pipe.HLen(ctx, s.key)
	all := pipe.HGetAll(ctx, s.key)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, s.n.fail("load bans", err)
	}
	s.n.ok()
	if hlen.Val() > maxBans {
		return nil, fmt.Errorf("redisstore: %d bans in %q, more than %d", hlen.Val(), s.key, maxBans)
	}
	m := all.Val()
	now := time.Now()
	list := make([]ratelimit.Ban, 0, len(m))
	bad := 0
	for f, v := range m {
		b, ok := parseBan(f, v)
		if !ok {
			bad++
			continue
		}
		if b.Active(now) {
			list = append(list, b)
		}
	}
	if bad > 0 {
		s.n.emit(mqttsec.Event{Kind: mqttsec.EventWarning, Source: "redis",
			Err: fmt.Errorf("redisstore: skipped %d malformed bans in %q", bad, s.key)})
	}
	s.mu.Lock()
	s.last = m
	s.mu.Unlock()
	return list, nil
}

// SaveBans implements [ratelimit.BanStore]: it writes the bans that changed
// since this node last read or wrote the list (so that a ban another node
// added meanwhile stays), and tells the other nodes.
func (s *BanStore) SaveBans(ctx context.Context, bans []ratelimit.Ban) error {
	want := make(map[string]string, len(bans))
	for _, b := range bans {
		if !b.Auto {
			want[banField(b)] = banValue(b)
		}
	}
	s.mu.Lock()
	s.want, s.pending = want, true
	s.mu.Unlock()
	return s.flush(ctx)
}

// flush writes the newest list given to SaveBans, if it is not written
// yet. Flushes are serialized, and each writes the newest list, so that an
// older list never overwrites a newer one.
func (s *BanStore) flush(ctx context.Context) error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	want, pending, last := s.want, s.pending, s.last
	s.mu.Unlock()
	if !pending {
		return nil
	}
	var set, del []any
	for f, v := range want {
		if old, ok := last[f]; !ok || old != v {
			set = append(set, f, v)
		}
	}
	for f := range last {
		if _, ok := want[f]; !ok {
			del = append(del, f)
		}
	}
	if len(set) > 0 || len(del) > 0 {
		args := append([]any{s.n.banChan, "1|" + s.n.id, len(set) / 2}, set...)
		args = append(args, del...)
		octx, cancel := s.n.opContext(ctx)
		err := bansScript.Run(octx, s.n.rdb, []string{s.key}, args...).Err()
		cancel()
		if err != nil {
			return s.n.fail("save bans", err)
		}
		s.n.ok()
	}
	s.mu.Lock()
	if sameMap(s.last, last) {
		s.last = want
	}
	if sameMap(s.want, want) {
		s.pending = false
	}
	s.mu.Unlock()
	// Read back the merged list: other nodes' bans this copy lacks.
	s.reload()
	return nil
}

func sameMap(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}

// Follow loads the cluster's list into b now and keeps b in sync: when
// another node changes the list, after a broken subscription, and after a
// change of this node was written. After each reload it ends this node's
// sessions the list covers ([Node.Attach]'s Guard, with 0x8A). b must use
// s as its store, and be loaded by Follow only (not [ratelimit.Bans.Load]).
func (s *BanStore) Follow(b *ratelimit.Bans) error {
	if b == nil {
		return errors.New("redisstore: Follow(nil)")
	}
	s.bans.Store(b)
	return s.load(context.Background())
}

// Fresh reports whether this node's copy of the list is current: the node
// is subscribed, and the list was reloaded since it last subscribed.
func (s *BanStore) Fresh() bool {
	return s.n.subscribed.Load() && s.loadOK.Load() && s.loadedGen.Load() == s.n.subGen.Load()
}

// ErrStaleBans is a CONNECT refused because this node's copy of the ban
// list may be stale; it wraps [mqttsec.ErrServerUnavailable] (0x88).
var ErrStaleBans = fmt.Errorf("%w: redisstore: the cluster's ban list may be stale", mqttsec.ErrServerUnavailable)

// Limiter returns next (the Guard's Limiter, a [ratelimit.Limiter]) behind
// a check that refuses CONNECTs with [ErrStaleBans] while the list is not
// [BanStore.Fresh], unless [BanConfig.InsecureFailOpen]. It keeps next's
// per-connection limits ([mqttsec.ConnectionLimiter]). A nil next limits
// nothing else.
func (s *BanStore) Limiter(next mqttsec.Limiter) mqttsec.Limiter {
	g := staleCheck{s: s, next: next}
	if cl, ok := next.(mqttsec.ConnectionLimiter); ok {
		return staleCheckConn{staleCheck: g, cl: cl}
	}
	return g
}

type staleCheck struct {
	s    *BanStore
	next mqttsec.Limiter
}

func (g staleCheck) Allow(cl *mqttsec.Client, l mqttsec.Limit, n int) error {
	if l == mqttsec.LimitConnect && !g.s.failOpen && !g.s.Fresh() {
		return ErrStaleBans
	}
	if g.next == nil {
		return nil
	}
	return g.next.Allow(cl, l, n)
}

type staleCheckConn struct {
	staleCheck
	cl mqttsec.ConnectionLimiter
}

func (g staleCheckConn) Open(s *mqttsec.Session) (mqttsec.ConnLimiter, error) { return g.cl.Open(s) }

// load reloads the followed list and ends the sessions it covers.
func (s *BanStore) load(ctx context.Context) error {
	b := s.bans.Load()
	if b == nil {
		return nil
	}
	gen := s.n.subGen.Load()
	s.mu.Lock()
	prev := s.last
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 2*s.n.timeout)
	err := b.Load(ctx)
	cancel()
	if err != nil {
		// b kept its old list (it refuses a list with an invalid ban):
		// diff the next save against what b has, or it would delete the
		// bans b could not take.
		s.mu.Lock()
		s.last = prev
		s.mu.Unlock()
		s.loadOK.Store(false)
		return err
	}
	s.loadedGen.Store(gen)
	s.loadOK.Store(true)
	if k := s.n.getKicker(); k != nil {
		if match := bannedBy(b.List()); match != nil {
			k.Kick(match, mqttsec.CodeBanned)
		}
	}
	return nil
}

// bannedBy returns a matcher of the sessions the manual bans of list cover
// (automatic bans end no session), or nil when there are none.
func bannedBy(list []ratelimit.Ban) func(*mqttsec.Session) bool {
	ids, subjects := map[string]bool{}, map[string]bool{}
	var prefixes []netip.Prefix
	for _, b := range list {
		if b.Auto {
			continue
		}
		switch b.Kind {
		case ratelimit.BanClientID:
			ids[b.Value] = true
		case ratelimit.BanSubject:
			subjects[b.Value] = true
		case ratelimit.BanAddr:
			if p, err := netip.ParsePrefix(b.Value); err == nil {
				prefixes = append(prefixes, p)
			} else if a, err := netip.ParseAddr(b.Value); err == nil {
				prefixes = append(prefixes, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			}
		}
	}
	if len(ids)+len(subjects)+len(prefixes) == 0 {
		return nil
	}
	return func(ss *mqttsec.Session) bool {
		cl := ss.Client()
		if ids[cl.ID] || (cl.Identity != nil && subjects[cl.Identity.Subject]) {
			return true
		}
		if len(prefixes) == 0 {
			return false
		}
		a, err := netip.ParseAddr(cl.IP())
		if err != nil {
			return false
		}
		a = a.Unmap().WithZone("")
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}

// reload asks the goroutine to reload the followed list.
func (s *BanStore) reload() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// retry writes a change that could not be written, then reloads.
func (s *BanStore) retry(ctx context.Context) {
	if err := s.flush(ctx); err != nil {
		return
	}
	if err := s.load(ctx); err != nil {
		s.n.emit(mqttsec.Event{Kind: mqttsec.EventError, Source: "redis", Err: fmt.Errorf("redisstore: reload bans: %w", err)})
	}
}

func (s *BanStore) run() {
	defer s.n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.n.ctx.Done():
			return
		case <-s.wake:
			s.retry(s.n.ctx)
		case <-t.C:
			// A stale copy or an unwritten change is retried every second.
			s.mu.Lock()
			pending := s.pending
			s.mu.Unlock()
			if pending || (s.bans.Load() != nil && !s.Fresh() && s.n.subscribed.Load()) {
				s.retry(s.n.ctx)
			}
		}
	}
}

// handleBans applies a change another node published.
func (n *Node) handleBans(payload string) {
	from, ok := strings.CutPrefix(payload, "1|")
	if !ok {
		n.emit(mqttsec.Event{Kind: mqttsec.EventWarning, Source: "redis",
			Err: fmt.Errorf("redisstore: ignored a malformed message on %q", n.banChan)})
		return
	}
	if from == n.id {
		return
	}
	n.mu.Lock()
	ss := append([]*BanStore(nil), n.banStores...)
	n.mu.Unlock()
	for _, s := range ss {
		s.reload()
	}
}

var _ ratelimit.BanStore = (*BanStore)(nil)
