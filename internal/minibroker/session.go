package minibroker

import (
	"context"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/topic"
)

// message is a routed PUBLISH (or will). It is shared by every queue it is
// delivered to and never modified.
type message struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
	// from is the client ID of the publisher (for No Local).
	from string
	// props are the v5 properties forwarded to subscribers; nil for none.
	props *packets.Properties
	// expires is when the message expiry interval ends; zero for never.
	expires time.Time
}

// forwardProps keeps the PUBLISH properties a server forwards to
// subscribers [MQTT-3.3.2-4..20]; a topic alias and subscription
// identifiers are per connection and are dropped.
func forwardProps(p *packets.Properties, now time.Time) (*packets.Properties, time.Time) {
	if p == nil {
		return nil, time.Time{}
	}
	var expires time.Time
	if p.MessageExpiry != nil {
		expires = now.Add(time.Duration(*p.MessageExpiry) * time.Second)
	}
	if p.PayloadFormat == nil && p.ContentType == "" && p.ResponseTopic == "" &&
		p.CorrelationData == nil && len(p.User) == 0 {
		return nil, expires
	}
	return &packets.Properties{PayloadFormat: p.PayloadFormat, ContentType: p.ContentType,
		ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData, User: p.User}, expires
}

// delivery is a message on its way to one session.
type delivery struct {
	m      *message
	qos    byte
	retain bool
	id     uint16 // packet ID once sent at QoS 1
}

// subscription is one filter of a session.
type subscription struct {
	filter  string // as subscribed, "$share/group/f" included
	inner   string // the filter matched against topics (and authorized by the Guard)
	group   string // the shared-subscription group, "" for none
	qos     byte   // the granted QoS
	noLocal bool
	rap     bool // retain as published
}

// state is an MQTT session: it lives while a connection serves it and,
// with a session expiry, after the connection ended. Every field is
// guarded by Broker.mu.
type state struct {
	id       string
	gs       *mqttsec.Session // the Guard's session: live, or kept with the state
	conn     *conn            // the connection serving it; nil while kept
	subs     map[string]*subscription
	queue    []*delivery // waiting to be sent
	inflight []*delivery // sent at QoS 1, not acknowledged, in send order
	nextID   uint16
	// expiry is how long the state is kept after its connection ends.
	expiry   time.Duration
	expTimer *time.Timer
	// will is a delayed will waiting for its delay (v5 will delay).
	will      *message
	willTimer *time.Timer
	dead      bool
}

func newState(id string) *state {
	return &state{id: id, subs: map[string]*subscription{}}
}

// discard drops everything the session holds; a discarded session is
// never used again.
func (st *state) discard() {
	st.dead = true
	st.stopTimers()
	st.will = nil
	st.subs = nil
	st.queue = nil
	st.inflight = nil
}

func (st *state) stopTimers() {
	if st.expTimer != nil {
		st.expTimer.Stop()
		st.expTimer = nil
	}
	if st.willTimer != nil {
		st.willTimer.Stop()
		st.willTimer = nil
	}
}

// held is the number of messages the session holds.
func (st *state) held() int { return len(st.queue) + len(st.inflight) }

// newID returns a packet ID not in flight. There are at most MaxInflight
// (< 65535) IDs in flight, so the loop ends.
func (st *state) newID() uint16 {
	for {
		st.nextID++
		if st.nextID == 0 {
			st.nextID = 1
		}
		free := true
		for _, d := range st.inflight {
			if d.id == st.nextID {
				free = false
				break
			}
		}
		if free {
			return st.nextID
		}
	}
}

// target is one session a message goes to.
type target struct {
	st     *state
	gs     *mqttsec.Session
	qos    byte
	retain bool
}

// route delivers an allowed message: it updates the retained store and
// queues the message for every matching session whose Guard session may
// receive it ([mqttsec.Guard.Deliver]). It takes b.mu itself.
func (b *Broker) route(ctx context.Context, m *message) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	if m.retain {
		b.retainLocked(m)
	}
	targets := b.matchLocked(m)
	b.mu.Unlock()
	for _, t := range targets {
		b.enqueue(ctx, t.st, t.gs, &delivery{m: m, qos: t.qos, retain: t.retain})
	}
}

func (b *Broker) retainLocked(m *message) {
	if len(m.payload) == 0 {
		delete(b.retained, m.topic) // an empty retained message clears [MQTT-3.3.1-6]
		return
	}
	if _, ok := b.retained[m.topic]; !ok && len(b.retained) >= b.o.MaxRetained {
		b.dropped.Add(1)
		b.log.Warn("minibroker: retained store full; message not retained", "topic", m.topic)
		return
	}
	b.retained[m.topic] = m
}

// matchLocked returns the sessions m is delivered to: one delivery per
// session at the highest QoS of its matching subscriptions [MQTT-3.3.4-2],
// and per shared group one member, chosen round-robin (a connected member
// first). The caller holds b.mu.
func (b *Broker) matchLocked(m *message) []target {
	var out []target
	type member struct {
		st  *state
		sub *subscription
	}
	var groups map[string][]member
	for _, st := range b.sessions {
		t := target{st: st, gs: st.gs}
		matched := false
		for _, sub := range st.subs {
			if !topic.Match(sub.inner, m.topic) {
				continue
			}
			if sub.group != "" {
				if groups == nil {
					groups = map[string][]member{}
				}
				k := sub.group + "\x00" + sub.inner
				groups[k] = append(groups[k], member{st, sub})
				continue
			}
			if sub.noLocal && st.id == m.from {
				continue
			}
			matched = true
			t.qos = max(t.qos, min(m.qos, sub.qos))
			t.retain = t.retain || (sub.rap && m.retain)
		}
		if matched {
			out = append(out, t)
		}
	}
	for k, ms := range groups {
		n := b.shareNext[k]
		b.shareNext[k] = n + 1
		pick := ms[int(n%uint32(len(ms)))]
		for i := range ms { // prefer a connected member
			if c := ms[(int(n)+i)%len(ms)]; c.st.conn != nil {
				pick = c
				break
			}
		}
		out = append(out, target{st: pick.st, gs: pick.st.gs, qos: min(m.qos, pick.sub.qos)})
	}
	if len(b.shareNext) > 4*b.o.MaxSessions {
		clear(b.shareNext) // bounded: positions are only a fairness hint
	}
	return out
}

// enqueue queues d for st after [mqttsec.Guard.Deliver] allowed it for
// gs, the Guard session the state had when the message was matched. When
// the state changed hands meanwhile (a kept session resumed, whose old
// Guard session has ended), the state's current Guard session decides. A
// QoS 0 message is not queued for a session without a connection.
func (b *Broker) enqueue(ctx context.Context, st *state, gs *mqttsec.Session, d *delivery) {
	for range 3 {
		if b.g.Deliver(ctx, gs, d.m.topic) != nil {
			b.mu.Lock()
			cur, dead := st.gs, st.dead
			b.mu.Unlock()
			if cur == gs || dead {
				return
			}
			gs = cur
			continue
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if st.dead || b.closed || (d.qos == 0 && st.conn == nil) {
			return
		}
		if st.held() >= b.o.MaxQueue {
			b.dropped.Add(1)
			return
		}
		st.queue = append(st.queue, d)
		if st.conn != nil {
			st.conn.wakeWriter()
		}
		return
	}
}

// sendRetained queues the retained messages matching a new subscription.
func (b *Broker) sendRetained(ctx context.Context, st *state, sub *subscription) {
	b.mu.Lock()
	var ms []*message
	for name, m := range b.retained {
		if topic.Match(sub.inner, name) {
			ms = append(ms, m)
		}
	}
	gs := st.gs
	b.mu.Unlock()
	for _, m := range ms {
		// A retained message is sent with the retain flag set [MQTT-3.3.1-8].
		b.enqueue(ctx, st, gs, &delivery{m: m, qos: min(m.qos, sub.qos), retain: true})
	}
}

// publishWill sends a will message that is due, when the Guard allows it
// ([mqttsec.Guard.Will]): it is routed and retained like a PUBLISH. A
// denied will is neither published nor retained.
func (b *Broker) publishWill(gs *mqttsec.Session, m *message) {
	msg := &mqttsec.Message{Topic: m.topic, Payload: m.payload, QoS: m.qos, Retain: m.retain}
	if err := b.g.Will(b.ctx, gs, msg); err != nil {
		b.log.Debug("minibroker: will denied", "client", gs.Client().ID, "topic", m.topic)
		return
	}
	b.route(b.ctx, m)
}

// expire ends a kept session whose expiry interval elapsed: a delayed will
// still pending is sent first [MQTT-3.1.3-9], then the Guard session ends.
func (b *Broker) expire(st *state) {
	b.mu.Lock()
	if st.dead || st.conn != nil || b.sessions[st.id] != st {
		b.mu.Unlock()
		return
	}
	will, gs := st.will, st.gs
	b.removeLocked(st)
	b.mu.Unlock()
	if will != nil {
		b.publishWill(gs, will)
	}
	b.g.Disconnect(gs, 0)
}

// sendDelayedWill sends the will of a kept session after its delay.
func (b *Broker) sendDelayedWill(st *state) {
	b.mu.Lock()
	if st.dead || st.conn != nil || st.will == nil {
		b.mu.Unlock()
		return
	}
	will, gs := st.will, st.gs
	st.will, st.willTimer = nil, nil
	b.mu.Unlock()
	b.publishWill(gs, will)
}

// sharedGroup returns the group of a "$share/group/filter" subscription.
func sharedGroup(filter string) string {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return ""
	}
	g, _, _ := strings.Cut(rest, "/")
	return g
}
