package minibroker

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/topic"
)

// conn is one client connection. Its reader goroutine (serve) decodes
// packets and answers them; its writer goroutine sends queued messages and
// the DISCONNECT of a kick. Writes are serialized by wmu.
type conn struct {
	b  *Broker
	nc net.Conn
	r  *bufio.Reader

	wmu sync.Mutex

	// Set while reading CONNECT, then read-only.
	version   byte
	clientID  string
	keepAlive time.Duration
	maxOut    int // the client's maximum packet size; 0 for none
	recvMax   int // QoS 1 messages in flight to the client
	will      *message
	willDelay time.Duration

	// Guarded by Broker.mu.
	gs        *mqttsec.Session // set once the CONNECT is accepted
	st        *state
	kicked    bool
	kickCode  mqttsec.ReasonCode
	takenOver bool
	// willOnTakeover: a connection taken over sends its will unless the
	// new connection resumes the session and the will has a delay.
	willOnTakeover bool

	wake   chan struct{} // a message is queued
	kickCh chan struct{} // closed by kick
	done   chan struct{} // closed when the reader returns
	// pendingRel are the QoS 2 packet IDs received and not yet released
	// (reader goroutine only).
	pendingRel map[uint16]struct{}
}

func newConn(b *Broker, nc net.Conn) *conn {
	return &conn{b: b, nc: nc, r: bufio.NewReaderSize(nc, 4096),
		wake: make(chan struct{}, 1), kickCh: make(chan struct{}), done: make(chan struct{}),
		pendingRel: map[uint16]struct{}{}}
}

// wakeWriter tells the writer that messages are queued. It never blocks.
func (c *conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// kick makes the writer send a DISCONNECT with code (v5) and close the
// connection. The caller holds Broker.mu. Only the first kick counts.
func (c *conn) kick(code mqttsec.ReasonCode) {
	if c.kicked {
		return
	}
	c.kicked, c.kickCode = true, code
	close(c.kickCh)
}

// write sends one encoded packet within the write timeout (one second once
// the broker is closing). A failed write closes the connection.
func (c *conn) write(pkt []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	d := c.b.o.WriteTimeout
	select {
	case <-c.b.ctx.Done():
		d = min(d, time.Second)
	default:
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(d))
	if _, err := c.nc.Write(pkt); err != nil {
		_ = c.nc.Close()
		return err
	}
	return nil
}

// sendDisconnect sends a v5 DISCONNECT with code (a v3 client gets none)
// and closes the connection.
func (c *conn) sendDisconnect(code mqttsec.ReasonCode) {
	if c.version == v5 {
		rc := c.b.checkCode(v5, packets.DISCONNECT, byte(code.ForDisconnect()))
		_ = c.write(encode(&packets.Disconnect{ReasonCode: rc,
			Properties: &packets.Properties{ReasonString: reasonString(mqttsec.ReasonCode(rc))}}))
	}
	_ = c.nc.Close()
}

// reasonString is the reason string sent to a client: the code's name,
// never the error detail (which may describe the policy).
func reasonString(code mqttsec.ReasonCode) string {
	if name, ok := protocolCodeNames[code]; ok {
		return name
	}
	return code.String()[5:] // "0x87 not authorized" -> "not authorized"
}

// protocolCodeNames names the codes ReasonCode.String does not know.
var protocolCodeNames = map[mqttsec.ReasonCode]string{
	mqttsec.CodeMalformedPacket:            "malformed packet",
	mqttsec.CodeProtocolError:              "protocol error",
	mqttsec.CodeServerShuttingDown:         "server shutting down",
	mqttsec.CodeBadAuthMethod:              "bad authentication method",
	mqttsec.CodeKeepAliveTimeout:           "keep alive timeout",
	mqttsec.CodeReceiveMaximumExceeded:     "receive maximum exceeded",
	mqttsec.CodeTopicAliasInvalid:          "topic alias invalid",
	mqttsec.CodeSubscriptionIDsUnsupported: "subscription identifiers not supported",
}

// serve is the reader goroutine: CONNECT, then packets until the
// connection ends, then the end of the connection.
func (c *conn) serve() {
	defer c.b.wg.Done()
	defer func() {
		c.b.mu.Lock()
		delete(c.b.conns, c)
		c.b.mu.Unlock()
		_ = c.nc.Close()
	}()
	if !c.connect() {
		return
	}
	graceful := c.readLoop()
	close(c.done)
	_ = c.nc.Close()
	c.end(graceful)
}

// refuse answers a CONNECT with a refusing CONNACK.
func (c *conn) refuse(code mqttsec.ReasonCode) {
	var pkt []byte
	if c.version == v5 {
		rc := c.b.checkCode(v5, packets.CONNACK, byte(code.ForConnack()))
		pkt = encode(&packets.Connack{ReasonCode: rc,
			Properties: &packets.Properties{ReasonString: reasonString(mqttsec.ReasonCode(rc))}})
	} else {
		rc := c.b.checkCode(c.version, packets.CONNACK, code.V3Connack())
		pkt = frame(packets.CONNACK<<4, []byte{0, rc})
	}
	_ = c.write(pkt)
}

// connect reads and decides the CONNECT. It returns true when the
// connection was accepted and the writer started.
func (c *conn) connect() bool {
	b := c.b
	_ = c.nc.SetReadDeadline(time.Now().Add(b.o.ConnectTimeout))
	header, body, err := readFrame(c.r, b.o.MaxPacketSize)
	if err != nil {
		return false
	}
	if header>>4 != packets.CONNECT {
		return false // [MQTT-3.1.0-1]
	}
	cp, err := decodeConnect(header, body)
	if err != nil {
		b.log.Debug("minibroker: bad CONNECT", "remote", c.nc.RemoteAddr().String(), "error", err)
		return false
	}
	c.version = cp.ProtocolVersion
	if c.version != v31 && c.version != v311 && c.version != v5 {
		c.version = v311
		_ = c.write(frame(packets.CONNACK<<4, []byte{0, b.checkCode(v311, packets.CONNACK, mqttsec.V3BadProtocolVersion)}))
		return false
	}
	if cp.Properties.AuthMethod != "" {
		// Enhanced authentication (AUTH exchanges) is not supported.
		c.refuse(mqttsec.CodeBadAuthMethod)
		return false
	}
	if c.version != v5 && cp.ClientID == "" && !cp.CleanStart {
		c.refuse(mqttsec.CodeClientIDNotValid) // [MQTT-3.1.3-8]
		return false
	}
	assigned := ""
	if cp.ClientID == "" {
		var r [12]byte
		_, _ = rand.Read(r[:])
		assigned = "auto-" + hex.EncodeToString(r[:])
		cp.ClientID = assigned
	}
	c.clientID = cp.ClientID
	ka := time.Duration(cp.KeepAlive) * time.Second
	serverKA := ka == 0 || ka > b.o.MaxKeepAlive
	if serverKA {
		ka = b.o.MaxKeepAlive
	}
	c.keepAlive = ka
	props := cp.Properties
	c.recvMax = b.o.MaxInflight
	if props.ReceiveMaximum != nil {
		if *props.ReceiveMaximum == 0 {
			c.refuse(mqttsec.CodeProtocolError) // a receive maximum of 0 [MQTT-3.1.2-11.3]
			return false
		}
		c.recvMax = min(c.recvMax, int(*props.ReceiveMaximum))
	}
	if props.MaximumPacketSize != nil {
		if *props.MaximumPacketSize == 0 {
			c.refuse(mqttsec.CodeProtocolError) // a maximum packet size of 0
			return false
		}
		c.maxOut = int(*props.MaximumPacketSize)
	}
	expiry := time.Duration(0)
	if c.version == v5 {
		if props.SessionExpiryInterval != nil {
			expiry = time.Duration(*props.SessionExpiryInterval) * time.Second
		}
	} else if !cp.CleanStart {
		expiry = b.o.MaxSessionExpiry
	}
	cappedExpiry := expiry > b.o.MaxSessionExpiry
	expiry = min(expiry, b.o.MaxSessionExpiry)

	cl := mqttsec.Client{ID: cp.ClientID, Username: cp.Username, RemoteAddr: c.nc.RemoteAddr().String(),
		Listener: b.o.Listener, TLS: tlsState(c.nc), Protocol: c.version, CleanStart: cp.CleanStart,
		SessionExpiry: expiry, Assigned: assigned != ""}
	if !cp.UsernameFlag {
		cl.Username = ""
	}
	cred := mqttsec.Credentials{Password: cp.Password, AuthMethod: props.AuthMethod, AuthData: props.AuthData}
	var will *mqttsec.Message
	if cp.WillFlag {
		will = &mqttsec.Message{Topic: cp.WillTopic, Payload: cp.WillMessage, QoS: cp.WillQOS, Retain: cp.WillRetain}
		wp, expires := forwardProps(cp.WillProperties, time.Now())
		c.will = &message{topic: cp.WillTopic, payload: cp.WillMessage, qos: cp.WillQOS, retain: cp.WillRetain,
			from: cp.ClientID, props: wp, expires: expires}
		if c.version == v5 && cp.WillProperties.WillDelayInterval != nil {
			c.willDelay = time.Duration(*cp.WillProperties.WillDelayInterval) * time.Second
		}
	}

	ctx, cancel := context.WithTimeout(b.ctx, b.o.ConnectTimeout)
	gs, err := b.g.Connect(ctx, cl, cred, will)
	cancel()
	if err != nil {
		c.refuse(mqttsec.CodeOf(err))
		return false
	}

	// Register the session with the Disconnector, then refuse the
	// connection if the session was stopped meanwhile (its credentials
	// expired, an administrator kicked it).
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		c.refuse(mqttsec.CodeServerUnavailable)
		b.g.Disconnect(gs, 0)
		return false
	}
	b.live[gs] = c
	c.gs = gs
	if err := gs.Err(); err != nil {
		delete(b.live, gs)
		b.mu.Unlock()
		c.refuse(mqttsec.CodeOf(err))
		b.g.Disconnect(gs, 0)
		return false
	}
	present, ok := c.attachLocked(gs, cp.CleanStart, expiry)
	b.mu.Unlock()
	if !ok {
		c.refuse(mqttsec.CodeQuotaExceeded)
		c.b.mu.Lock()
		delete(b.live, gs)
		c.b.mu.Unlock()
		b.g.Disconnect(gs, 0)
		return false
	}

	var pkt []byte
	if c.version == v5 {
		ca := &packets.Connack{SessionPresent: present, ReasonCode: b.checkCode(v5, packets.CONNACK, 0),
			Properties: &packets.Properties{}}
		p := ca.Properties
		rm, mps, no := uint16(b.o.MaxInflight), uint32(b.o.MaxPacketSize), byte(0)
		p.ReceiveMaximum, p.MaximumPacketSize, p.SubIDAvailable = &rm, &mps, &no
		p.AssignedClientID = assigned
		if serverKA {
			ska := uint16(ka / time.Second)
			p.ServerKeepAlive = &ska
		}
		if cappedExpiry {
			se := uint32(expiry / time.Second)
			p.SessionExpiryInterval = &se
		}
		pkt = encode(ca)
	} else {
		flags := byte(0)
		if present {
			flags = 1
		}
		pkt = frame(packets.CONNACK<<4, []byte{flags, b.checkCode(c.version, packets.CONNACK, mqttsec.V3Accepted)})
	}
	if err := c.write(pkt); err != nil {
		close(c.done)
		c.end(false)
		return false
	}
	b.wg.Add(1)
	go c.writer()
	return true
}

// attachLocked binds the accepted connection to its MQTT session: a live
// connection with the same client ID is taken over (DISCONNECT 0x8E); a
// kept session is resumed only when the Guard says so (Session.Resume,
// which is never true for another identity) and the client asks for it,
// and discarded otherwise. It reports whether a session was resumed, and
// false in ok when the broker holds too many sessions. The caller holds
// Broker.mu.
func (c *conn) attachLocked(gs *mqttsec.Session, cleanStart bool, expiry time.Duration) (present, ok bool) {
	b := c.b
	st := b.sessions[c.clientID]
	resume := st != nil && gs.Resume() && !cleanStart
	if st != nil && st.conn == nil && st.gs != nil && st.gs != gs {
		// The kept session is resumed or discarded: its Guard session
		// ends (deliveries to it are checked against gs from now on).
		defer b.g.Disconnect(st.gs, 0)
	}
	if st != nil {
		if old := st.conn; old != nil {
			old.takenOver = true
			old.willOnTakeover = !(resume && old.willDelay > 0)
			old.kick(mqttsec.CodeSessionTakenOver)
			st.conn = nil
		}
		// A new connection cancels a delayed will [MQTT-3.1.3-9] and
		// stops the expiry of a kept session.
		st.stopTimers()
		st.will = nil
		if !resume {
			b.removeLocked(st)
			st = nil
		}
	}
	if st == nil {
		if len(b.sessions) >= b.o.MaxSessions {
			return false, false
		}
		st = newState(c.clientID)
		b.sessions[c.clientID] = st
	}
	st.gs, st.conn, st.expiry = gs, c, expiry
	c.st = st
	return resume, true
}

// readLoop reads packets until the connection ends. It reports whether
// the client ended it with a DISCONNECT that deletes the will (v3
// DISCONNECT, v5 reason 0x00).
func (c *conn) readLoop() (graceful bool) {
	b := c.b
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.keepAlive * 3 / 2))
		header, body, err := readFrame(c.r, b.o.MaxPacketSize)
		if err != nil {
			b.mu.Lock()
			quiet := c.kicked || b.closed // the writer sends the DISCONNECT
			b.mu.Unlock()
			switch {
			case quiet:
			case errors.Is(err, errTooLarge):
				c.sendDisconnect(mqttsec.CodePacketTooLarge)
			case errors.Is(err, errMalformed):
				c.sendDisconnect(mqttsec.CodeMalformedPacket)
			case isTimeout(err):
				c.sendDisconnect(mqttsec.CodeKeepAliveTimeout)
			}
			return false
		}
		pk, err := decode(c.version, header, body)
		if err != nil {
			b.log.Debug("minibroker: bad packet", "client", c.clientID, "error", err)
			if errors.Is(err, errProtocol) {
				c.sendDisconnect(mqttsec.CodeProtocolError)
			} else {
				c.sendDisconnect(mqttsec.CodeMalformedPacket)
			}
			return false
		}
		switch p := pk.(type) {
		case *packets.Publish:
			if !c.onPublish(p) {
				return false
			}
		case *packets.Puback:
			c.onPuback(p.PacketID)
		case *packets.Pubrel:
			code := byte(0)
			if _, ok := c.pendingRel[p.PacketID]; !ok {
				code = codePacketIDNotFound
			}
			delete(c.pendingRel, p.PacketID)
			if c.write(encodeAck(c.version, packets.PUBCOMP, p.PacketID,
				b.checkCode(v5, packets.PUBCOMP, code))) != nil {
				return false
			}
		case *packets.Subscribe:
			if !c.onSubscribe(p) {
				return false
			}
		case *packets.Unsubscribe:
			if !c.onUnsubscribe(p) {
				return false
			}
		case *packets.Pingreq:
			if c.write([]byte{packets.PINGRESP << 4, 0}) != nil {
				return false
			}
		case *packets.Disconnect:
			return c.onDisconnect(p)
		default:
			// PUBREC and PUBCOMP (the broker sends no QoS 2), AUTH.
			c.sendDisconnect(mqttsec.CodeProtocolError)
			return false
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// onPublish decides a PUBLISH with [mqttsec.Guard.Publish] and answers
// it. A denied message is neither delivered nor retained: a v5 client gets
// a PUBACK (QoS 1) or PUBREC (QoS 2) with the mapped code, or a
// DISCONNECT when the code calls for it; a v3 client's message is
// acknowledged and dropped (a 3.1.1 ack cannot carry a reason), or its
// connection closed when the code calls for a disconnect.
func (c *conn) onPublish(p *packets.Publish) bool {
	b := c.b
	if p.QoS > 0 && p.PacketID == 0 {
		c.sendDisconnect(mqttsec.CodeProtocolError)
		return false
	}
	if c.version == v5 {
		if p.Properties.TopicAlias != nil {
			c.sendDisconnect(mqttsec.CodeTopicAliasInvalid) // the topic alias maximum is 0
			return false
		}
		if p.Properties.SubscriptionIdentifier != nil {
			c.sendDisconnect(mqttsec.CodeProtocolError) // [MQTT-3.3.4-6]
			return false
		}
	}
	if p.QoS == 2 {
		if _, dup := c.pendingRel[p.PacketID]; dup {
			// A retransmission of a message already received: answer it
			// again and do not deliver it twice.
			return c.write(encodeAck(c.version, packets.PUBREC, p.PacketID, b.checkCode(v5, packets.PUBREC, 0))) == nil
		}
		if len(c.pendingRel) >= b.o.MaxInflight {
			c.sendDisconnect(mqttsec.CodeReceiveMaximumExceeded)
			return false
		}
	}
	m := &mqttsec.Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain}
	err := b.g.Publish(b.ctx, c.gs, m)
	code := mqttsec.CodeOf(err)
	if err != nil && code.Disconnects() {
		c.sendDisconnect(code)
		return false
	}
	if err == nil {
		props, expires := forwardProps(p.Properties, time.Now())
		b.route(b.ctx, &message{topic: p.Topic, payload: p.Payload, qos: p.QoS, retain: p.Retain,
			from: c.clientID, props: props, expires: expires})
	}
	rc := byte(0)
	if err != nil {
		rc = byte(code.ForPuback())
	}
	switch p.QoS {
	case 1:
		return c.write(encodeAck(c.version, packets.PUBACK, p.PacketID, b.checkCode(v5, packets.PUBACK, rc))) == nil
	case 2:
		if rc < 0x80 || c.version != v5 {
			c.pendingRel[p.PacketID] = struct{}{}
		}
		return c.write(encodeAck(c.version, packets.PUBREC, p.PacketID, b.checkCode(v5, packets.PUBREC, rc))) == nil
	}
	return true
}

// onPuback releases a QoS 1 message the client acknowledged.
func (c *conn) onPuback(id uint16) {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	st := c.st
	if st.conn != c {
		return
	}
	for i, d := range st.inflight {
		if d.id == id {
			st.inflight = append(st.inflight[:i], st.inflight[i+1:]...)
			c.wakeWriter()
			return
		}
	}
}

// onSubscribe decides each filter with [mqttsec.Guard.Subscribe] and
// answers with a SUBACK: the granted QoS (at most 1: the broker does not
// send QoS 2) or the mapped code. Retained messages of granted filters
// follow the SUBACK.
func (c *conn) onSubscribe(p *packets.Subscribe) bool {
	b := c.b
	if p.PacketID == 0 {
		c.sendDisconnect(mqttsec.CodeProtocolError)
		return false
	}
	codes := make([]byte, len(p.Subscriptions))
	var retained []*subscription
	for i, o := range p.Subscriptions {
		group := sharedGroup(o.Topic)
		if group != "" && o.NoLocal {
			c.sendDisconnect(mqttsec.CodeProtocolError) // [MQTT-3.8.3-4]
			return false
		}
		var code mqttsec.ReasonCode
		var qos byte
		var err error
		if p.Properties.SubscriptionIdentifier != nil {
			code = mqttsec.CodeSubscriptionIDsUnsupported
		} else {
			qos, err = b.g.Subscribe(b.ctx, c.gs, mqttsec.Subscription{Filter: o.Topic, QoS: o.QoS,
				NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling})
			code = mqttsec.CodeOf(err)
		}
		if code == mqttsec.CodeSuccess {
			inner, _ := topic.Unshare(o.Topic)
			sub := &subscription{filter: o.Topic, inner: inner, group: group, qos: min(qos, 1),
				noLocal: o.NoLocal, rap: o.RetainAsPublished}
			isNew, added := c.addSubscription(sub)
			if !added {
				code = mqttsec.CodeQuotaExceeded
			} else {
				codes[i] = b.checkCode(c.version, packets.SUBACK, sub.qos)
				if group == "" && (o.RetainHandling == 0 || (o.RetainHandling == 1 && isNew)) {
					retained = append(retained, sub)
				}
				continue
			}
		}
		if c.version == v5 {
			codes[i] = b.checkCode(v5, packets.SUBACK, byte(code.ForSuback()))
		} else {
			codes[i] = b.checkCode(c.version, packets.SUBACK, code.V3Suback())
		}
	}
	var pkt []byte
	if c.version == v5 {
		pkt = encode(&packets.Suback{PacketID: p.PacketID, Reasons: codes, Properties: &packets.Properties{}})
	} else {
		pkt = frame(packets.SUBACK<<4, append(binaryID(p.PacketID), codes...))
	}
	if c.write(pkt) != nil {
		return false
	}
	for _, sub := range retained {
		b.sendRetained(b.ctx, c.st, sub)
	}
	return true
}

// addSubscription stores sub, replacing a subscription with the same
// filter. It reports whether the filter is new, and false in added when
// the session holds MaxSubscriptions filters already.
func (c *conn) addSubscription(sub *subscription) (isNew, added bool) {
	b := c.b
	b.mu.Lock()
	defer b.mu.Unlock()
	st := c.st
	if st.conn != c || st.dead {
		return false, false
	}
	_, exists := st.subs[sub.filter]
	if !exists && len(st.subs) >= b.o.MaxSubscriptions {
		return false, false
	}
	st.subs[sub.filter] = sub
	return !exists, true
}

func binaryID(id uint16) []byte { return []byte{byte(id >> 8), byte(id)} }

// onUnsubscribe removes filters; it is not a Guard decision.
func (c *conn) onUnsubscribe(p *packets.Unsubscribe) bool {
	b := c.b
	if p.PacketID == 0 {
		c.sendDisconnect(mqttsec.CodeProtocolError)
		return false
	}
	codes := make([]byte, len(p.Topics))
	b.mu.Lock()
	st := c.st
	for i, f := range p.Topics {
		code := codeNoSubscriptionExisted
		if topic.ValidateFilter(f) != nil {
			code = byte(mqttsec.CodeTopicFilterInvalid)
		} else if _, ok := st.subs[f]; ok && st.conn == c {
			delete(st.subs, f)
			code = 0
		}
		codes[i] = b.checkCode(v5, packets.UNSUBACK, code)
	}
	b.mu.Unlock()
	var pkt []byte
	if c.version == v5 {
		pkt = encode(&packets.Unsuback{PacketID: p.PacketID, Reasons: codes, Properties: &packets.Properties{}})
	} else {
		pkt = frame(packets.UNSUBACK<<4, binaryID(p.PacketID))
	}
	return c.write(pkt) == nil
}

// onDisconnect handles the client's DISCONNECT: v5 reason 0x04 keeps the
// will, any other code of a v5 client's DISCONNECT other than 0x00 too
// [MQTT-3.14.4-3]; a v5 DISCONNECT may change the session expiry, except
// from zero [MQTT-3.14.2-2].
func (c *conn) onDisconnect(p *packets.Disconnect) bool {
	if c.version != v5 {
		return true
	}
	if se := p.Properties.SessionExpiryInterval; se != nil {
		b := c.b
		b.mu.Lock()
		st := c.st
		if st.conn == c {
			if st.expiry == 0 && *se != 0 {
				b.mu.Unlock()
				c.sendDisconnect(mqttsec.CodeProtocolError)
				return false
			}
			st.expiry = min(time.Duration(*se)*time.Second, b.o.MaxSessionExpiry)
		}
		b.mu.Unlock()
	}
	return p.ReasonCode == 0
}

// end runs once the connection is closed: the session is kept (with its
// delayed will) or discarded, a will that is due is sent when the Guard
// allows it, and the Guard session ends with [mqttsec.Guard.Disconnect].
func (c *conn) end(graceful bool) {
	b := c.b
	b.mu.Lock()
	delete(b.live, c.gs)
	st := c.st
	keep := time.Duration(0)
	var willNow *message
	switch {
	case st != nil && st.conn == c:
		st.conn = nil
		revoked := c.gs.Err() != nil
		if b.closed || revoked || st.expiry == 0 || st.dead {
			b.removeLocked(st)
		} else {
			keep = st.expiry
			st.expTimer = b.afterFunc(keep, func() { b.expire(st) })
		}
		if c.will != nil && !graceful && !b.closed {
			if keep > 0 && c.willDelay > 0 {
				// Sent after the delay, or when the session expires first.
				if c.willDelay < keep {
					st.will = c.will
					st.willTimer = b.afterFunc(c.willDelay, func() { b.sendDelayedWill(st) })
				} else {
					st.will = c.will
				}
			} else {
				willNow = c.will
			}
		}
	case c.takenOver:
		if c.will != nil && !graceful && c.willOnTakeover && !b.closed {
			willNow = c.will
		}
	}
	b.mu.Unlock()
	if willNow != nil {
		b.publishWill(c.gs, willNow)
	}
	if keep > 0 {
		keep += keepGrace
	}
	b.g.Disconnect(c.gs, keep)
}

// writer is the writer goroutine: it sends queued messages while the
// client's receive maximum allows, and the DISCONNECT of a kick.
func (c *conn) writer() {
	defer c.b.wg.Done()
	resend := true // messages in flight from a previous connection go first
	for {
		select {
		case <-c.kickCh:
			c.b.mu.Lock()
			code := c.kickCode
			c.b.mu.Unlock()
			c.sendDisconnect(code)
			return
		case <-c.done:
			return
		default:
		}
		if !c.flush(resend) {
			_ = c.nc.Close()
			return
		}
		resend = false
		select {
		case <-c.wake:
		case <-c.kickCh:
		case <-c.done:
		}
	}
}

// flush sends what the session may send now. Each message passes
// [mqttsec.Guard.Deliver] again right before it is sent: the policy, or
// the session (a resumed one), may have changed since it was queued. With
// resend, the messages in flight from a previous connection of the session
// go first, with the DUP flag [MQTT-4.4.0-1].
func (c *conn) flush(resend bool) bool {
	b := c.b
	for {
		b.mu.Lock()
		st := c.st
		if st.conn != c || st.dead {
			b.mu.Unlock()
			return true
		}
		var again []*delivery
		if resend {
			again = append(again, st.inflight...)
			resend = false
		}
		room := c.recvMax - len(st.inflight)
		n := 0
		for _, d := range st.queue {
			if d.qos > 0 {
				if room <= 0 {
					break
				}
				room--
			}
			n++
		}
		fresh := st.queue[:n:n]
		st.queue = st.queue[n:]
		if len(st.queue) == 0 {
			st.queue = nil
		}
		for _, d := range fresh {
			if d.qos > 0 {
				d.id = st.newID()
				st.inflight = append(st.inflight, d)
			}
		}
		b.mu.Unlock()
		if len(again)+len(fresh) == 0 {
			return true
		}
		for _, d := range again {
			if !c.send(d, true) {
				return false
			}
		}
		for _, d := range fresh {
			if !c.send(d, false) {
				return false
			}
		}
	}
}

// send writes one delivery, or drops it when the Guard denies it now, its
// message expired, or it is larger than the client accepts.
func (c *conn) send(d *delivery, dup bool) bool {
	b := c.b
	now := time.Now()
	m := d.m
	drop := b.g.Deliver(b.ctx, c.gs, m.topic) != nil || (!m.expires.IsZero() && !now.Before(m.expires))
	var pkt []byte
	if !drop {
		p := &packets.Publish{Topic: m.topic, Payload: m.payload, QoS: d.qos, Retain: d.retain,
			PacketID: d.id, Duplicate: dup, Properties: &packets.Properties{}}
		if m.props != nil {
			props := *m.props
			p.Properties = &props
		}
		if !m.expires.IsZero() {
			left := uint32((m.expires.Sub(now) + time.Second - 1) / time.Second)
			p.Properties.MessageExpiry = &left
		}
		pkt = encodePublish(c.version, p)
		if c.maxOut > 0 && len(pkt) > c.maxOut {
			b.dropped.Add(1)
			drop = true // [MQTT-3.1.2-25]
		}
	}
	if drop {
		if d.qos > 0 {
			b.mu.Lock()
			st := c.st
			for i, x := range st.inflight {
				if x == d {
					st.inflight = append(st.inflight[:i], st.inflight[i+1:]...)
					break
				}
			}
			b.mu.Unlock()
		}
		return true
	}
	return c.write(pkt) == nil
}

// tlsState returns the TLS state of c, unwrapping connections that expose
// NetConn. The CONNECT has been read, so the handshake is complete.
func tlsState(c net.Conn) *tls.ConnectionState {
	for i := 0; c != nil && i < 8; i++ {
		switch v := c.(type) {
		case *tls.Conn:
			cs := v.ConnectionState()
			return &cs
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}
