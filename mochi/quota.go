package mochi

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttsec/mqttsec"
)

// Limits bounds what authenticated clients can make mochi hold for them.
// mochi v2.7.9 copies each message once per subscriber and queues the
// copies without bound in bytes (8,192 packets per client by default), keeps
// QoS 1 and 2 messages for offline sessions, and accepts any number of
// subscriptions and filters: 40 subscribers that never read and 64 messages
// of 250 kB make it hold 560 MB. [NewHook] applies the default Limits
// unless [WithLimits] gives others; [mqttsec.Quotas] bounds retained
// messages and persistent sessions. The package documentation states the
// memory budget they give.
//
// # Outbound messages
//
// The hook keeps books of the messages mochi holds for each client (its
// backlog): queued to be written, being written, or sent at QoS 1 or 2 and
// not acknowledged yet, and for a kept session the messages queued while
// its client is offline. A message counts its payload, topic, correlation
// data and user properties plus about 1.6 KiB for mochi's copies of the
// packet. When mochi is about to queue a message for a client:
//
//   - if the client's backlog would pass DropBacklog, a message published
//     at QoS 0 is dropped for that client (MQTT lets a server drop QoS 0
//     messages);
//   - if it would pass MaxBacklog, the client is disconnected as a slow
//     consumer and the message is not queued (its socket is closed: a
//     client that does not read would not read a DISCONNECT either);
//   - if the backlog of the client's subject would pass SubjectBacklog, or
//     that of all clients Outbound, QoS 0 messages are dropped, and a QoS 1
//     or 2 message is dropped for a client whose backlog is within
//     DropBacklog and disconnects one beyond it.
//
// Retained messages mochi sends to a new subscription are dropped rather
// than disconnect the client (it asked for them all at once; it is not
// slow). A client with no backlog always gets its next message, so a
// message larger than a bound reaches a client that keeps up. A dropped message is
// reported as [mqttsec.EventDropped] with code 0x97 quota exceeded (at most
// one event per client per second). QoS 0 messages queued for a client
// when it goes offline stay in mochi's memory until its kept session ends
// (mochi never sends them): they stay in the books.
//
// A kept session whose client is offline gets QoS 1 and 2 messages queued
// up to QueuedMessages and QueuedBytes; further ones are dropped for it.
//
// # Subscriptions
//
// A SUBSCRIBE with more than FiltersPerSubscribe filters has the extra ones
// refused, and a client holding Subscriptions filters, or SubscriptionBytes
// of them, has new ones refused: 0x97 quota exceeded in the SUBACK of an
// MQTT v5 client, 0x80 for 3.1.1. A filter counts its length plus 1 KiB,
// plus 640 bytes per level (mochi keeps a tree node per level: a 64-level
// filter costs it 40 KiB).
//
// # Packets
//
// A topic name or filter longer than TopicLength bytes is refused (0x90 in
// the PUBACK, 0x8F in the SUBACK); a PUBLISH or CONNECT whose properties
// (user properties, response topic, content type, correlation data) take
// more than PropertyBytes is refused with 0x97.
//
// # mochi's capabilities
//
// [NewHook] lowers (never raises) these capabilities of the server to the
// limits: MaximumInflight to Inflight (QoS 1 and 2 messages stored per
// client, and the cap on a client's receive maximum),
// MaximumClientWritesPending to WritesPending (the capacity of each
// client's outbound queue, allocated at 8 bytes a slot for every accepted
// connection before its CONNECT), TopicAliasMaximum to TopicAliases (each
// inbound alias holds a topic). The hook sends no topic aliases to clients:
// mochi would keep the topic of every alias.
//
// The zero value of a field means its default; a negative value means no
// limit (for the capabilities: mochi's own setting). Limits has no
// file-format tags: a configuration package maps its own keys to it.
type Limits struct {
	// DropBacklog is the bytes a client may hold before QoS 0 messages to
	// it are dropped. Zero means [DefaultDropBacklog].
	DropBacklog int64
	// MaxBacklog is the bytes a client may hold before it is disconnected
	// as a slow consumer. Zero means [DefaultMaxBacklog].
	MaxBacklog int64
	// SubjectBacklog is the bytes the clients and kept sessions of one
	// subject may hold together. Zero means [DefaultSubjectBacklog].
	SubjectBacklog int64
	// Outbound is the bytes all clients together may hold. Zero means
	// [DefaultOutbound].
	Outbound int64
	// QueuedMessages and QueuedBytes bound the messages queued for a kept
	// session while its client is offline. Zero means
	// [DefaultQueuedMessages] and [DefaultQueuedBytes].
	QueuedMessages int
	QueuedBytes    int64
	// Subscriptions is the most filters a client may hold. Zero means
	// [DefaultSubscriptions].
	Subscriptions int
	// SubscriptionBytes bounds the memory of a client's filters. Zero
	// means [DefaultSubscriptionBytes].
	SubscriptionBytes int64
	// FiltersPerSubscribe is the most filters one SUBSCRIBE may ask for.
	// Zero means [DefaultFiltersPerSubscribe].
	FiltersPerSubscribe int
	// TopicLength is the longest topic name or filter, in bytes. Zero
	// means [DefaultTopicLength].
	TopicLength int
	// PropertyBytes bounds the properties of a PUBLISH, and those of a
	// CONNECT and its will message together. Zero means
	// [DefaultPropertyBytes].
	PropertyBytes int
	// Inflight lowers mochi's MaximumInflight. Zero means
	// [DefaultInflight].
	Inflight int
	// WritesPending lowers mochi's MaximumClientWritesPending. Zero means
	// [DefaultWritesPending].
	WritesPending int
	// TopicAliases lowers mochi's TopicAliasMaximum. Zero means
	// [DefaultTopicAliases].
	TopicAliases int
	// WriteStall bounds how long a publisher waits for a client that does
	// not read. mochi writes to a client while holding the client's lock,
	// and takes the same lock to give a QoS 1 or 2 message for it a packet
	// identifier, so a publisher waits for any write to the client in
	// progress. When a QoS 1 or 2 message is queued during a write, that
	// write must end within WriteStall of its start, or the connection is
	// closed; a client whose write has been blocked longer gets no QoS 0
	// message and is disconnected by a QoS 1 or 2 one. It needs a listener
	// wrapped with [Harden] (whose [HardenConfig.WriteTimeout] bounds every
	// write). Zero means [DefaultWriteStall].
	WriteStall time.Duration
	// MaxKeepAlive bounds the keep-alive a client may ask for: a client
	// that is silent for 1.5 times it is disconnected, and a packet that
	// trickles in holds its buffer at most that long. An MQTT 5 client
	// asking for more (or for 0, no keep-alive) is told the maximum in the
	// CONNACK (Server Keep Alive); an MQTT 3.1.1 client, which cannot be
	// told, is refused (return code 0x02, as Mosquitto's max_keepalive
	// does). Zero means [DefaultMaxKeepAlive]; whole seconds.
	MaxKeepAlive time.Duration
}

// The defaults of [Limits].
const (
	DefaultDropBacklog         = 1 << 20
	DefaultMaxBacklog          = 8 << 20
	DefaultSubjectBacklog      = 32 << 20
	DefaultOutbound            = 256 << 20
	DefaultQueuedMessages      = 1000
	DefaultQueuedBytes         = 4 << 20
	DefaultSubscriptions       = 100
	DefaultSubscriptionBytes   = 1 << 20
	DefaultFiltersPerSubscribe = 64
	DefaultTopicLength         = 1024
	DefaultPropertyBytes       = 8 << 10
	DefaultInflight            = 1024
	DefaultWritesPending       = 1024
	DefaultTopicAliases        = 10
	DefaultWriteStall          = 2 * time.Second
	DefaultMaxKeepAlive        = time.Hour
)

// WithLimits sets the bounds the hook enforces (see [Limits]); fields left
// zero keep their defaults.
func WithLimits(l Limits) Option {
	return func(h *Hook) { h.limits = l }
}

// limits are the resolved [Limits]; -1 means no limit.
type limits struct {
	dropBacklog, maxBacklog, subject, outbound, queuedBytes, subBytes int64
	queued, subs, filters, topicLen, propBytes                        int
	inflight, writes, aliases                                         int
	stall                                                             time.Duration
	keepAlive                                                         int // seconds; -1: no limit
	// counting is false when no outbound bound applies: the hook then
	// keeps no per-message books.
	counting bool
}

func lim[T int | int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return -1
	}
	return v
}

func (l Limits) resolve() limits {
	r := limits{
		dropBacklog: lim(l.DropBacklog, DefaultDropBacklog),
		maxBacklog:  lim(l.MaxBacklog, DefaultMaxBacklog),
		subject:     lim(l.SubjectBacklog, DefaultSubjectBacklog),
		outbound:    lim(l.Outbound, DefaultOutbound),
		queuedBytes: lim(l.QueuedBytes, DefaultQueuedBytes),
		subBytes:    lim(l.SubscriptionBytes, DefaultSubscriptionBytes),
		queued:      lim(l.QueuedMessages, DefaultQueuedMessages),
		subs:        lim(l.Subscriptions, DefaultSubscriptions),
		filters:     lim(l.FiltersPerSubscribe, DefaultFiltersPerSubscribe),
		topicLen:    lim(l.TopicLength, DefaultTopicLength),
		propBytes:   lim(l.PropertyBytes, DefaultPropertyBytes),
		inflight:    lim(l.Inflight, DefaultInflight),
		writes:      lim(l.WritesPending, DefaultWritesPending),
		aliases:     lim(l.TopicAliases, DefaultTopicAliases),
		stall:       time.Duration(lim(int64(l.WriteStall), int64(DefaultWriteStall))),
		keepAlive:   keepAliveSeconds(l.MaxKeepAlive),
	}
	r.counting = r.dropBacklog >= 0 || r.maxBacklog >= 0 || r.subject >= 0 || r.outbound >= 0 || r.queuedBytes >= 0 ||
		r.stall >= 0
	return r
}

// keepAliveSeconds resolves Limits.MaxKeepAlive to whole seconds within
// MQTT's 16 bits; -1 means no limit.
func keepAliveSeconds(d time.Duration) int {
	switch {
	case d == 0:
		d = DefaultMaxKeepAlive
	case d < 0:
		return -1
	}
	return int(min(max(d/time.Second, 1), math.MaxUint16))
}

// applyTo lowers mochi's capabilities to the limits.
func (l *limits) applyTo(c *mqtt.Capabilities) {
	if l.inflight > 0 && int(c.MaximumInflight) > l.inflight {
		c.MaximumInflight = uint16(min(l.inflight, math.MaxUint16))
	}
	if l.writes > 0 && int(c.MaximumClientWritesPending) > l.writes {
		c.MaximumClientWritesPending = int32(min(l.writes, math.MaxInt32))
	}
	if l.aliases >= 0 && int(c.TopicAliasMaximum) > l.aliases {
		c.TopicAliasMaximum = uint16(min(l.aliases, math.MaxUint16))
	}
}

// msgOverhead is what a queued message costs besides its bytes: mochi's
// copy of the packet on the outbound queue and, at QoS 1 and 2, in the
// client's inflight map.
const msgOverhead = 2 * int64(unsafe.Sizeof(packets.Packet{}))

// userPropSize is what each user property of a message costs per copy.
const userPropSize = int64(unsafe.Sizeof(packets.UserProperty{}))

// msgCost is what a message counts against the outbound bounds of a
// client. mochi's copy of a message for a subscriber has the same cost as
// the published one, so that a message is credited as it was charged.
func msgCost(pk *packets.Packet) int64 {
	return msgOverhead + int64(len(pk.TopicName)+len(pk.Payload)+len(pk.Properties.CorrelationData)) +
		int64(len(pk.Properties.User))*userPropSize
}

// propBytes is the size of the properties of pk that it may make large.
func propBytes(p *packets.Properties) int {
	n := len(p.CorrelationData) + len(p.ContentType) + len(p.ResponseTopic)
	return n + userBytes(p.User)
}

func userBytes(u []packets.UserProperty) int {
	n := 0
	for _, p := range u {
		n += 4 + len(p.Key) + len(p.Val)
	}
	return n
}

// pubRec is what the hook knows of a message being published: mochi asks
// OnACLCheck(cl, topic, false) for each subscriber with the topic string
// of the packet OnPublish saw, and the index finds the message by the
// address of that string's bytes.
type pubRec struct {
	topic string // keeps the key alive: its address cannot be reused meanwhile
	cost  int64
	wire  int // a lower bound of the packet's size on the wire
	qos   byte
	// retained is set for a retained message: one mochi sends to a new
	// subscription (found in mochi's retained store), or one being
	// published with the retain flag. The two cannot be told apart (mochi's
	// retained copy shares the topic string of the message being
	// published, so a new subscription can find the publish's record), so
	// both get the retained policy: dropped for a client that cannot hold
	// them, never a reason to disconnect it.
	retained bool
}

const indexShards = 64

// sizeIndex maps the topic strings of the messages being published to
// their records.
type sizeIndex struct {
	shards [indexShards]indexShard
	inline atomic.Int64 // records of inline publishes and wills
}

type indexShard struct {
	mu sync.Mutex
	m  map[*byte]*pubRec
	_  [48]byte // one cache line each
}

// maxInline bounds the records of inline publishes (the program's own, and
// wills): a record whose OnPublished never comes (another hook rejected the
// message) is not removed, so their number is capped.
const maxInline = 4096

func (x *sizeIndex) shard(p *byte) *indexShard {
	u := uintptr(unsafe.Pointer(p))
	return &x.shards[(u>>4^u>>12)%indexShards]
}

func (x *sizeIndex) put(r *pubRec) {
	p := unsafe.StringData(r.topic)
	if p == nil {
		return
	}
	sh := x.shard(p)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[*byte]*pubRec)
	}
	sh.m[p] = r
	sh.mu.Unlock()
}

func (x *sizeIndex) remove(r *pubRec) {
	p := unsafe.StringData(r.topic)
	if p == nil {
		return
	}
	sh := x.shard(p)
	sh.mu.Lock()
	if sh.m[p] == r {
		delete(sh.m, p)
	}
	sh.mu.Unlock()
}

// take removes and returns the record of topic, if any.
func (x *sizeIndex) take(topic string) *pubRec {
	p := unsafe.StringData(topic)
	if p == nil {
		return nil
	}
	sh := x.shard(p)
	sh.mu.Lock()
	r := sh.m[p]
	if r != nil && len(r.topic) == len(topic) {
		delete(sh.m, p)
	} else {
		r = nil
	}
	sh.mu.Unlock()
	return r
}

func (x *sizeIndex) get(topic string) (pubRec, bool) {
	p := unsafe.StringData(topic)
	if p == nil {
		return pubRec{}, false
	}
	sh := x.shard(p)
	sh.mu.Lock()
	r := sh.m[p]
	var out pubRec
	if r != nil && len(r.topic) == len(topic) {
		out = *r
	}
	sh.mu.Unlock()
	return out, r != nil && len(r.topic) == len(topic)
}

var recPool = sync.Pool{New: func() any { return new(pubRec) }}

func (r *pubRec) fill(pk *packets.Packet) {
	r.topic = pk.TopicName
	r.cost = msgCost(pk)
	r.wire = len(pk.TopicName) + len(pk.Payload) + propBytes(&pk.Properties) + 4
	r.qos = pk.FixedHeader.Qos
	r.retained = pk.FixedHeader.Retain
}

// trackInline records a message published through an inline client (the
// program's Server.Publish, or a delayed will the hook sends), with its
// own copy of the topic so that its record is found by nobody else's.
func (h *Hook) trackInline(pk *packets.Packet) {
	if !h.lim.counting || h.index.inline.Load() >= maxInline {
		return
	}
	pk.TopicName = strings.Clone(pk.TopicName)
	r := recPool.Get().(*pubRec)
	r.fill(pk)
	h.index.inline.Add(1)
	h.index.put(r)
}

func (h *Hook) untrackInline(topic string) {
	if r := h.index.take(topic); r != nil {
		h.index.inline.Add(-1)
		*r = pubRec{}
		recPool.Put(r)
	}
}

// track records the PUBLISH of cn being delivered.
func (h *Hook) track(cn *conn, pk *packets.Packet) {
	if !h.lim.counting {
		return
	}
	cn.pubMu.Lock()
	h.index.remove(&cn.pub)
	cn.pub.fill(pk)
	h.index.put(&cn.pub)
	cn.pubMu.Unlock()
}

func (h *Hook) untrack(cn *conn) {
	cn.pubMu.Lock()
	h.index.remove(&cn.pub)
	cn.pub = pubRec{}
	cn.pubMu.Unlock()
}

// OnPublished forgets the record of a message once mochi has queued it for
// its subscribers.
func (h *Hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		h.untrackInline(pk.TopicName)
		return
	}
	if cn := h.lookup(cl); cn != nil {
		h.untrack(cn)
	}
}

// deliveryInfo returns the record of the message mochi is about to queue
// on topic: the message being published, or else the retained message of
// the topic. A message the hook cannot find (another hook rewrote its
// topic) counts as its overhead and topic, and is never dropped as QoS 0.
func (h *Hook) deliveryInfo(topic string) pubRec {
	if r, ok := h.index.get(topic); ok {
		return r
	}
	if pk, ok := h.s.Topics.Retained.Get(topic); ok {
		var r pubRec
		r.fill(&pk)
		r.retained = true
		return r
	}
	return pubRec{cost: msgOverhead + int64(len(topic)), wire: len(topic), qos: 1}
}

// heldReleased marks the held bytes of a conn the hook has forgotten: no
// charge is taken any more.
const heldReleased = math.MinInt64 / 2

func (h *Hook) charge(cn *conn, n int64) bool {
	for {
		v := cn.held.Load()
		if v < 0 {
			return false
		}
		if cn.held.CompareAndSwap(v, v+n) {
			cn.subj.held.Add(n)
			h.outbound.Add(n)
			return true
		}
	}
}

// credit gives back up to n bytes of cn (never below zero: a credit mochi
// reports for a message the hook did not charge, a resent one say, is
// ignored).
func (h *Hook) credit(cn *conn, n int64) {
	for {
		v := cn.held.Load()
		if v <= 0 {
			return
		}
		d := min(v, n)
		if cn.held.CompareAndSwap(v, v-d) {
			cn.subj.held.Add(-d)
			h.outbound.Add(-d)
			return
		}
	}
}

// release forgets the books of a conn the hook no longer tracks: what it
// held leaves the outbound total (mochi drops the client and its queues).
func (h *Hook) release(cn *conn) {
	v := cn.held.Swap(heldReleased)
	if v == heldReleased {
		return
	}
	if v > 0 {
		cn.subj.held.Add(-v)
		h.outbound.Add(-v)
	}
	h.untrack(cn)
	h.subjectDone(cn.subj)
}

// subjectUsage is what the clients of one subject hold.
type subjectUsage struct {
	key  subjectKey
	held atomic.Int64
	refs int // guarded by Hook.subjMu
}

type subjectKey struct {
	method  mqttsec.Method
	subject string
}

// subject returns the books of the subject of id, shared by its conns;
// each call is matched by a subjectDone.
func (h *Hook) subject(id *mqttsec.Identity) *subjectUsage {
	k := subjectKey{id.Method, id.Subject}
	h.subjMu.Lock()
	defer h.subjMu.Unlock()
	u := h.subjects[k]
	if u == nil {
		if h.subjects == nil {
			h.subjects = make(map[subjectKey]*subjectUsage)
		}
		u = &subjectUsage{key: k}
		h.subjects[k] = u
	}
	u.refs++
	return u
}

func (h *Hook) subjectDone(u *subjectUsage) {
	h.subjMu.Lock()
	defer h.subjMu.Unlock()
	if u.refs--; u.refs == 0 {
		delete(h.subjects, u.key)
	}
}

// Errors reported with the drops (all carry 0x97 quota exceeded).
var (
	errDropRetained = fmt.Errorf("%w: retained messages dropped: more than the client may hold at once", mqttsec.ErrQuotaExceeded)
	errDropStalled  = fmt.Errorf("%w: QoS 0 messages dropped: the client's socket takes no data", mqttsec.ErrQuotaExceeded)
	errDropQoS0     = fmt.Errorf("%w: QoS 0 messages dropped: the client does not read fast enough", mqttsec.ErrQuotaExceeded)
	errDropBudget   = fmt.Errorf("%w: messages dropped: the broker's outbound budget is spent", mqttsec.ErrQuotaExceeded)
	errDropSubject  = fmt.Errorf("%w: messages dropped: the user's outbound budget is spent", mqttsec.ErrQuotaExceeded)
	errDropWindow   = fmt.Errorf("%w: QoS 1/2 messages dropped: the client's inflight window is full", mqttsec.ErrQuotaExceeded)
	errDropQueue    = fmt.Errorf("%w: messages dropped: the kept session's queue is full", mqttsec.ErrQuotaExceeded)
	errTooManySubs  = fmt.Errorf("%w: too many subscriptions", mqttsec.ErrQuotaExceeded)
	errSubsBytes    = fmt.Errorf("%w: subscriptions too large", mqttsec.ErrQuotaExceeded)
	errTooLong      = errors.New("longer than the topic length limit")
	errProps        = fmt.Errorf("%w: properties too large", mqttsec.ErrQuotaExceeded)
)

// admit decides whether mochi may queue a message on topic for cl, whose
// delivery the Guard allowed, and charges it.
func (h *Hook) admit(cl *mqtt.Client, cn *conn, topic string) bool {
	r := h.deliveryInfo(topic)
	if cn.offline.Load() {
		return h.admitQueued(cl, cn, topic, &r)
	}
	l := &h.lim
	held := cn.held.Load()
	if held < 0 {
		return false
	}
	if l.maxBacklog >= 0 && held > 0 && held+r.cost > l.maxBacklog {
		if r.retained {
			// Retained messages for a new subscription: the client asked
			// for more than it may hold at once; it is not slow.
			h.dropped(cl, cn, topic, errDropRetained)
		} else {
			h.kick(cl, cn, held)
		}
		return false
	}
	if gc, ok := cl.Net.Conn.(*guardConn); ok && l.stall >= 0 {
		if w := gc.writing(); w > l.stall {
			if r.qos > 0 && !r.retained {
				h.kick(cl, cn, held)
			} else {
				h.dropped(cl, cn, topic, errDropStalled)
			}
			return false
		} else if w >= 0 && r.qos > 0 && !r.retained {
			// mochi will wait for the write in progress to give the
			// message a packet identifier: it must end in time.
			gc.hurry(l.stall)
		}
	}
	if mps := cl.Properties.Props.MaximumPacketSize; mps > 0 && r.wire > int(mps) {
		return false // mochi could not send it; MQTT says to discard it
	}
	if r.qos > 0 && cl.State.Inflight.Len() >= int(h.s.Options.Capabilities.MaximumInflight) {
		h.dropped(cl, cn, topic, errDropWindow) // mochi would drop it
		return false
	}
	full := h.budgetSpent(cn, r.cost)
	switch {
	case full == nil && r.qos == 0 && l.dropBacklog >= 0 && held > 0 && held+r.cost > l.dropBacklog:
		h.dropped(cl, cn, topic, errDropQoS0)
		return false
	case full == nil:
		return h.charge(cn, r.cost)
	case r.qos > 0 && !r.retained && l.dropBacklog >= 0 && held > l.dropBacklog:
		h.kick(cl, cn, held)
		return false
	}
	h.dropped(cl, cn, topic, full)
	return false
}

// budgetSpent returns why a message of cost bytes for cn would exceed the
// outbound budget of its subject or of the broker, or nil.
func (h *Hook) budgetSpent(cn *conn, cost int64) error {
	l := &h.lim
	switch {
	case l.subject >= 0 && cn.subj.held.Load()+cost > l.subject:
		return errDropSubject
	case l.outbound >= 0 && h.outbound.Load()+cost > l.outbound:
		return errDropBudget
	}
	return nil
}

// admitQueued decides a message for a kept session whose client is
// offline: mochi keeps QoS 1 and 2 messages for it (charged in
// OnQosPublish), and none at QoS 0.
func (h *Hook) admitQueued(cl *mqtt.Client, cn *conn, topic string, r *pubRec) bool {
	if r.qos == 0 {
		return true
	}
	l := &h.lim
	held := cn.held.Load()
	switch {
	case held < 0:
		return false
	case l.queued >= 0 && cl.State.Inflight.Len() >= l.queued,
		l.queuedBytes >= 0 && held > 0 && held+r.cost > l.queuedBytes:
		h.dropped(cl, cn, topic, errDropQueue)
		return false
	}
	if err := h.budgetSpent(cn, r.cost); err != nil {
		h.dropped(cl, cn, topic, err)
		return false
	}
	return true
}

// kick disconnects a slow consumer. It closes the socket without a
// DISCONNECT: the client does not read, and a write would block the
// publisher's goroutine on the client's lock.
func (h *Hook) kick(cl *mqtt.Client, cn *conn, held int64) {
	if !cn.kicked.CompareAndSwap(false, true) {
		return
	}
	h.report(cl, cn, "", fmt.Errorf("%w: slow consumer disconnected: %d bytes pending", mqttsec.ErrQuotaExceeded, held))
	cl.Stop(packets.ErrQuotaExceeded)
}

// dropped reports a drop, at most once a second per client.
func (h *Hook) dropped(cl *mqtt.Client, cn *conn, topic string, err error) {
	now := time.Now().UnixNano()
	last := cn.dropAt.Load()
	if now-last < int64(time.Second) || !cn.dropAt.CompareAndSwap(last, now) {
		return
	}
	h.report(cl, cn, topic, err)
}

func (h *Hook) report(cl *mqtt.Client, cn *conn, topic string, err error) {
	e := mqttsec.Event{Kind: mqttsec.EventDropped, ClientID: cl.ID, RemoteAddr: cl.Net.Remote, Topic: topic,
		Code: mqttsec.CodeQuotaExceeded, Err: err}
	if s := cn.session(); s != nil {
		e.Username = s.Client().Username
	}
	h.g.Event(e)
}

// OnPacketSent credits a client for a message mochi wrote and no longer
// holds: QoS 0, or a QoS 1/2 message mochi sends from its inflight map and
// deletes (its flow-control path). A QoS 1/2 message is held until acked.
func (h *Hook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type != packets.Publish || (pk.FixedHeader.Qos > 0 && (pk.Expiry >= 0 || pk.FixedHeader.Dup)) {
		return
	}
	if cn := h.lookup(cl); cn != nil {
		h.credit(cn, msgCost(&pk))
	}
}

// OnPacketRead credits a client for the QoS 1/2 message a PUBACK or PUBREC
// acknowledges (mochi then drops its payload).
//
// It also gives back the send quota of a PUBACK mochi ignores. mochi
// v2.7.9 sends a QoS 1 message it held back for a client's receive maximum
// and deletes it from the client's inflight messages at once; the PUBACK
// for it finds nothing and returns no quota, so a client that announces a
// receive maximum stops getting QoS 1 and 2 messages after that many were
// held back. Quota never rises above the client's receive maximum.
func (h *Hook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 && !cl.Net.Inline && isSysTopic(pk.TopicName) {
		// mochi drops a client's PUBLISH to $SYS without an answer, and a
		// QoS 1 or 2 publisher waits for its acknowledgement forever:
		// refuse it as the Guard would (0x87).
		e := mqttsec.Event{Kind: mqttsec.EventPublishDenied, ClientID: cl.ID, RemoteAddr: cl.Net.Remote,
			Listener: cl.Net.Listener, Topic: pk.TopicName, Code: mqttsec.CodeNotAuthorized, Err: errSysPublish}
		if cn := h.lookup(cl); cn != nil {
			e.Username = cn.session().Client().Username
		}
		h.g.Event(e)
		h.rejectPublish(cl, pk, mqttsec.CodeNotAuthorized)
		return pk, nil
	}
	if t := pk.FixedHeader.Type; t == packets.Puback || t == packets.Pubrec {
		e, ok := cl.State.Inflight.Get(pk.PacketID)
		if ok && e.FixedHeader.Type == packets.Publish {
			if cn := h.lookup(cl); cn != nil {
				h.credit(cn, msgCost(&e))
			}
		} else if !ok && t == packets.Puback {
			cl.State.Inflight.IncreaseSendQuota()
		}
	}
	return pk, nil
}

var errSysPublish = fmt.Errorf("%w: clients may not publish to $SYS", mqttsec.ErrNotAuthorized)

// isSysTopic reports whether mochi takes topic for a $SYS topic (any case).
func isSysTopic(topic string) bool {
	return len(topic) >= len(mqtt.SysPrefix) && strings.EqualFold(topic[:len(mqtt.SysPrefix)], mqtt.SysPrefix)
}

// OnQosPublish charges a kept session for a message mochi stores for it
// while its client is offline, and a resumed session for the messages
// mochi resends to it.
func (h *Hook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if cn := h.lookup(cl); cn != nil && (pk.FixedHeader.Dup || cn.offline.Load()) {
		h.charge(cn, msgCost(&pk))
	}
}

// OnQosDropped credits a client for a stored message mochi drops (expired,
// or its session cleared).
func (h *Hook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if cn := h.lookup(cl); cn != nil {
		h.credit(cn, msgCost(&pk))
	}
}

// OnPublishDropped credits a client for a message mochi dropped because
// its outbound queue was full.
func (h *Hook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	if cn := h.lookup(cl); cn != nil {
		h.credit(cn, msgCost(&pk))
		h.dropped(cl, cn, pk.TopicName, errDropQueueFull)
	}
}

var errDropQueueFull = fmt.Errorf("%w: messages dropped: the client's outbound queue is full", mqttsec.ErrQuotaExceeded)

// OnPacketIDExhausted credits a client for a message mochi could not give
// a packet identifier.
func (h *Hook) OnPacketIDExhausted(cl *mqtt.Client, pk packets.Packet) {
	if cn := h.lookup(cl); cn != nil {
		h.credit(cn, msgCost(&pk))
	}
}

// OnWillSent forgets the record of a will mochi has published.
func (h *Hook) OnWillSent(_ *mqtt.Client, pk packets.Packet) {
	h.untrackInline(pk.TopicName)
}

// OnRetainMessage releases, in the Guard's retained quota, a topic whose
// retained message the program replaced or cleared through an inline
// client. Retained messages of clients and their wills were counted by the
// Guard when it allowed them.
func (h *Hook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	if cl.Net.Inline && cl.Net.Listener != willListener {
		h.g.ReleaseRetained(pk.TopicName)
	}
}

// OnRetainedExpired releases an expired retained message in the Guard's
// retained quota.
func (h *Hook) OnRetainedExpired(filter string) {
	h.g.ReleaseRetained(filter)
}

// OutboundBytes returns the bytes of messages mochi holds for all clients
// and kept sessions, as the hook counts them against [Limits.Outbound].
func (h *Hook) OutboundBytes() int64 { return h.outbound.Load() }

// BacklogBytes returns the bytes of messages mochi holds for client cl (a
// connected client or a kept session), as the hook counts them.
func (h *Hook) BacklogBytes(cl *mqtt.Client) int64 {
	if cn := h.lookup(cl); cn != nil {
		return max(cn.held.Load(), 0)
	}
	return 0
}

// unpinPublish gives a large PUBLISH its own copies of its topic and
// property strings. mochi decodes them as views of the packet's whole
// buffer, and its copy of the message for each subscriber (and the retained
// copy) shares them: a queued or retained copy would keep the original
// packet, payload included, alive. The payload itself is copied by mochi.
// A topic set through an alias is stored again as the copy, so that the
// alias does not keep alive the packet that set it.
func unpinPublish(cl *mqtt.Client, pk *packets.Packet) {
	p := &pk.Properties
	a := newArena(len(pk.TopicName) + len(p.ContentType) + len(p.ResponseTopic) + userBytes(p.User))
	pk.TopicName = a.str(pk.TopicName)
	p.ContentType = a.str(p.ContentType)
	p.ResponseTopic = a.str(p.ResponseTopic)
	p.User = a.users(p.User)
	if p.TopicAlias > 0 {
		cl.State.TopicAliases.Inbound.Set(p.TopicAlias, pk.TopicName)
	}
}

// unpinMin is the packet size from which unpinPublish is worth its
// allocations.
const unpinMin = 512

// unpinConnect gives the client its own copies of what mochi keeps from
// its CONNECT (client ID, user name, properties, will), which mochi holds
// as views of the packet's buffer for as long as the session lives.
func unpinConnect(cl *mqtt.Client) {
	p, w := &cl.Properties.Props, &cl.Properties.Will
	n := len(cl.ID) + len(cl.Properties.Username) + len(p.AuthenticationMethod) + len(p.ContentType) +
		len(p.ResponseTopic) + len(p.ResponseInfo) + len(p.ServerReference) + len(p.ReasonString) +
		userBytes(p.User) + len(w.TopicName) + len(w.Payload) + userBytes(w.User)
	a := newArena(n)
	cl.ID = a.str(cl.ID)
	cl.Properties.Username = a.bytes(cl.Properties.Username)
	p.AuthenticationMethod = a.str(p.AuthenticationMethod)
	p.ContentType = a.str(p.ContentType)
	p.ResponseTopic = a.str(p.ResponseTopic)
	p.ResponseInfo = a.str(p.ResponseInfo)
	p.ServerReference = a.str(p.ServerReference)
	p.ReasonString = a.str(p.ReasonString)
	p.User = a.users(p.User)
	w.TopicName = a.str(w.TopicName)
	w.Payload = a.bytes(w.Payload)
	w.User = a.users(w.User)
}

// arena copies strings into one allocation sized up front.
type arena struct{ buf []byte }

func newArena(n int) *arena { return &arena{buf: make([]byte, 0, n)} }

func (a *arena) str(s string) string {
	if s == "" {
		return ""
	}
	off := len(a.buf)
	a.buf = append(a.buf, s...) // within capacity: earlier strings stay put
	return unsafe.String(&a.buf[off], len(s))
}

func (a *arena) bytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	off := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[off:len(a.buf):len(a.buf)]
}

func (a *arena) users(u []packets.UserProperty) []packets.UserProperty {
	if len(u) == 0 {
		return u
	}
	out := make([]packets.UserProperty, len(u))
	for i, p := range u {
		out[i] = packets.UserProperty{Key: a.str(p.Key), Val: a.str(p.Val)}
	}
	return out
}

// subCost is what a filter counts against [Limits.SubscriptionBytes].
func subCost(filter string) int64 {
	return 1024 + int64(len(filter)) + 640*int64(strings.Count(filter, "/")+1)
}
