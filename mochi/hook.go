package mochi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttsec/mqttsec"
)

// HookID is the ID the hook registers under in the mochi server.
const HookID = "mqttsec"

// ErrForeignACL is returned by [NewHook] and [Hook.Verify] when another hook
// registered on the server allows topic access that the Guard denies. mochi
// ORs OnACLCheck across hooks, so such a hook would silently widen the Guard's
// policy for subscriptions and deliveries.
var ErrForeignACL = errors.New("mochi: another hook grants topic access; register exactly one authorization hook")

// ErrUnboundedPackets is returned by [NewHook] for a server without
// Capabilities.MaximumPacketSize: mochi v2.7.9 then allocates whatever size a
// packet header claims, up to 256 MB per connection, before any hook runs.
var ErrUnboundedPackets = errors.New("mochi: server has no Capabilities.MaximumPacketSize; set it (e.g. 1 MiB) before NewHook")

// ReservedPrefix starts the topics the hook uses for itself. Subscriptions
// to filters under it are refused (0x87), whatever the policy says.
const ReservedPrefix = "$mqttsec/"

// voidTopic receives the will messages the hook suppresses: a denied will,
// and a delayed will the hook sends itself after checking it again. Nobody
// can subscribe to it (see [ReservedPrefix]).
const voidTopic = ReservedPrefix + "void"

// Option configures a [Hook].
type Option func(*Hook)

// WithLogger sets the logger for adapter problems (a foreign ACL hook, an
// unhardened listener, ...). Security events go to the Guard's event sink,
// not here. Nil (and the default) means slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(h *Hook) { h.log = l }
}

// WithConnectTimeout bounds the time [mqttsec.Guard.Connect] may take for one
// CONNECT (an authenticator that calls a remote service, say). The default is
// 10 seconds.
func WithConnectTimeout(d time.Duration) Option {
	return func(h *Hook) {
		if d > 0 {
			h.connectTimeout = d
		}
	}
}

// WithAssignClientID makes the hook assign the client ID of a client that
// sent none from next (clientid.Generate with a prefix, say) instead of
// mochi's, which is built from a timestamp and a counter: an ID someone can
// predict is one they can take first, so that the client it is assigned to
// is refused. The ID is announced to MQTT v5 clients in the CONNACK and
// validated by the Guard's client-ID policy like any other.
func WithAssignClientID(next func() string) Option {
	return func(h *Hook) { h.assignID = next }
}

// WithV3DenyDisconnect makes the hook close an MQTT 3.1.1 connection whose
// QoS 1 or 2 PUBLISH is denied. By default the denied message is acknowledged
// and dropped, as Mosquitto does, because a v3 PUBACK cannot carry a reason.
func WithV3DenyDisconnect() Option {
	return func(h *Hook) { h.v3DenyDisconnect = true }
}

// Hook is a mochi-mqtt hook that routes every CONNECT, PUBLISH, SUBSCRIBE,
// delivery, will message and disconnect through a [mqttsec.Guard]. Create it
// with [NewHook], which also registers it on the server.
//
// A Hook is safe for concurrent use: mochi calls it from every client's
// goroutines at once.
type Hook struct {
	mqtt.HookBase

	g              *mqttsec.Guard
	s              *mqtt.Server
	log            *slog.Logger
	connectTimeout time.Duration

	v3DenyDisconnect bool
	assignID         func() string

	// conns maps *mqtt.Client to *conn. mochi's Client has no field for
	// user data, and a sync.Map read of a stable key takes no lock and
	// allocates nothing, so per-message checks stay lock-free.
	conns sync.Map
	// sessions maps *mqttsec.Session to *conn while the Guard may ask to
	// end it: live connections and kept sessions.
	sessions sync.Map
	// offline maps a client ID to the *mqtt.Client of a session mochi
	// keeps after its connection ended.
	offline sync.Map
	// wills maps a client ID to the *delayedWill the hook sends itself.
	wills sync.Map
	// unhardened records the listeners already reported as not hardened.
	unhardened sync.Map

	verifyMu  sync.Mutex // one probe at a time
	probing   atomic.Pointer[mqtt.Client]
	foreignOK atomic.Bool

	limits   Limits
	lim      limits
	index    sizeIndex    // the messages being published (quota.go)
	outbound atomic.Int64 // bytes mochi holds for all clients (quota.go)
	subjMu   sync.Mutex
	subjects map[subjectKey]*subjectUsage
}

// conn is the adapter's per-connection state.
type conn struct {
	cl *mqtt.Client
	// sess is the Session deliveries to cl are checked against. For a kept
	// session that a new connection of its owner resumes, it is switched
	// to the new Session before mochi moves the queue over.
	sess        atomic.Pointer[mqttsec.Session]
	established atomic.Bool
	// offline is set when the connection ended but mochi keeps its
	// session (session expiry > 0): messages are still queued for it,
	// authorized with the identity that subscribed.
	offline atomic.Bool
	// pending holds the Guard's decisions for the SUBSCRIBE being
	// processed, between OnSubscribe and OnSubscribed. mochi asks
	// OnACLCheck(cl, filter, false) for subscriptions as well as for
	// deliveries; pending tells the two apart.
	pending atomic.Pointer[subDecision]

	// held is the bytes of the messages mochi holds for the client
	// (quota.go); heldReleased once the hook forgets the conn.
	held   atomic.Int64
	subj   *subjectUsage // shared by the conns of one subject
	kicked atomic.Bool
	dropAt atomic.Int64 // when the last EventDropped was reported
	// pub is the record of the client's PUBLISH being delivered.
	pubMu sync.Mutex
	pub   pubRec
}

func (cn *conn) session() *mqttsec.Session { return cn.sess.Load() }

type subDecision struct {
	filters []string
	errs    []error
	qos     []byte
	// next is where mochi's next filter check is likely to be found: it
	// asks for the filters in order, so a SUBSCRIBE costs O(n), not O(n²).
	next atomic.Int32
}

// NewHook returns a Hook that enforces g on s, registered with s.AddHook,
// and installs it as g's [mqttsec.Disconnector].
//
// s must bound the packet size (Capabilities.MaximumPacketSize), or NewHook
// returns [ErrUnboundedPackets]; wrap every listener with [Harden] (the hook
// logs an error for each listener that is not). NewHook lowers some of the
// server's capabilities to the hook's [Limits] (the defaults, or those of
// [WithLimits]).
//
// Register exactly one hook that answers OnConnectAuthenticate or
// OnACLCheck: mochi ORs those answers across hooks, so another permissive
// hook (auth.AllowHook, say) would widen the Guard's decisions. NewHook
// probes the hooks already registered and returns [ErrForeignACL] when one
// of them grants access the Guard denies; [Hook.Verify] repeats the probe
// (call it after adding hooks later) and the hook repeats it when the server
// starts, logging an error. mochi cannot remove a hook: after ErrForeignACL
// the hook stays registered, and the server must not be served as it is.
func NewHook(g *mqttsec.Guard, s *mqtt.Server, opts ...Option) (*Hook, error) {
	if g == nil || s == nil {
		return nil, errors.New("mochi: NewHook needs a Guard and a Server")
	}
	if s.Options == nil || s.Options.Capabilities == nil || s.Options.Capabilities.MaximumPacketSize == 0 {
		return nil, ErrUnboundedPackets
	}
	h := &Hook{g: g, s: s, connectTimeout: 10 * time.Second}
	for _, o := range opts {
		o(h)
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.lim = h.limits.resolve()
	h.lim.applyTo(s.Options.Capabilities)
	if err := s.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("mochi: add hook: %w", err)
	}
	g.SetDisconnector(h)
	if err := h.Verify(); err != nil {
		return nil, err
	}
	return h, nil
}

// ID returns [HookID].
func (h *Hook) ID() string { return HookID }

// Provides reports the mochi events the hook handles.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnStarted, mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnPublish,
		mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnClientExpired, mqtt.OnWill,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.OnPacketRead,
		mqtt.OnSessionEstablish, mqtt.OnPacketEncode:
		return true
	case mqtt.OnPublished, mqtt.OnWillSent, mqtt.OnPacketSent, mqtt.OnQosPublish,
		mqtt.OnQosDropped, mqtt.OnPublishDropped, mqtt.OnPacketIDExhausted:
		return h.lim.counting // the outbound books (quota.go)
	}
	return false
}

// SetOpts keeps the hook's own logger: mochi's logger would otherwise
// replace the one given with [WithLogger].
func (h *Hook) SetOpts(_ *slog.Logger, o *mqtt.HookOptions) { h.Opts = o }

// Init does nothing; NewHook configured the hook.
func (h *Hook) Init(any) error { return nil }

// OnStarted repeats the foreign-hook probe of [Hook.Verify] and logs an
// error when it fails.
func (h *Hook) OnStarted() {
	if err := h.Verify(); err != nil {
		h.log.Error("mqttsec hook is not the only authorization hook", "error", err)
	}
}

// Verify checks that no other hook on the server grants topic access the
// Guard denies. It injects a SUBSCRIBE from a probe client that has no
// session (so the Guard denies it) and reports [ErrForeignACL] when mochi
// grants it anyway. It is safe to call at any time; concurrent calls probe
// one after the other.
func (h *Hook) Verify() error {
	h.verifyMu.Lock()
	defer h.verifyMu.Unlock()
	probe := h.s.NewClient(nil, "mqttsec-probe", "mqttsec-probe-"+fmt.Sprintf("%p", h), false)
	probe.Properties.ProtocolVersion = 5
	h.probing.Store(probe)
	defer h.probing.Store(nil)
	h.foreignOK.Store(false)
	err := h.s.InjectPacket(probe, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1},
		PacketID:    1,
		Filters:     packets.Subscriptions{{Filter: ReservedPrefix + "probe/#", Qos: 0}},
	})
	h.s.UnsubscribeClient(probe)
	if err != nil {
		return fmt.Errorf("mochi: probe hooks: %w", err)
	}
	if h.foreignOK.Load() {
		return ErrForeignACL
	}
	return nil
}

// connectDenied is the error OnConnect returns for a CONNECT the Guard
// denied, after answering it: mochi ends the connection with it, and a
// listener wrapped with [Harden] does not log it again (the Guard's event
// sink has reported the denial).
type connectDenied struct{ code mqttsec.ReasonCode }

func (e connectDenied) Error() string { return "mqttsec: connect denied: " + e.code.String() }

// OnConnect runs [mqttsec.Guard.Connect] for a CONNECT: mochi has parsed the
// packet and assigned a client ID when the client sent none. A denial is
// answered here with the Guard's reason code (mapped by
// [mqttsec.ReasonCode.ForConnack], or [mqttsec.ReasonCode.V3Connack] for
// MQTT 3.1.1 clients), because OnConnectAuthenticate can only make mochi
// answer 0x86; returning the error then stops mochi.
//
// When mochi keeps a session for the client ID, the hook lets the new
// connection resume it only if the Guard says so ([mqttsec.Session.Resume]:
// the same identity held it); it re-authorizes the kept subscriptions and
// queued messages against the new session and the current policy first.
// Otherwise it discards the kept session (sending its pending delayed will,
// which is due when a session ends).
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	h.checkHardened(cl)
	assigned := len(pk.Connect.ClientIdentifier) == 0
	if assigned && h.assignID != nil {
		cl.ID = h.assignID()
		cl.Properties.Props.AssignedClientID = cl.ID
	}
	// The password is not needed after this call: mochi would keep it in
	// memory, in the CONNECT's buffer, for as long as the connection lives.
	defer clear(pk.Connect.Password)
	unpinConnect(cl)
	c := mqttsec.Client{
		ID:            cl.ID,
		Username:      string(pk.Connect.Username),
		RemoteAddr:    cl.Net.Remote,
		Listener:      cl.Net.Listener,
		TLS:           tlsState(cl.Net.Conn),
		Protocol:      pk.ProtocolVersion,
		CleanStart:    pk.Connect.Clean,
		SessionExpiry: h.sessionExpiry(cl),
		Assigned:      assigned,
	}
	if err := h.checkConnect(cl); err != nil {
		h.g.Event(mqttsec.Event{Kind: mqttsec.EventConnectDenied, ClientID: c.ID, Username: c.Username,
			RemoteAddr: c.RemoteAddr, Code: mqttsec.CodeOf(err), Err: err})
		return h.refuse(cl, mqttsec.CodeOf(err))
	}
	cred := mqttsec.Credentials{
		Password:   pk.Connect.Password,
		AuthMethod: pk.Properties.AuthenticationMethod,
		AuthData:   pk.Properties.AuthenticationData,
	}
	var will *mqttsec.Message
	if w := &cl.Properties.Will; pk.Connect.WillFlag {
		will = &mqttsec.Message{Topic: w.TopicName, Payload: w.Payload, QoS: w.Qos, Retain: w.Retain,
			Will: true, UserProperties: userProperties(nil, w.User)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.connectTimeout)
	sess, err := h.g.Connect(ctx, c, cred, will)
	cancel()
	if err != nil {
		return h.refuse(cl, mqttsec.CodeOf(err))
	}
	h.limitAliases(cl)
	cn := &conn{cl: cl, subj: h.subject(sess.Identity())}
	cn.sess.Store(sess)
	h.conns.Store(cl, cn)
	h.sessions.Store(sess, cn)
	// The credentials may have expired (or been revoked) since the Guard
	// accepted them, before the session was registered here, so that the
	// Guard's Disconnect found nothing to close: refuse the CONNECT then.
	if err := sess.Err(); err != nil {
		h.end(cl)
		return h.refuse(cl, mqttsec.CodeBadUsernameOrPassword)
	}
	if sess.Resume() && !pk.Connect.Clean {
		h.adoptKept(cl.ID, sess)
	} else {
		h.discardKept(cl.ID)
	}
	// mochi does not call OnDisconnect when the CONNACK cannot be written;
	// release the session then.
	time.AfterFunc(h.connectTimeout, func() { h.reap(cn) })
	return nil
}

// checkConnect applies the hook's [Limits] to a CONNECT: the will topic's
// length, and the size of the properties of the CONNECT and its will.
func (h *Hook) checkConnect(cl *mqtt.Client) error {
	if ka := h.lim.keepAlive; ka >= 0 && (cl.State.Keepalive == 0 || int(cl.State.Keepalive) > ka) {
		if cl.Properties.ProtocolVersion < 5 {
			return fmt.Errorf("%w: keep alive %d s: more than the broker's maximum of %d s (0 is none), which MQTT 3.1.1 cannot announce",
				errKeepAlive, cl.State.Keepalive, ka)
		}
		cl.State.Keepalive = uint16(ka) // announced in the CONNACK (Server Keep Alive)
		cl.State.ServerKeepalive = true
	}
	w := &cl.Properties.Will
	if h.lim.topicLen >= 0 && len(w.TopicName) > h.lim.topicLen {
		return fmt.Errorf("will message: %w: %w", mqttsec.ErrTopicNameInvalid, errTooLong)
	}
	if h.lim.propBytes >= 0 && propBytes(&cl.Properties.Props)+userBytes(w.User) > h.lim.propBytes {
		return errProps
	}
	return nil
}

// limitAliases bounds the topic aliases mochi may send to cl: none while
// the hook counts outbound messages (mochi would keep the topic of each
// alias, and a message sent with an alias carries no topic the books
// could count), at most [Limits.TopicAliases] otherwise.
func (h *Hook) limitAliases(cl *mqtt.Client) {
	max := cl.Properties.Props.TopicAliasMaximum
	switch {
	case h.lim.counting:
		max = 0
	case h.lim.aliases >= 0:
		max = uint16(min(int(max), h.lim.aliases))
	}
	if max != cl.Properties.Props.TopicAliasMaximum {
		cl.Properties.Props.TopicAliasMaximum = max
		cl.State.TopicAliases.Outbound = mqtt.NewOutboundTopicAliases(max)
	}
}

// sessionExpiry is how long mochi will keep the session of cl after its
// connection ends: the v5 session expiry interval (absent means zero), or
// for a 3.1.1 client without clean session mochi's maximum.
func (h *Hook) sessionExpiry(cl *mqtt.Client) time.Duration {
	max := h.s.Options.Capabilities.MaximumSessionExpiryInterval
	if cl.Properties.ProtocolVersion == 5 {
		if !cl.Properties.Props.SessionExpiryIntervalFlag {
			return 0
		}
		return time.Duration(min(cl.Properties.Props.SessionExpiryInterval, max)) * time.Second
	}
	if cl.Properties.Clean {
		return 0
	}
	return time.Duration(max) * time.Second
}

// refuse answers a denied CONNECT and returns the error that stops mochi.
func (h *Hook) refuse(cl *mqtt.Client, code mqttsec.ReasonCode) error {
	code = code.ForConnack()
	if cl.Properties.ProtocolVersion < 5 {
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Connack},
			ReasonCode:  code.V3Connack(),
		})
	} else {
		_ = h.s.SendConnack(cl, packets.Code{Code: byte(code), Reason: code.Name()}, false, nil)
	}
	return connectDenied{code}
}

// checkHardened logs an error, once per listener, when a connection did not
// come through a listener wrapped with [Harden].
func (h *Hook) checkHardened(cl *mqtt.Client) {
	if cl.Net.Inline || cl.Net.Conn == nil {
		return
	}
	if _, ok := cl.Net.Conn.(*guardConn); ok {
		return
	}
	if _, loaded := h.unhardened.LoadOrStore(cl.Net.Listener, true); !loaded {
		h.log.Error("mqttsec: listener is not wrapped with mochi.Harden: idle sockets are not closed and a malformed SUBSCRIBE can crash mochi",
			"listener", cl.Net.Listener)
	}
}

// reap ends a session whose connection closed before it was established.
func (h *Hook) reap(cn *conn) {
	if cn.established.Load() {
		return
	}
	if cn.cl.Closed() {
		h.end(cn.cl)
		return
	}
	time.AfterFunc(h.connectTimeout, func() { h.reap(cn) })
}

// tlsState returns the TLS state of c, unwrapping connections that expose
// NetConn. mochi has read the CONNECT through c, so the handshake is done.
func tlsState(c net.Conn) *tls.ConnectionState {
	for i := 0; c != nil && i < 8; i++ {
		switch v := c.(type) {
		case *tls.Conn:
			cs := v.ConnectionState()
			return &cs
		case interface{ ConnectionState() tls.ConnectionState }:
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

// keptClient returns the client of the session mochi keeps for id after
// its connection ended, if any.
func (h *Hook) keptClient(id string) (*mqtt.Client, bool) {
	existing, ok := h.s.Clients.Get(id)
	if !ok || !existing.Closed() {
		return nil, false // none, or a live connection: the Guard's Registry decided
	}
	return existing, true
}

// discardKept discards the session mochi kept for client ID id (its
// subscriptions and queued messages): the Guard did not tell the new
// connection to resume it, because it belongs to another identity or to one
// this hook never authenticated (a session restored from storage, say), or
// the new connection asked for a clean start. mochi would otherwise hand
// it to the new connection. A delayed will still pending is due now: the
// session ends.
func (h *Hook) discardKept(id string) {
	h.flushWill(id) // checked against the kept session: before it ends
	existing, ok := h.keptClient(id)
	if !ok {
		return
	}
	h.s.UnsubscribeClient(existing)
	existing.ClearInflights()
	h.s.Clients.Delete(id)
	h.offline.CompareAndDelete(id, existing)
	h.endOffline(existing)
}

// adoptKept prepares the session mochi keeps for id to be resumed by the
// connection of sess (same identity): deliveries to the kept session are
// checked against sess from now on, its subscriptions are authorized again
// (removed or downgraded as the current policy says) and its queued
// messages that sess may no longer receive are dropped, before mochi moves
// them to the new connection and resends them. The owner's return cancels
// its delayed will.
func (h *Hook) adoptKept(id string, sess *mqttsec.Session) {
	h.cancelWill(id)
	existing, ok := h.keptClient(id)
	if !ok {
		return
	}
	if cn := h.lookup(existing); cn != nil {
		if old := cn.sess.Swap(sess); old != sess {
			h.sessions.Delete(old)
			h.g.Disconnect(old, 0)
		}
	}
	h.reauthorize(existing, sess)
}

// reauthorize checks the subscriptions and queued outbound messages of a
// mochi client against sess.
func (h *Hook) reauthorize(cl *mqtt.Client, sess *mqttsec.Session) {
	ctx := context.Background()
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		qos, err := h.g.Subscribe(ctx, sess, mqttsec.Subscription{Filter: filter, QoS: sub.Qos,
			NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling})
		switch {
		case err != nil:
			if h.s.Topics.Unsubscribe(filter, cl.ID) {
				atomic.AddInt64(&h.s.Info.Subscriptions, -1)
			}
			cl.State.Subscriptions.Delete(filter)
		case qos < sub.Qos:
			sub.Qos = qos
			h.s.Topics.Subscribe(cl.ID, sub)
			cl.State.Subscriptions.Add(filter, sub)
		}
	}
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue // the state of an inbound QoS 2 exchange
		}
		if h.g.Deliver(ctx, sess, pk.TopicName) != nil && cl.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&h.s.Info.Inflight, -1)
			cl.State.Inflight.IncreaseSendQuota()
			if cn := h.lookup(cl); cn != nil {
				h.credit(cn, msgCost(&pk))
			}
		}
	}
}

// OnSessionEstablish runs just before mochi moves the session held for the
// client ID to the new connection. When the Guard did not tell the new
// connection to resume it ([mqttsec.Session.Resume] false: another identity,
// under a registry that lets it take over a live connection), the live
// holder's subscriptions and queued messages are cleared first, so that
// mochi hands none of them to the new identity.
func (h *Hook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	cn := h.lookup(cl)
	if cn == nil || cn.session().Resume() {
		return
	}
	if existing, ok := h.s.Clients.Get(cl.ID); ok && existing != cl {
		h.s.UnsubscribeClient(existing)
		existing.ClearInflights()
	}
}

// OnPacketEncode corrects what mochi v2.7.9 sends wrong, before the packet
// is encoded:
//   - a CONNACK to an MQTT 3.1.1 client from mochi's own CONNECT checks
//     carries an MQTT 5 reason code (0x80, 0x82, 0x85, ...): it gets the
//     3.1.1 return code ([mqttsec.ReasonCode.V3Connack]; 0x02 for an
//     empty client ID without clean session);
//   - a CONNACK says "session present" for a session the hook emptied
//     (see [Hook.OnSessionEstablish]): it says none;
//   - a PUBACK or PUBREC that accepts a message carries 0x01 or 0x02 (a
//     SUBACK's "granted QoS"), which a PUBACK may not: it gets 0x00;
//   - an acknowledgement repeats every property of the PUBLISH it answers
//     (user properties, correlation data, ...): it keeps only its reason
//     string;
//   - a PUBLISH to a client that asked for no problem information loses
//     its user properties, which MQTT keeps on PUBLISH: they are sent.
func (h *Hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if cl.Properties.ProtocolVersion < 5 && pk.ReasonCode > mqttsec.V3NotAuthorized {
			if pk.ReasonCode == byte(mqttsec.CodeUnspecified) && !cl.Properties.Clean && cl.Properties.Props.AssignedClientID != "" {
				// mochi's answer to an empty client ID without clean session.
				pk.ReasonCode = mqttsec.V3IdentifierRejected
			} else {
				pk.ReasonCode = mqttsec.ReasonCode(pk.ReasonCode).V3Connack()
			}
		}
		if cn := h.lookup(cl); cn != nil && pk.SessionPresent && !cn.session().Resume() {
			pk.SessionPresent = false // mochi found a session the hook emptied
		}
	case packets.Publish:
		// Request Problem Information 0 forbids reason strings and user
		// properties on packets other than PUBLISH, CONNACK and
		// DISCONNECT [MQTT-3.1.2-29]; mochi strips them from every packet,
		// so the user properties of a message (a detached signature, say)
		// never reached such a client.
		pk.Mods.DisallowProblemInfo = false
	case packets.Puback, packets.Pubrec:
		if pk.ReasonCode == 0x01 || pk.ReasonCode == 0x02 {
			pk.ReasonCode = 0
		}
		pk.Properties = packets.Properties{ReasonString: pk.Properties.ReasonString}
	}
	return pk
}

// OnConnectAuthenticate allows exactly the connections OnConnect accepted.
func (h *Hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.conns.Load(cl)
	return ok
}

// OnSessionEstablished marks the connection established: from now on mochi
// calls OnDisconnect for it.
func (h *Hook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cn := h.lookup(cl); cn != nil {
		cn.established.Store(true)
	}
	// mochi has moved any kept session of this client ID to cl.
	if v, ok := h.offline.Load(cl.ID); ok && v.(*mqtt.Client) != cl {
		h.endOffline(v.(*mqtt.Client))
		h.offline.CompareAndDelete(cl.ID, v)
	}
}

// endOffline forgets the kept session of client cl.
func (h *Hook) endOffline(cl *mqtt.Client) {
	v, ok := h.conns.LoadAndDelete(cl)
	if !ok {
		return
	}
	cn := v.(*conn)
	h.release(cn)
	sess := cn.session()
	if cur, ok := h.sessions.Load(sess); ok && cur.(*conn) == cn {
		h.sessions.Delete(sess)
		h.g.Disconnect(sess, 0)
	}
}

// OnDisconnect ends the client's session with [mqttsec.Guard.Disconnect]. mochi
// calls it once per connection, including a connection whose session was
// taken over; sessions are keyed by mochi's *Client, so a takeover never
// ends the new connection's session.
//
// When mochi keeps the session (a v5 session expiry interval, or a v3 clean
// session flag of 0), the hook keeps the identity for authorizing the
// messages mochi queues for the offline client, until the session expires
// (OnClientExpired), a connection of the same identity resumes it, or the
// Guard ends it (a revocation, a kick). The session of a connection the
// Guard ended (expired or revoked credentials) is not kept.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	cn := h.lookup(cl)
	if cn == nil {
		return
	}
	sess := cn.session()
	stopped := sess.Err() != nil
	keep := time.Duration(0)
	if !expire && !cl.IsTakenOver() && !stopped {
		keep = h.keep(cl)
	}
	if keep == 0 {
		h.settleWill(cl)
	}
	if _, ok := h.sessions.Load(sess); ok {
		h.g.Disconnect(sess, keep)
		if keep == 0 {
			h.sessions.Delete(sess)
		}
	}
	h.untrack(cn)
	if keep == 0 || !h.current(cl) {
		h.conns.Delete(cl)
		h.release(cn)
		if stopped && !expire && h.current(cl) {
			// mochi would keep the session of a revoked identity.
			h.discardKept(cl.ID)
		}
		return
	}
	cn.offline.Store(true)
	h.offline.Store(cl.ID, cl)
	if !h.current(cl) { // taken over meanwhile
		h.conns.Delete(cl)
		h.release(cn)
		h.offline.CompareAndDelete(cl.ID, cl)
	}
}

// settleWill decides the delayed will of a connection whose session is not
// kept: a connection taken over by one that resumes the session cancels it
// (MQTT 5.0, 3.1.3.2.2), any other end of the session makes it due now.
func (h *Hook) settleWill(cl *mqtt.Client) {
	if cl.IsTakenOver() {
		if next, ok := h.s.Clients.Get(cl.ID); ok && next != cl && !next.Properties.Clean {
			h.cancelWill(cl.ID)
			return
		}
	}
	h.flushWill(cl.ID)
}

// keep is how long mochi keeps the session of cl after its connection
// ended: the session expiry interval (mochi's maximum for a 3.1.1 client
// without clean session), or the will delay when that is longer.
func (h *Hook) keep(cl *mqtt.Client) time.Duration {
	secs := h.s.Options.Capabilities.MaximumSessionExpiryInterval
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryIntervalFlag {
		secs = min(secs, cl.Properties.Props.SessionExpiryInterval)
	}
	secs = max(secs, cl.Properties.Will.WillDelayInterval)
	// mochi expires a session on its one-second clock tick after the
	// interval; the Guard adds a grace of its own to cover it.
	return time.Duration(secs) * time.Second
}

// current reports whether cl is the client mochi holds for its ID.
func (h *Hook) current(cl *mqtt.Client) bool {
	c, ok := h.s.Clients.Get(cl.ID)
	return ok && c == cl
}

// OnClientExpired forgets a kept session mochi has expired; a delayed will
// still pending is due now.
func (h *Hook) OnClientExpired(cl *mqtt.Client) {
	h.flushWill(cl.ID)
	h.offline.CompareAndDelete(cl.ID, cl)
	h.endOffline(cl)
}

// end ends the session of a connection that never became established.
func (h *Hook) end(cl *mqtt.Client) {
	v, ok := h.conns.LoadAndDelete(cl)
	if !ok {
		return
	}
	h.release(v.(*conn))
	sess := v.(*conn).session()
	if _, ok := h.sessions.LoadAndDelete(sess); ok {
		h.g.Disconnect(sess, 0)
	}
}

func (h *Hook) lookup(cl *mqtt.Client) *conn {
	v, ok := h.conns.Load(cl)
	if !ok {
		return nil
	}
	return v.(*conn)
}

// Guard returns the Guard the hook enforces.
func (h *Hook) Guard() *mqttsec.Guard { return h.g }

// Session returns the Guard session of a connected mochi client, or nil.
func (h *Hook) Session(cl *mqtt.Client) *mqttsec.Session {
	if cn := h.lookup(cl); cn != nil {
		return cn.session()
	}
	return nil
}

// OnACLCheck answers mochi's topic checks. For a PUBLISH (write) it allows
// any authenticated client, because OnPublish makes the decision with the
// whole message (QoS, retain flag, payload size, alias-resolved topic); the
// Guard is asked once per publish, not twice. For a SUBSCRIBE it returns the
// decision OnSubscribe took. For a delivery (read) it runs
// [mqttsec.Guard.Deliver], which allocates nothing when it allows (for a
// kept session it checks the Guard's clock against the credentials'
// expiry), then the outbound bounds of [Limits].
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	cn := h.lookup(cl)
	if cn == nil {
		return false
	}
	if write {
		return !cn.offline.Load()
	}
	if d := cn.pending.Load(); d != nil {
		if i := d.find(topic); i >= 0 {
			if d.errs[i] != nil {
				return false
			}
			if isFilter(topic) {
				return true
			}
			// A topic name equal to a pending filter: a delivery may race
			// with the subscription. Require the receive check as well.
		}
	}
	if isFilter(topic) {
		return false // a filter no SUBSCRIBE of this client is deciding
	}
	if h.g.Deliver(context.Background(), cn.session(), topic) != nil {
		return false
	}
	return !h.lim.counting || h.admit(cl, cn, topic)
}

// find returns the index of filter in the SUBSCRIBE being decided, or -1.
// mochi checks the filters in order: the search starts after the last one
// found.
func (d *subDecision) find(filter string) int {
	n := len(d.filters)
	start := int(d.next.Load())
	for k := range n {
		i := (start + k) % n
		if d.filters[i] == filter {
			d.next.Store(int32(i + 1))
			return i
		}
	}
	return -1
}

// sharePrefix starts a shared subscription filter.
const sharePrefix = "$share/"

func isFilter(s string) bool {
	return strings.ContainsAny(s, "+#") || mqtt.IsSharedFilter(s)
}

// OnSubscribe runs [mqttsec.Guard.Subscribe] for each filter of a SUBSCRIBE
// and lowers the QoS of a filter to the QoS the Guard grants. It applies the
// subscription bounds of [Limits] (filters per SUBSCRIBE, filters and their
// memory per client, filter length) and gives each granted filter its own
// copy of the string: mochi would keep the filter as a view of the whole
// SUBSCRIBE packet.
func (h *Hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	cn := h.lookup(cl)
	if cn == nil {
		return pk
	}
	n := len(pk.Filters)
	d := &subDecision{filters: make([]string, n), errs: make([]error, n), qos: make([]byte, n)}
	quota := h.subscriptionQuota(cl)
	for i, f := range pk.Filters {
		d.filters[i] = f.Filter
		if h.lim.filters >= 0 && i >= h.lim.filters {
			if i == h.lim.filters {
				h.subscribeDenied(cl, cn, f.Filter, errTooManyFilters)
			}
			d.errs[i] = errTooManyFilters
			continue
		}
		if h.lim.topicLen >= 0 && len(f.Filter) > h.lim.topicLen {
			d.errs[i] = fmt.Errorf("%w: %w", mqttsec.ErrTopicFilterInvalid, errTooLong)
			h.subscribeDenied(cl, cn, f.Filter, d.errs[i])
			continue
		}
		inner := f.Filter
		if mqtt.IsSharedFilter(f.Filter) {
			if !strings.HasPrefix(f.Filter, sharePrefix) {
				// mochi takes "$SHARE/g/f" (any case) as a shared
				// subscription to f, the Guard as the literal filter it is
				// in MQTT: refuse it, or f would be subscribed without
				// being authorized.
				d.errs[i] = fmt.Errorf("%w: %q: the shared subscription prefix is %q",
					mqttsec.ErrTopicFilterInvalid, f.Filter, sharePrefix)
				continue
			}
			if j := strings.IndexByte(f.Filter[len(sharePrefix):], '/'); j >= 0 {
				inner = f.Filter[len(sharePrefix)+j+1:]
			}
		}
		if strings.HasPrefix(inner, ReservedPrefix) {
			d.errs[i] = fmt.Errorf("%w: %q is reserved", mqttsec.ErrNotAuthorized, ReservedPrefix)
			continue
		}
		d.qos[i], d.errs[i] = h.g.Subscribe(context.Background(), cn.session(), mqttsec.Subscription{
			Filter: f.Filter, QoS: f.Qos, NoLocal: f.NoLocal,
			RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling})
		if d.errs[i] != nil {
			continue
		}
		if err := quota.take(f.Filter); err != nil {
			d.errs[i] = err
			h.subscribeDenied(cl, cn, f.Filter, err)
			continue
		}
		if d.qos[i] < f.Qos {
			pk.Filters[i].Qos = d.qos[i]
		}
		// mochi keeps the filter, as a view of the SUBSCRIBE's buffer:
		// give it its own copy, or the whole packet stays in memory.
		pk.Filters[i].Filter = strings.Clone(f.Filter)
		d.filters[i] = pk.Filters[i].Filter
	}
	cn.pending.Store(d)
	return pk
}

var errTooManyFilters = fmt.Errorf("%w: too many filters in one SUBSCRIBE", mqttsec.ErrQuotaExceeded)

// subQuota is what a client may still subscribe to.
type subQuota struct {
	have  map[string]packets.Subscription
	n     int
	bytes int64
	lim   *limits
}

// subscriptionQuota returns the subscriptions cl holds, as the bounds of
// [Limits] count them.
func (h *Hook) subscriptionQuota(cl *mqtt.Client) *subQuota {
	q := &subQuota{lim: &h.lim}
	if h.lim.subs < 0 && h.lim.subBytes < 0 {
		return q
	}
	q.have = cl.State.Subscriptions.GetAll()
	q.n = len(q.have)
	for f := range q.have {
		q.bytes += subCost(f)
	}
	return q
}

// take accounts for a new subscription to filter, or refuses it. A filter
// the client holds already is replaced, and takes nothing.
func (q *subQuota) take(filter string) error {
	if q.have == nil {
		return nil
	}
	if _, ok := q.have[filter]; ok {
		return nil
	}
	c := subCost(filter)
	switch {
	case q.lim.subs >= 0 && q.n+1 > q.lim.subs:
		return errTooManySubs
	case q.lim.subBytes >= 0 && q.bytes+c > q.lim.subBytes:
		return errSubsBytes
	}
	q.n++
	q.bytes += c
	q.have[filter] = packets.Subscription{}
	return nil
}

// subscribeDenied reports a filter the hook's [Limits] refused.
func (h *Hook) subscribeDenied(cl *mqtt.Client, cn *conn, filter string, err error) {
	e := mqttsec.Event{Kind: mqttsec.EventSubscribeDenied, ClientID: cl.ID, RemoteAddr: cl.Net.Remote,
		Topic: filter, Code: mqttsec.CodeOf(err), Err: err}
	if s := cn.session(); s != nil {
		e.Username = s.Client().Username
	}
	h.g.Event(e)
}

// OnSubscribed replaces mochi's reason codes for denied filters with the
// Guard's (mapped by [mqttsec.ReasonCode.ForSuback]; 0x80 for v3 clients) in
// the SUBACK mochi is about to send, and removes any subscription another
// hook granted against the Guard's decision.
func (h *Hook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if cl == h.probing.Load() {
		for _, c := range codes {
			if c < 0x80 {
				h.foreignOK.Store(true)
			}
		}
		return
	}
	cn := h.lookup(cl)
	if cn == nil {
		h.revoke(cl, pk, codes, nil)
		return
	}
	d := cn.pending.Swap(nil)
	h.revoke(cl, pk, codes, d)
}

func (h *Hook) revoke(cl *mqtt.Client, pk packets.Packet, codes []byte, d *subDecision) {
	for i, f := range pk.Filters {
		if i >= len(codes) {
			break
		}
		var err error = mqttsec.ErrNotAuthorized
		if d != nil && i < len(d.errs) && d.filters[i] == f.Filter {
			err = d.errs[i]
		}
		if err == nil {
			continue
		}
		if codes[i] < 0x80 {
			// Granted by another hook: undo it.
			h.log.Error("subscription granted by another hook against the Guard; revoked",
				"client", cl.ID, "filter", f.Filter)
			if h.s.Topics.Unsubscribe(f.Filter, cl.ID) {
				atomic.AddInt64(&h.s.Info.Subscriptions, -1)
			}
			cl.State.Subscriptions.Delete(f.Filter)
		}
		code := mqttsec.CodeOf(err)
		if cl.Properties.ProtocolVersion < 5 {
			codes[i] = code.V3Suback()
		} else {
			codes[i] = byte(code.ForSuback())
		}
	}
}

// OnPublish runs [mqttsec.Guard.Publish] on an incoming PUBLISH. A denied
// message is never delivered nor retained: the hook answers it itself and
// returns [packets.ErrRejectPacket], the only error mochi drops a message for
// at every QoS and protocol version. A v5 client gets a PUBACK (QoS 1) or
// PUBREC (QoS 2) with the Guard's code mapped by
// [mqttsec.ReasonCode.ForPuback] (0x96, a rate, becomes 0x97 quota exceeded);
// a v3 client, whose acks cannot carry a reason, gets a plain ack (or is
// disconnected, see [WithV3DenyDisconnect]); QoS 0 is dropped silently. A
// denial for which [mqttsec.ReasonCode.Disconnects] is true (too large,
// expired, banned) disconnects the client instead, at any QoS.
//
// Before the Guard, it applies the topic-length and property bounds of
// [Limits]; it gives a large message its own copies of its topic and
// property strings (mochi's copies for the subscribers would keep the
// whole packet alive), and records the message's size for the outbound
// books of its deliveries.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		h.trackInline(&pk)
		return pk, nil
	}
	cn := h.lookup(cl)
	var err error
	if cn == nil {
		err = mqttsec.ErrNotAuthorized
	} else if err = h.checkPublish(cl, &pk); err != nil {
		h.g.Event(mqttsec.Event{Kind: mqttsec.EventPublishDenied, ClientID: cl.ID, Username: cn.session().Client().Username,
			RemoteAddr: cl.Net.Remote, Topic: pk.TopicName, Code: mqttsec.CodeOf(err), Err: err})
	} else {
		if pk.FixedHeader.Remaining > unpinMin || pk.Properties.TopicAlias > 0 {
			unpinPublish(cl, &pk)
		}
		// The Message escapes through the Authorizer interface; pooling it
		// keeps the allowed path free of allocations.
		m := messagePool.Get().(*mqttsec.Message)
		props := userProperties(m.UserProperties[:0], pk.Properties.User)
		*m = mqttsec.Message{Topic: pk.TopicName, Payload: pk.Payload,
			QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, UserProperties: props,
			PropertyBytes: propBytes(&pk.Properties)}
		err = h.g.Publish(context.Background(), cn.session(), m)
		clear(props) // keep no strings of the packet alive in the pool
		*m = mqttsec.Message{UserProperties: props[:0]}
		messagePool.Put(m)
		if err == nil {
			h.track(cn, &pk)
		}
	}
	if err == nil {
		return pk, nil
	}
	h.rejectPublish(cl, pk, mqttsec.CodeOf(err))
	return pk, packets.ErrRejectPacket
}

var messagePool = sync.Pool{New: func() any { return new(mqttsec.Message) }}

// userProperties appends mochi's user properties to dst.
func userProperties(dst []mqttsec.UserProperty, src []packets.UserProperty) []mqttsec.UserProperty {
	for _, u := range src {
		dst = append(dst, mqttsec.UserProperty{Key: u.Key, Value: u.Val})
	}
	return dst
}

// checkPublish applies the hook's [Limits] to a PUBLISH: the topic's
// length and the size of its properties. A topic set through an alias
// that is too long disconnects the client (0x94): mochi keeps it in the
// client's alias map.
func (h *Hook) checkPublish(cl *mqtt.Client, pk *packets.Packet) error {
	if h.lim.topicLen >= 0 && len(pk.TopicName) > h.lim.topicLen {
		if pk.Properties.TopicAlias > 0 {
			return fmt.Errorf("%w: %w", errAliasTooLong, errTooLong)
		}
		return fmt.Errorf("%w: %w", mqttsec.ErrTopicNameInvalid, errTooLong)
	}
	if h.lim.propBytes >= 0 && propBytes(&pk.Properties) > h.lim.propBytes {
		return errProps
	}
	return nil
}

// errKeepAlive refuses an MQTT 3.1.1 keep-alive above the maximum: 0x85,
// which such a client reads as 0x02 (identifier rejected), Mosquitto's
// answer in the same case.
var errKeepAlive = mqttsec.NewReasonError(mqttsec.CodeClientIDNotValid, "mochi: keep alive refused")

var errAliasTooLong = mqttsec.NewReasonError(mqttsec.CodeTopicAliasInvalid, "mochi: topic alias for a topic that is too long")

func (h *Hook) rejectPublish(cl *mqtt.Client, pk packets.Packet, code mqttsec.ReasonCode) {
	if code.Disconnects() || code == mqttsec.CodeTopicAliasInvalid {
		h.disconnect(cl, code)
		return
	}
	qos := pk.FixedHeader.Qos
	if qos == 0 {
		return
	}
	typ := byte(packets.Puback)
	if qos == 2 {
		typ = packets.Pubrec
	}
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: pk.PacketID}
	if cl.Properties.ProtocolVersion >= 5 {
		code = code.ForPuback()
		ack.ReasonCode = byte(code)
		ack.Properties.ReasonString = code.Name()
	} else if h.v3DenyDisconnect {
		cl.Stop(packets.ErrNotAuthorized)
		return
	}
	_ = cl.WritePacket(ack)
}

// OnWill decides the will message of a connection that ended: mochi sends a
// will without asking any hook whether it may, so the hook asks
// [mqttsec.Guard.Will] with the current policy and the session's current
// credentials. A denied will is replaced by an empty message on a reserved
// topic nobody can subscribe to ([ReservedPrefix]), neither delivered nor
// retained (mochi offers no other way to drop it). A delayed will (MQTT v5
// will delay interval) is sent by the hook itself when it is due, after the
// same check: at the end of the delay, or when the kept session ends
// earlier; the return of the session's owner cancels it.
func (h *Hook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	cn := h.lookup(cl)
	if cn == nil {
		return voidWill(will), nil
	}
	m := &mqttsec.Message{Topic: will.TopicName, Payload: will.Payload, QoS: will.Qos, Retain: will.Retain,
		Will: true, UserProperties: userProperties(nil, will.User), PropertyBytes: userBytes(will.User)}
	if d := cl.Properties.Will.WillDelayInterval; d > 0 {
		h.scheduleWill(cl, cn.session(), will, time.Duration(d)*time.Second)
		return voidWill(will), nil
	}
	if h.g.Will(context.Background(), cn.session(), m) != nil {
		return voidWill(will), nil
	}
	if h.lim.counting && h.index.inline.Load() < maxInline {
		// mochi publishes the will with this topic string: its
		// deliveries find the record (OnWillSent forgets it).
		r := recPool.Get().(*pubRec)
		r.fill(&packets.Packet{TopicName: will.TopicName, Payload: will.Payload,
			FixedHeader: packets.FixedHeader{Qos: will.Qos}, Properties: packets.Properties{User: will.User}})
		h.index.inline.Add(1)
		h.index.put(r)
	}
	return will, nil
}

// voidWill is a will that reaches nobody and is not retained.
func voidWill(w mqtt.Will) mqtt.Will {
	return mqtt.Will{TopicName: voidTopic, Flag: w.Flag, WillDelayInterval: w.WillDelayInterval}
}

// willListener is the listener name of the inline clients that send the
// delayed wills: their retained wills were counted by the Guard.
const willListener = "mqttsec-will"

// delayedWill is a will the hook sends itself when its delay ends.
type delayedWill struct {
	id    string
	sess  *mqttsec.Session
	will  mqtt.Will
	timer *time.Timer
	once  sync.Once
}

func (h *Hook) scheduleWill(cl *mqtt.Client, sess *mqttsec.Session, will mqtt.Will, delay time.Duration) {
	dw := &delayedWill{id: cl.ID, sess: sess, will: will}
	if prev, ok := h.wills.Swap(cl.ID, dw); ok {
		h.sendWill(prev.(*delayedWill)) // a will of an earlier connection is due: its session ended
	}
	dw.timer = time.AfterFunc(delay, func() {
		if h.wills.CompareAndDelete(dw.id, dw) {
			h.sendWill(dw)
		}
	})
}

// cancelWill drops the pending delayed will of id: its owner is back.
func (h *Hook) cancelWill(id string) {
	if v, ok := h.wills.LoadAndDelete(id); ok {
		dw := v.(*delayedWill)
		dw.timer.Stop()
		dw.once.Do(func() {})
	}
}

// flushWill sends the pending delayed will of id now: its session ends.
func (h *Hook) flushWill(id string) {
	if v, ok := h.wills.LoadAndDelete(id); ok {
		dw := v.(*delayedWill)
		dw.timer.Stop()
		h.sendWill(dw)
	}
}

// sendWill publishes a delayed will if the Guard still allows it, through
// an inline client with the owner's client ID (so that no-local
// subscriptions of the owner are honoured). It bypasses OnPublish: the
// Guard has just decided.
func (h *Hook) sendWill(dw *delayedWill) {
	dw.once.Do(func() {
		m := &mqttsec.Message{Topic: dw.will.TopicName, Payload: dw.will.Payload, QoS: dw.will.Qos, Retain: dw.will.Retain,
			Will: true, UserProperties: userProperties(nil, dw.will.User), PropertyBytes: userBytes(dw.will.User)}
		if h.g.Will(context.Background(), dw.sess, m) != nil {
			return
		}
		pc := h.s.NewClient(nil, willListener, dw.id, true)
		_ = h.s.InjectPacket(pc, packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: dw.will.Qos, Retain: dw.will.Retain},
			TopicName:   dw.will.TopicName,
			Payload:     dw.will.Payload,
			Properties:  packets.Properties{User: dw.will.User},
			PacketID:    uint16(dw.will.Qos),
		})
	})
}

// Disconnect implements [mqttsec.Disconnector]. For a live connection it
// closes it, with a DISCONNECT carrying [mqttsec.ReasonCode.ForDisconnect]
// of code for a v5 client (0xA0 when the credentials expired, 0x87 when they
// were revoked, 0x98 for a kick or a ban) and by closing the socket for a v3
// client; the will message of a session the Guard ended is not sent (the
// Guard refuses it). For a session mochi keeps after its connection ended,
// it discards the kept session: its subscriptions, queued messages and
// delayed will. It does not block and does nothing for a session that
// already ended.
func (h *Hook) Disconnect(s *mqttsec.Session, code mqttsec.ReasonCode) {
	v, ok := h.sessions.Load(s)
	if !ok {
		return
	}
	cn := v.(*conn)
	if cn.offline.Load() {
		go func() {
			h.cancelWill(cn.cl.ID)
			if h.current(cn.cl) {
				h.discardKept(cn.cl.ID)
			}
			h.offline.CompareAndDelete(cn.cl.ID, cn.cl)
			h.endOffline(cn.cl)
		}()
		return
	}
	go h.disconnect(cn.cl, code)
}

func (h *Hook) disconnect(cl *mqtt.Client, code mqttsec.ReasonCode) {
	if code == mqttsec.CodeMaximumConnectTime || code == mqttsec.CodeBanned || code == mqttsec.CodeAdministrativeAction {
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	code = code.ForDisconnect()
	pc := packets.Code{Code: byte(code), Reason: code.Name()}
	if cl.Properties.ProtocolVersion >= 5 {
		_ = h.s.DisconnectClient(cl, pc)
	}
	cl.Stop(pc)
}

var _ mqttsec.Disconnector = (*Hook)(nil)
var _ mqtt.Hook = (*Hook)(nil)
