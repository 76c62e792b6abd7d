package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
)

var (
	//go:embed lua/claim.lua
	claimLua    string
	claimScript = redis.NewScript(claimLua)
	//go:embed lua/release.lua
	releaseLua    string
	releaseScript = redis.NewScript(releaseLua)
	//go:embed lua/kept.lua
	keptLua    string
	keptScript = redis.NewScript(keptLua)
)

// Defaults of [RegistryConfig].
const (
	DefaultLeaseTTL = 30 * time.Second
	DefaultMaxKeep  = 24 * time.Hour
)

// maxLeases bounds the live leases of one client ID: a connection and
// those of the same identity taking it over before their brokers closed
// it. It bounds the work of a claim.
const maxLeases = 32

// kickRetries is how many times a kick that found no session is tried
// again, 100 ms apart: a takeover on another node can be published between
// this node's claim and the moment its Guard registers the session.
const kickRetries = 30

// refreshBatch is the number of leases refreshed in one pipeline (a
// variable for the benchmarks).
var refreshBatch atomic.Int64

func init() { refreshBatch.Store(512) }

// RegistryConfig configures a [Registry]. The zero RegistryConfig is ready
// to use: takeover by the owner only, 30 s leases, kept sessions bound for
// up to 24 hours, and claims refused while Redis is unreachable.
type RegistryConfig struct {
	// Takeover is what a claim of an ID held elsewhere in the cluster does,
	// as in [clientid.Registry]; the default is [clientid.TakeoverOwner].
	Takeover clientid.Takeover
	// LeaseTTL is how long a live connection's lease lasts in Redis without
	// being refreshed; the node refreshes its leases every LeaseTTL/3. When
	// a node dies, its client IDs are free (for another identity, or under
	// TakeoverDeny) after at most LeaseTTL. Zero means [DefaultLeaseTTL];
	// less than 300 ms is taken as 300 ms.
	LeaseTTL time.Duration
	// MaxKeep bounds how long an ID stays bound to a kept session. A
	// session the broker keeps longer is discarded when MaxKeep passes
	// (its node ends it as [mqttsec.Guard.Kick] does), so that no kept
	// session outlives its binding: set the broker's maximum session expiry
	// to at most MaxKeep. Zero means [DefaultMaxKeep].
	MaxKeep time.Duration
	// InsecureFailOpen accepts claims while Redis is unreachable, on this
	// node's word alone (Lease.Resume false): a client could then hold
	// an ID another identity holds on another node. The lease is checked
	// when Redis is back, and the connection is ended (0x8E) if another
	// identity holds the ID. The default refuses such claims with 0x88
	// (server unavailable).
	InsecureFailOpen bool
}

// Registry is a cluster-wide [mqttsec.Registry]: the binding of each client
// ID to the identity holding it lives in Redis, so that all brokers of a
// cluster apply one [clientid.Takeover] policy, with the same semantics as
// [clientid.Registry] on one broker. Wrap it in [clientid.Bound] to bind IDs
// to identities as well.
//
// A claim is one Lua script, atomic in Redis. It gives the connection a
// lease that its node refreshes while the connection lives; when the
// connection ends with a session the broker keeps, the ID stays bound to the
// identity for as long (at most [RegistryConfig.MaxKeep]). When a claim
// takes over an ID whose session lives on another node (the same identity
// reconnecting elsewhere, or [clientid.InsecureTakeoverAllow]), the script
// publishes a kick to that node, which ends the old session with 0x8E
// (session taken over), or discards it if it is kept. A node that dies
// holds nothing after its leases expire.
//
// Refreshes also catch takeovers whose kick was lost (the subscription was
// down): a lease that a newer claim superseded, or whose ID another
// identity now holds, ends its session (0x8E) at the next refresh.
//
// While Redis is unreachable, claims are refused with an error wrapping
// [ErrUnavailable] (0x88) unless [RegistryConfig.InsecureFailOpen] is set;
// connections already admitted keep their leases, and releases are retried
// until Redis is back. When Redis comes back empty (restarted without
// persistence), each node writes its live leases and kept bindings again at
// its next refresh.
//
// Keys are "<prefix>cid:<client ID>", one hash per ID that is bound, each
// with a TTL: at most LeaseTTL past the last refresh of a live lease, the
// kept time of a kept session. A Registry is safe for concurrent use.
type Registry struct {
	n        *Node
	takeover clientid.Takeover
	ttl      time.Duration
	maxKeep  time.Duration
	failOpen bool
	wake     chan struct{}
	// checkKept asks the next refresh to check the kept sessions too: the
	// subscription was broken, a kick may have been missed.
	checkKept atomic.Bool

	mu     sync.Mutex
	own    map[*lease]struct{} // the leases of this registry, live, kept or being released
	ghosts int                 // failed claims in own, to release
}

// maxGhosts bounds the failed claims a registry remembers to release.
const maxGhosts = 10000

// mayHaveRun reports whether a failed Redis call may have been executed:
// anything but a connection that could not be made.
func mayHaveRun(err error) bool {
	var op *net.OpError
	return !(errors.As(err, &op) && op.Op == "dial")
}

// Registry returns a new [Registry] of the node's cluster, and starts its
// lease refresh (stopped by [Node.Close]). A node normally has one.
func (n *Node) Registry(cfg RegistryConfig) *Registry {
	r := &Registry{n: n, takeover: cfg.Takeover, ttl: cfg.LeaseTTL, maxKeep: cfg.MaxKeep,
		failOpen: cfg.InsecureFailOpen, wake: make(chan struct{}, 1), own: map[*lease]struct{}{}}
	if r.ttl == 0 {
		r.ttl = DefaultLeaseTTL
	}
	r.ttl = max(r.ttl, 300*time.Millisecond)
	if r.maxKeep <= 0 {
		r.maxKeep = DefaultMaxKeep
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		return r
	}
	n.registries = append(n.registries, r)
	n.wg.Add(1)
	go r.run()
	return r
}

// lease is one claim: the connection's client, its token, and where the
// lease stands.
type lease struct {
	r     *Registry
	cl    *mqttsec.Client
	key   string
	owner string
	token string

	// Guarded by r.mu:
	seq   int64     // 0: not confirmed by Redis (a fail-open claim)
	state uint8     // live, releasing or kept
	keep  time.Time // releasing, kept: when the kept binding ends (zero: none)
	cap   bool      // the broker keeps the session longer than MaxKeep
	ghost bool      // a claim that failed, to release

	released atomic.Bool
}

const (
	leaseLive uint8 = iota
	// leaseReleasing: the release did not reach Redis yet.
	leaseReleasing
	// leaseKept: released with a kept session, remembered until keep so
	// that a takeover elsewhere can end the kept session.
	leaseKept
)

// ownerOf returns the identity's owner string: "<len(method)>:<method><subject>",
// so that no two (method, subject) pairs give the same string.
func ownerOf(id *mqttsec.Identity) string {
	return strconv.Itoa(len(id.Method)) + ":" + string(id.Method) + id.Subject
}

func (r *Registry) key(id string) string { return r.n.prefix + "cid:" + id }

type claimResult struct {
	status string
	seq    int64
	resume bool
	by     string
}

func parseClaim(v any) (claimResult, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 4 {
		return claimResult{}, fmt.Errorf("redisstore: unexpected claim reply %T", v)
	}
	st, _ := a[0].(string)
	seq, _ := a[1].(int64)
	res, _ := a[2].(int64)
	by, _ := a[3].(string)
	return claimResult{status: st, seq: seq, resume: res == 1, by: by}, nil
}

func (r *Registry) claimArgs(l *lease, seq int64) []any {
	return []any{l.owner, l.token, int(r.takeover), r.ttl.Milliseconds(), maxLeases, seq,
		r.n.kickChan, int(mqttsec.CodeSessionTakenOver)}
}

// Claim implements [mqttsec.Registry] across the cluster. It refuses with
// an error wrapping [clientid.ErrTaken] (a live connection of another
// identity, or any under [clientid.TakeoverDeny]) or [clientid.ErrOwned] (a
// kept session of another identity), both 0x85, or [ErrUnavailable] (0x88)
// when Redis cannot be reached (see [RegistryConfig.InsecureFailOpen]).
// Lease.Resume is true when the same identity held the ID, live or kept,
// anywhere in the cluster.
func (r *Registry) Claim(ctx context.Context, cl *mqttsec.Client) (mqttsec.Lease, error) {
	if cl == nil || cl.Identity == nil {
		return mqttsec.Lease{}, fmt.Errorf("%w: redisstore: claim without an identity", mqttsec.ErrNotAuthorized)
	}
	if r.n.closed.Load() {
		return mqttsec.Lease{}, fmt.Errorf("%w: %w", mqttsec.ErrServerUnavailable, ErrClosed)
	}
	l := &lease{r: r, cl: cl, key: r.key(cl.ID), owner: ownerOf(cl.Identity), token: r.n.token()}
	// Known before the claim is made, so that a takeover elsewhere racing
	// this claim finds it.
	r.n.leases.Store(l.token, l)
	octx, cancel := r.n.opContext(ctx)
	v, err := claimScript.Run(octx, r.n.rdb, []string{l.key}, r.claimArgs(l, 0)...).Result()
	cancel()
	var res claimResult
	if err == nil {
		res, err = parseClaim(v)
	}
	if err != nil {
		err = r.n.fail("claim client ID "+quote(cl.ID), err)
		if r.failOpen {
			r.track(l)
			return mqttsec.Lease{Release: l.release}, nil
		}
		r.n.leases.Delete(l.token)
		if mayHaveRun(err) {
			// The claim may have been made before the answer was lost (a
			// timeout): release it when Redis answers, so that no ghost
			// lease holds the ID until it expires. Bounded: past the
			// bound, a ghost expires with its TTL.
			l.released.Store(true)
			r.mu.Lock()
			if r.ghosts < maxGhosts {
				r.ghosts++
				l.state = leaseReleasing
				l.ghost = true
				r.own[l] = struct{}{}
			}
			r.mu.Unlock()
		}
		return mqttsec.Lease{}, err
	}
	r.n.ok()
	if res.status != "ok" {
		r.n.leases.Delete(l.token)
		return mqttsec.Lease{}, refusal(res.status, cl.ID)
	}
	l.seq = res.seq
	r.track(l)
	return mqttsec.Lease{Resume: res.resume, Release: l.release}, nil
}

func refusal(status, id string) error {
	switch status {
	case "taken":
		return fmt.Errorf("%w: %s is connected elsewhere in the cluster", clientid.ErrTaken, quote(id))
	case "owned":
		return fmt.Errorf("%w: %s", clientid.ErrOwned, quote(id))
	case "full":
		return fmt.Errorf("%w: %s has %d connections", clientid.ErrTaken, quote(id), maxLeases)
	}
	return fmt.Errorf("%w: redisstore: claim of %s answered %q", mqttsec.ErrServerUnavailable, quote(id), status)
}

func (r *Registry) track(l *lease) {
	r.mu.Lock()
	r.own[l] = struct{}{}
	r.mu.Unlock()
}

// forget drops l. The caller holds r.mu.
func (r *Registry) forget(l *lease) {
	if _, ok := r.own[l]; ok && l.ghost {
		r.ghosts--
	}
	delete(r.own, l)
	r.n.leases.CompareAndDelete(l.token, l)
}

// release is the lease's Release: it runs once.
func (l *lease) release(keep time.Duration) {
	if !l.released.CompareAndSwap(false, true) {
		return
	}
	r := l.r
	capped := keep > r.maxKeep
	keep = min(max(keep, 0), r.maxKeep)
	var until time.Time
	if keep > 0 {
		until = time.Now().Add(keep)
	}
	r.mu.Lock()
	l.keep, l.cap = until, capped
	l.state = leaseReleasing
	r.mu.Unlock()
	err := r.releaseNow(l, keep)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || l.state != leaseReleasing {
		return // retried by the refresh
	}
	r.released(l)
}

// released records that l's release reached Redis. The caller holds r.mu.
func (r *Registry) released(l *lease) {
	if l.keep.IsZero() {
		r.forget(l)
		return
	}
	l.state = leaseKept
}

func (r *Registry) releaseNow(l *lease, keep time.Duration) error {
	ctx, cancel := r.n.opContext(context.Background())
	defer cancel()
	err := releaseScript.Run(ctx, r.n.rdb, []string{l.key}, r.releaseArgs(l, keep)...).Err()
	if err != nil {
		return r.n.fail("release client ID "+quote(l.cl.ID), err)
	}
	r.n.ok()
	return nil
}

func (r *Registry) releaseArgs(l *lease, keep time.Duration) []any {
	ms := keep.Milliseconds()
	if keep > 0 && ms == 0 {
		ms = 1
	}
	return []any{l.owner, l.token, ms, l.seq}
}

// match selects the session of l.
func (l *lease) match(s *mqttsec.Session) bool { return s.Client() == l.cl }

// kick ends l's session, live or kept; when the Guard does not know it
// yet (a takeover elsewhere right after this node's claim), it tries again
// up to tries times.
func (l *lease) kick(code mqttsec.ReasonCode, tries int) {
	n := l.r.n
	k := n.getKicker()
	if k == nil {
		n.emit(mqttsec.Event{Kind: mqttsec.EventError, Source: "redis", ClientID: l.cl.ID,
			Err: errors.New("redisstore: a session was taken over elsewhere in the cluster, but no Guard is attached to the node (Node.Attach)")})
		return
	}
	if k.Kick(l.match, code) > 0 || tries <= 0 || l.released.Load() {
		return
	}
	time.AfterFunc(100*time.Millisecond, func() {
		if !n.closed.Load() {
			l.kick(code, tries-1)
		}
	})
}

// resync makes the registry check all its leases at once, kept ones
// included, after the node's subscription was broken.
func (r *Registry) resync() {
	r.checkKept.Store(true)
	r.refreshNow()
}

// refreshNow makes the registry refresh its leases at once.
func (r *Registry) refreshNow() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Registry) run() {
	defer r.n.wg.Done()
	t := time.NewTicker(r.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-r.n.ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		}
		r.refresh(r.n.ctx)
	}
}

// job is one lease's part of a refresh.
type job struct {
	l    *lease
	op   uint8 // jobRefresh, jobClaim or jobRelease
	keep time.Duration
	cmd  *redis.Cmd
}

const (
	jobRefresh uint8 = iota
	jobClaim         // a fail-open claim not yet confirmed
	jobRelease
	jobKept // a kept session's binding, after a broken subscription
)

// refresh renews the live leases, confirms fail-open claims, retries
// releases, and forgets kept leases whose binding ended.
func (r *Registry) refresh(ctx context.Context) {
	now := time.Now()
	var jobs []job
	var expiredKept []*lease
	checkKept := r.checkKept.Swap(false)
	r.mu.Lock()
	for l := range r.own {
		switch l.state {
		case leaseLive:
			if l.seq == 0 {
				jobs = append(jobs, job{l: l, op: jobClaim})
			} else {
				jobs = append(jobs, job{l: l, op: jobRefresh})
			}
		case leaseReleasing:
			keep := time.Duration(0)
			if !l.keep.IsZero() {
				keep = max(l.keep.Sub(now), 0)
			}
			jobs = append(jobs, job{l: l, op: jobRelease, keep: keep})
		case leaseKept:
			if !now.Before(l.keep) {
				r.forget(l)
				if l.cap {
					expiredKept = append(expiredKept, l)
				}
			} else if checkKept {
				jobs = append(jobs, job{l: l, op: jobKept, keep: l.keep.Sub(now)})
			}
		}
	}
	r.mu.Unlock()
	// A session kept longer than MaxKeep lost its binding: discard it.
	for _, l := range expiredKept {
		if k := r.n.getKicker(); k != nil {
			k.Kick(func(s *mqttsec.Session) bool { return s.Kept() && l.match(s) }, mqttsec.CodeSessionTakenOver)
		}
	}
	for len(jobs) > 0 {
		b := jobs[:min(len(jobs), int(refreshBatch.Load()))]
		jobs = jobs[len(b):]
		if !r.runBatch(ctx, b) {
			return
		}
	}
}

// runBatch runs one pipeline of jobs and applies the results; it reports
// whether Redis answered.
func (r *Registry) runBatch(ctx context.Context, b []job) bool {
	for attempt := 0; ; attempt++ {
		octx, cancel := r.n.opContext(ctx)
		pipe := r.n.rdb.Pipeline()
		for i := range b {
			j := &b[i]
			switch j.op {
			case jobRefresh:
				r.mu.Lock()
				seq := j.l.seq
				r.mu.Unlock()
				j.cmd = claimScript.EvalSha(octx, pipe, []string{j.l.key}, r.claimArgs(j.l, seq)...)
			case jobClaim:
				j.cmd = claimScript.EvalSha(octx, pipe, []string{j.l.key}, r.claimArgs(j.l, 0)...)
			case jobRelease:
				j.cmd = releaseScript.EvalSha(octx, pipe, []string{j.l.key}, r.releaseArgs(j.l, j.keep)...)
			case jobKept:
				j.cmd = keptScript.EvalSha(octx, pipe, []string{j.l.key}, r.releaseArgs(j.l, j.keep)...)
			}
		}
		_, err := pipe.Exec(octx)
		cancel()
		if err != nil && attempt == 0 && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis restarted: its script cache is empty.
			lctx, cancel := r.n.opContext(ctx)
			err1 := claimScript.Load(lctx, r.n.rdb).Err()
			err2 := releaseScript.Load(lctx, r.n.rdb).Err()
			err3 := keptScript.Load(lctx, r.n.rdb).Err()
			cancel()
			if err := errors.Join(err1, err2, err3); err != nil {
				r.n.fail("load scripts", err)
				return false
			}
			continue
		}
		if err != nil && !anyAnswered(b) {
			if ctx.Err() == nil {
				r.n.fail("refresh leases", err)
			}
			if checkKeptIn(b) {
				r.checkKept.Store(true) // try again at the next refresh
			}
			return false
		}
		r.n.ok()
		for i := range b {
			r.apply(&b[i])
		}
		return true
	}
}

func checkKeptIn(b []job) bool {
	for i := range b {
		if b[i].op == jobKept {
			return true
		}
	}
	return false
}

func anyAnswered(b []job) bool {
	for i := range b {
		if b[i].cmd.Err() == nil {
			return true
		}
	}
	return false
}

// apply applies the result of one job.
func (r *Registry) apply(j *job) {
	l := j.l
	v, err := j.cmd.Result()
	if err != nil {
		r.n.fail("refresh client ID "+quote(l.cl.ID), err)
		return
	}
	if j.op == jobKept {
		if n, _ := v.(int64); n == 0 {
			r.n.emit(mqttsec.Event{Kind: mqttsec.EventWarning, Source: "redis", ClientID: l.cl.ID,
				Username: l.cl.Username, RemoteAddr: l.cl.RemoteAddr,
				Err: fmt.Errorf("redisstore: the kept session of client ID %s was taken over elsewhere: discarding it", quote(l.cl.ID))})
			l.kick(mqttsec.CodeSessionTakenOver, 0)
		}
		return
	}
	if j.op == jobRelease {
		r.mu.Lock()
		if l.state == leaseReleasing {
			r.released(l)
		}
		r.mu.Unlock()
		return
	}
	res, err := parseClaim(v)
	if err != nil {
		r.n.fail("refresh client ID "+quote(l.cl.ID), err)
		return
	}
	r.mu.Lock()
	if l.released.Load() {
		if res.status == "ok" {
			// Released while the refresh ran: the refresh may have written
			// the lease back after the release removed it. Release again.
			l.state = leaseReleasing
			r.own[l] = struct{}{}
			r.mu.Unlock()
			r.refreshNow()
			return
		}
		r.mu.Unlock()
		return
	}
	if res.status == "ok" {
		if l.seq == 0 {
			l.seq = res.seq
		}
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	if nodeOf(res.by) == r.n.id {
		return // a takeover on this node: its broker closes the old connection
	}
	r.n.emit(mqttsec.Event{Kind: mqttsec.EventWarning, Source: "redis", ClientID: l.cl.ID,
		Username: l.cl.Username, RemoteAddr: l.cl.RemoteAddr,
		Err: fmt.Errorf("redisstore: lease of client ID %s lost (%s): ending the session", quote(l.cl.ID), res.status)})
	l.kick(mqttsec.CodeSessionTakenOver, kickRetries)
}

// Leases returns the number of leases the registry holds on this node:
// live connections, kept sessions, and releases not yet written.
func (r *Registry) Leases() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.own)
}

var _ mqttsec.Registry = (*Registry)(nil)
