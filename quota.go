package mqttsec

import (
	"fmt"
	"strings"
	"sync"
)

// Quotas bounds what the clients of one subject can make a broker hold
// after their packets are answered: retained messages and persistent
// sessions. A broker keeps both for as long as nobody clears them, so
// without a bound any authenticated user can grow the broker's memory
// without limit (one user retaining 1,400 messages of 250 kB, or opening
// thousands of sessions with a session expiry and new client IDs).
//
// The [Guard] enforces them in its decisions: a PUBLISH (or will message)
// that would retain more than the subject's quota is denied with
// [ErrQuotaExceeded] (0x97 in the PUBACK of an MQTT v5 client, see
// [ReasonCode.ForPuback]), as is a CONNECT that asks for a persistent
// session beyond the quota ([ReasonCode.ForConnack]: 0x97; 0x03 server
// unavailable for MQTT 3.1.1). Each denial is reported as an event.
//
// A subject is an [Identity]'s Subject and Method: every client of one
// user shares that user's quotas, and anonymous clients share one.
//
// The zero value is the default of every field, which bounds everything;
// a negative field means no limit. Quotas has no file-format tags: a
// configuration package maps its own keys to it.
type Quotas struct {
	// RetainedPerSubject is the most retained messages the publishes of
	// one subject may hold at once. A retained message counts against its
	// publisher until it is replaced (then it counts against the new
	// publisher), cleared with an empty payload, or dropped by the broker
	// (see [Guard.ReleaseRetained]). Zero means
	// [DefaultRetainedPerSubject].
	RetainedPerSubject int
	// RetainedBytesPerSubject bounds the memory of those messages, counted
	// as their topic, payload and property bytes
	// ([Message.PropertyBytes]) plus [RetainedOverhead] per message
	// and [LevelOverhead] per topic level: a broker keeps each retained
	// message in a tree with a node per level (mochi v2.7.9 holds about
	// 1.4 KiB per message and 0.6 KiB per level, so a message on a 64-level
	// topic costs it 40 KiB whatever its payload). Zero means
	// [DefaultRetainedBytesPerSubject].
	RetainedBytesPerSubject int64
	// Retained and RetainedBytes bound the retained messages of all
	// subjects together. Zero means [DefaultRetained] and
	// [DefaultRetainedBytes].
	Retained      int
	RetainedBytes int64
	// SessionsPerSubject is the most persistent sessions one subject may
	// hold at once: connections that asked for their session to be kept
	// after they end ([Client.SessionExpiry] > 0), and the sessions the
	// broker keeps for them. A CONNECT of a new one beyond it is denied; a
	// reconnection to a session the subject already holds (same client
	// ID) is not. Zero means [DefaultSessionsPerSubject].
	SessionsPerSubject int
	// Sessions bounds the persistent sessions of all subjects together.
	// Zero means [DefaultSessions].
	Sessions int
}

// The defaults of [Quotas].
const (
	DefaultRetainedPerSubject      = 1000
	DefaultRetainedBytesPerSubject = 8 << 20
	DefaultRetained                = 100_000
	DefaultRetainedBytes           = 128 << 20
	DefaultSessionsPerSubject      = 100
	DefaultSessions                = 10_000
)

// What [Quotas] counts for a retained message besides its topic and
// payload bytes.
const (
	RetainedOverhead = 1024
	LevelOverhead    = 640
)

// retainedCost is what a retained message counts against the quotas.
func retainedCost(m *Message) int64 {
	levels := strings.Count(m.Topic, "/") + 1
	return int64(len(m.Topic)+len(m.Payload)+max(m.PropertyBytes, 0)) + RetainedOverhead + int64(levels)*LevelOverhead
}

// limit returns v, def when v is zero, or -1 (no limit) when v is negative.
func limit[T int | int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return -1
	}
	return v
}

// resolved returns q with its defaults applied; -1 means no limit.
func (q Quotas) resolved() Quotas {
	return Quotas{
		RetainedPerSubject:      limit(q.RetainedPerSubject, DefaultRetainedPerSubject),
		RetainedBytesPerSubject: limit(q.RetainedBytesPerSubject, DefaultRetainedBytesPerSubject),
		Retained:                limit(q.Retained, DefaultRetained),
		RetainedBytes:           limit(q.RetainedBytes, DefaultRetainedBytes),
		SessionsPerSubject:      limit(q.SessionsPerSubject, DefaultSessionsPerSubject),
		Sessions:                limit(q.Sessions, DefaultSessions),
	}
}

// over reports whether have+add exceeds max (-1: no limit).
func over[T int | int64](have, add, max T) bool {
	return max >= 0 && have+add > max
}

// principal keys the quotas of one subject.
type principal struct {
	method  Method
	subject string
}

func principalOf(cl *Client) principal {
	if cl.Identity == nil {
		return principal{}
	}
	return principal{cl.Identity.Method, cl.Identity.Subject}
}

type usage struct {
	n     int
	bytes int64
}

type retainedEntry struct {
	owner principal
	bytes int64
}

// quotaState is the Guard's ledger of retained messages and persistent
// sessions. It outlives [Guard.Reload]: the quotas are read from the
// current parts at each decision.
type quotaState struct {
	rmu       sync.Mutex
	retained  map[string]retainedEntry // topic -> publisher
	byOwner   map[principal]usage
	retTotal  usage
	smu       sync.Mutex
	sessions  map[principal]map[string]int // client ID -> sessions holding its slot
	sessTotal int
}

// retain accounts for a retained PUBLISH or will message m of cl that the
// Guard has allowed otherwise, or denies it with ErrQuotaExceeded. An
// empty payload clears the topic's retained message and is always
// allowed. It does not allocate unless m adds a topic.
func (q *quotaState) retain(p *parts, cl *Client, m *Message) error {
	lim := p.Quotas.resolved()
	owner := principalOf(cl)
	q.rmu.Lock()
	defer q.rmu.Unlock()
	prev, had := q.retained[m.Topic]
	if len(m.Payload) == 0 {
		if had {
			q.drop(m.Topic, prev)
		}
		return nil
	}
	size := retainedCost(m)
	mine := q.byOwner[owner]
	addN, addBytes := 1, size
	totalN, totalBytes := 1, size
	if had {
		totalN, totalBytes = 0, size-prev.bytes
		if prev.owner == owner {
			addN, addBytes = 0, size-prev.bytes
		}
	}
	switch {
	case over(mine.n, addN, lim.RetainedPerSubject):
		return fmt.Errorf("%w: %d retained messages of this user", ErrQuotaExceeded, mine.n)
	case over(mine.bytes, addBytes, lim.RetainedBytesPerSubject):
		return fmt.Errorf("%w: %d bytes of retained messages of this user", ErrQuotaExceeded, mine.bytes)
	case over(q.retTotal.n, totalN, lim.Retained):
		return fmt.Errorf("%w: %d retained messages in all", ErrQuotaExceeded, q.retTotal.n)
	case over(q.retTotal.bytes, totalBytes, lim.RetainedBytes):
		return fmt.Errorf("%w: %d bytes of retained messages in all", ErrQuotaExceeded, q.retTotal.bytes)
	}
	if q.retained == nil {
		q.retained = make(map[string]retainedEntry)
		q.byOwner = make(map[principal]usage)
	}
	if had && prev.owner != owner {
		q.drop(m.Topic, prev) // the previous publisher's count and the total
		totalN, totalBytes = 1, size
	}
	q.retained[m.Topic] = retainedEntry{owner: owner, bytes: size}
	q.byOwner[owner] = usage{mine.n + addN, mine.bytes + addBytes}
	q.retTotal = usage{q.retTotal.n + totalN, q.retTotal.bytes + totalBytes}
	return nil
}

// drop forgets the retained message of topic. The caller holds q.rmu.
func (q *quotaState) drop(topic string, e retainedEntry) {
	delete(q.retained, topic)
	u := q.byOwner[e.owner]
	u = usage{u.n - 1, u.bytes - e.bytes}
	if u.n <= 0 {
		delete(q.byOwner, e.owner)
	} else {
		q.byOwner[e.owner] = u
	}
	q.retTotal = usage{q.retTotal.n - 1, q.retTotal.bytes - e.bytes}
}

// ReleaseRetained tells the Guard that the broker no longer holds the
// retained message of topic although no client cleared it: it expired, or
// the embedding program replaced or cleared it by publishing itself. The
// message stops counting against the [Quotas] of the subject that
// published it. It reports whether the Guard counted a message for topic.
// A broker adapter calls it; it is safe to call for any topic.
func (g *Guard) ReleaseRetained(topic string) bool {
	q := &g.quota
	q.rmu.Lock()
	defer q.rmu.Unlock()
	e, ok := q.retained[topic]
	if ok {
		q.drop(topic, e)
	}
	return ok
}

// RetainedUsage returns how many retained messages, and how many bytes
// (counted as [Quotas.RetainedBytesPerSubject] says), the publishes of the subject of identity id hold
// (nil: all subjects together), as the Guard counts them for its [Quotas].
func (g *Guard) RetainedUsage(id *Identity) (messages int, bytes int64) {
	q := &g.quota
	q.rmu.Lock()
	defer q.rmu.Unlock()
	if id == nil {
		return q.retTotal.n, q.retTotal.bytes
	}
	u := q.byOwner[principal{id.Method, id.Subject}]
	return u.n, u.bytes
}

// admitSession takes a persistent-session slot for s when its client asked
// for its session to be kept, or denies the CONNECT with ErrQuotaExceeded.
// A client ID whose slot the subject already holds (its own kept or live
// session) takes no new slot. Each admitted session releases its hold in
// endSession.
func (q *quotaState) admitSession(p *parts, s *Session) error {
	if s.client.SessionExpiry <= 0 {
		return nil
	}
	lim := p.Quotas.resolved()
	owner := principalOf(&s.client)
	q.smu.Lock()
	defer q.smu.Unlock()
	ids := q.sessions[owner]
	if ids[s.client.ID] == 0 {
		switch {
		case over(len(ids), 1, lim.SessionsPerSubject):
			return fmt.Errorf("%w: %d persistent sessions of this user", ErrQuotaExceeded, len(ids))
		case over(q.sessTotal, 1, lim.Sessions):
			return fmt.Errorf("%w: %d persistent sessions in all", ErrQuotaExceeded, q.sessTotal)
		}
		if ids == nil {
			if q.sessions == nil {
				q.sessions = make(map[principal]map[string]int)
			}
			ids = make(map[string]int)
			q.sessions[owner] = ids
		}
		q.sessTotal++
	}
	ids[s.client.ID]++
	s.quotaSlot = true
	return nil
}

// endSession releases the slot hold of an admitted session; it is a no-op
// for any other session and when called again.
func (q *quotaState) endSession(s *Session) {
	q.smu.Lock()
	defer q.smu.Unlock()
	if !s.quotaSlot {
		return
	}
	s.quotaSlot = false
	owner := principalOf(&s.client)
	ids := q.sessions[owner]
	if ids[s.client.ID]--; ids[s.client.ID] > 0 {
		return
	}
	delete(ids, s.client.ID)
	q.sessTotal--
	if len(ids) == 0 {
		delete(q.sessions, owner)
	}
}

// SessionUsage returns the number of persistent sessions the subject of
// identity id holds (nil: all subjects together), as the Guard counts
// them for its [Quotas].
func (g *Guard) SessionUsage(id *Identity) int {
	q := &g.quota
	q.smu.Lock()
	defer q.smu.Unlock()
	if id == nil {
		return q.sessTotal
	}
	return len(q.sessions[principal{id.Method, id.Subject}])
}
