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

// Option configures a [Hook].
type Option func(*Hook)

// WithLogger sets the logger for adapter problems (a foreign ACL hook, say).
// Security events go to the Guard's event sink, not here. Nil discards.
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

// WithV3DenyDisconnect makes the hook close an MQTT 3.1.1 connection whose
// QoS 1 or 2 PUBLISH is denied. By default the denied message is acknowledged
// and dropped, as Mosquitto does, because a v3 PUBACK cannot carry a reason.
func WithV3DenyDisconnect() Option {
	return func(h *Hook) { h.v3DenyDisconnect = true }
}

// Hook is a mochi-mqtt hook that routes every CONNECT, PUBLISH, SUBSCRIBE,
// delivery and disconnect through a [mqttsec.Guard]. Create it with
// [NewHook], which also registers it on the server.
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

	// conns maps *mqtt.Client to *conn. mochi's Client has no field for
	// user data, and a sync.Map read of a stable key takes no lock and
	// allocates nothing, so per-message checks stay lock-free.
	conns sync.Map
	// sessions maps *mqttsec.Session to *conn, for the Disconnector.
	sessions sync.Map
	// offline maps a client ID to the *mqtt.Client of a session mochi
	// keeps after its connection ended.
	offline sync.Map

	verifyMu  sync.Mutex // one probe at a time
	probing   atomic.Pointer[mqtt.Client]
	foreignOK atomic.Bool
}

// conn is the adapter's per-connection state.
type conn struct {
	cl          *mqtt.Client
	sess        *mqttsec.Session
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
}

type subDecision struct {
	filters []string
	errs    []error
}

// NewHook returns a Hook that enforces g on s, registered with s.AddHook,
// and installs it as g's [mqttsec.Disconnector].
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
	h := &Hook{g: g, s: s, connectTimeout: 10 * time.Second}
	for _, o := range opts {
		o(h)
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
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
		mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnClientExpired:
		return true
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
		Filters:     packets.Subscriptions{{Filter: "$mqttsec/probe/#", Qos: 0}},
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

// OnConnect runs [mqttsec.Guard.Connect] for a CONNECT: mochi has parsed the
// packet and assigned a client ID when the client sent none. A denial is
// answered here with the Guard's reason code (mapped for v3 clients by
// [mqttsec.ReasonCode.V3Connack]), because OnConnectAuthenticate can only
// make mochi answer 0x86; returning the error then stops mochi.
func (h *Hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	c := mqttsec.Client{
		ID:         cl.ID,
		Username:   string(pk.Connect.Username),
		RemoteAddr: cl.Net.Remote,
		Listener:   cl.Net.Listener,
		TLS:        tlsState(cl.Net.Conn),
		Protocol:   pk.ProtocolVersion,
		CleanStart: pk.Connect.Clean,
	}
	cred := mqttsec.Credentials{
		Password:   pk.Connect.Password,
		AuthMethod: pk.Properties.AuthenticationMethod,
		AuthData:   pk.Properties.AuthenticationData,
	}
	var will *mqttsec.Message
	if pk.Connect.WillFlag {
		will = &mqttsec.Message{Topic: pk.Connect.WillTopic, Payload: pk.Connect.WillPayload,
			QoS: pk.Connect.WillQos, Retain: pk.Connect.WillRetain}
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.connectTimeout)
	sess, err := h.g.Connect(ctx, c, cred, will)
	cancel()
	if err != nil {
		code := connackCode(mqttsec.CodeOf(err))
		h.sendConnack(cl, code)
		return packets.Code{Code: byte(code), Reason: "mqttsec: connect denied: " + code.String()}
	}
	if !sess.Resume() {
		h.discardKept(cl.ID)
	}
	cn := &conn{cl: cl, sess: sess}
	h.conns.Store(cl, cn)
	h.sessions.Store(sess, cn)
	// The credentials may have expired since the Guard started their
	// timer, before the session was registered here, so that the timer's
	// Disconnect found nothing to close: refuse the CONNECT then.
	if sess.Expired() {
		h.end(cl)
		code := connackCode(mqttsec.CodeBadUsernameOrPassword)
		h.sendConnack(cl, code)
		return packets.Code{Code: byte(code), Reason: "mqttsec: connect denied: credentials expired"}
	}
	// mochi does not call OnDisconnect when the CONNACK cannot be written;
	// release the session then.
	time.AfterFunc(h.connectTimeout, func() { h.reap(cn) })
	return nil
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

func (h *Hook) sendConnack(cl *mqtt.Client, code mqttsec.ReasonCode) {
	if cl.Properties.ProtocolVersion < 5 {
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Connack},
			ReasonCode:  code.V3Connack(),
		})
		return
	}
	_ = h.s.SendConnack(cl, packets.Code{Code: byte(code), Reason: reasonString(code)}, false, nil)
}

// reasonString is the reason string sent to a client: the code's name, never
// the error detail (which may describe the policy).
func reasonString(code mqttsec.ReasonCode) string {
	s := code.String()
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[i+1:]
	}
	return s
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

// discardKept discards the session mochi kept for client ID id (its
// subscriptions and queued messages): the Guard did not tell the new
// connection to resume it, because it belongs to another identity or to one
// this hook never authenticated (a session restored from storage, say).
// mochi would otherwise hand it to the new connection.
func (h *Hook) discardKept(id string) {
	existing, ok := h.s.Clients.Get(id)
	if !ok || !existing.Closed() {
		return // none, or a live connection: the Guard's Registry decided
	}
	h.s.UnsubscribeClient(existing)
	existing.ClearInflights()
	h.s.Clients.Delete(id)
	h.conns.Delete(existing)
	h.offline.CompareAndDelete(id, existing)
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
		h.conns.Delete(v)
		h.offline.CompareAndDelete(cl.ID, v)
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
// (OnClientExpired) or a connection takes it over.
func (h *Hook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	cn := h.lookup(cl)
	if cn == nil {
		return
	}
	keep := time.Duration(0)
	if !expire && !cl.IsTakenOver() {
		keep = h.keep(cl)
	}
	if _, ok := h.sessions.LoadAndDelete(cn.sess); ok {
		h.g.Disconnect(cn.sess, keep)
	}
	if expire || cl.IsTakenOver() || !h.current(cl) {
		h.conns.Delete(cl)
		return
	}
	cn.offline.Store(true)
	h.offline.Store(cl.ID, cl)
	if !h.current(cl) { // taken over meanwhile
		h.conns.Delete(cl)
		h.offline.CompareAndDelete(cl.ID, cl)
	}
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
	// mochi expires a session on its clock tick after the interval: keep
	// the ID bound a little longer than that.
	return time.Duration(secs)*time.Second + 2*time.Second
}

// current reports whether cl is the client mochi holds for its ID.
func (h *Hook) current(cl *mqtt.Client) bool {
	c, ok := h.s.Clients.Get(cl.ID)
	return ok && c == cl
}

// OnClientExpired forgets a kept session mochi has expired.
func (h *Hook) OnClientExpired(cl *mqtt.Client) {
	h.conns.Delete(cl)
	h.offline.CompareAndDelete(cl.ID, cl)
}

// end ends the session of a connection that never became established.
func (h *Hook) end(cl *mqtt.Client) {
	v, ok := h.conns.LoadAndDelete(cl)
	if !ok {
		return
	}
	cn := v.(*conn)
	if _, ok := h.sessions.LoadAndDelete(cn.sess); ok {
		h.g.Disconnect(cn.sess, 0)
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
		return cn.sess
	}
	return nil
}

// OnACLCheck answers mochi's topic checks. For a PUBLISH (write) it allows
// any authenticated client, because OnPublish makes the decision with the
// whole message (QoS, retain flag, payload size, alias-resolved topic); the
// Guard is asked once per publish, not twice. For a SUBSCRIBE it returns the
// decision OnSubscribe took. For a delivery (read) it runs
// [mqttsec.Guard.Deliver], which allocates nothing when it allows.
func (h *Hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	cn := h.lookup(cl)
	if cn == nil {
		return false
	}
	if write {
		return !cn.offline.Load()
	}
	if cn.offline.Load() {
		// Queued for an offline session: the identity that subscribed must
		// still be valid.
		if exp := cn.sess.Identity().Expiry; !exp.IsZero() && !time.Now().Before(exp) {
			return false
		}
	}
	if d := cn.pending.Load(); d != nil {
		for i, f := range d.filters {
			if f != topic {
				continue
			}
			if d.errs[i] != nil {
				return false
			}
			if isFilter(topic) {
				return true
			}
			// A topic name equal to a pending filter: a delivery may race
			// with the subscription. Require the receive check as well.
			break
		}
	}
	if isFilter(topic) {
		return false // a filter no SUBSCRIBE of this client is deciding
	}
	return h.g.Deliver(context.Background(), cn.sess, topic) == nil
}

// sharePrefix starts a shared subscription filter.
const sharePrefix = "$share/"

func isFilter(s string) bool {
	return strings.ContainsAny(s, "+#") || mqtt.IsSharedFilter(s)
}

// OnSubscribe runs [mqttsec.Guard.Subscribe] for each filter of a SUBSCRIBE.
func (h *Hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	cn := h.lookup(cl)
	if cn == nil {
		return pk
	}
	d := &subDecision{filters: make([]string, len(pk.Filters)), errs: make([]error, len(pk.Filters))}
	for i, f := range pk.Filters {
		d.filters[i] = f.Filter
		if mqtt.IsSharedFilter(f.Filter) && !strings.HasPrefix(f.Filter, sharePrefix) {
			// mochi takes "$SHARE/g/f" (any case) as a shared subscription
			// to f, the Guard as the literal filter it is in MQTT: refuse
			// it, or f would be subscribed without being authorized.
			d.errs[i] = fmt.Errorf("%w: %q: the shared subscription prefix is %q",
				mqttsec.ErrTopicFilterInvalid, f.Filter, sharePrefix)
			continue
		}
		_, d.errs[i] = h.g.Subscribe(context.Background(), cn.sess, mqttsec.Subscription{
			Filter: f.Filter, QoS: f.Qos, NoLocal: f.NoLocal,
			RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling})
	}
	cn.pending.Store(d)
	return pk
}

// OnSubscribed replaces mochi's reason codes for denied filters with the
// Guard's (0x87, 0xA2, ...; 0x80 for v3 clients) in the SUBACK mochi is
// about to send, and removes any subscription another hook granted against
// the Guard's decision.
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
		code := byte(subackCode(mqttsec.CodeOf(err)))
		if cl.Properties.ProtocolVersion < 5 {
			code = 0x80
		}
		codes[i] = code
	}
}

// OnPublish runs [mqttsec.Guard.Publish] on an incoming PUBLISH. A denied
// message is never delivered nor retained: the hook answers it itself and
// returns [packets.ErrRejectPacket], the only error mochi drops a message for
// at every QoS and protocol version. A v5 client gets a PUBACK (QoS 1) or
// PUBREC (QoS 2) with the Guard's reason code; a v3 client, whose acks
// cannot carry a reason, gets a plain ack (or is disconnected, see
// [WithV3DenyDisconnect]); QoS 0 is dropped silently. Codes a PUBACK cannot
// carry are mapped: 0x96 (rate) becomes 0x97 (quota exceeded); 0x95 (too
// large), 0x8A (banned) and 0xA0 (expired) disconnect the client with that
// code instead, at any QoS.
func (h *Hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	cn := h.lookup(cl)
	var err error
	if cn == nil {
		err = mqttsec.ErrNotAuthorized
	} else {
		// The Message escapes through the Authorizer interface; pooling it
		// keeps the allowed path free of allocations.
		m := messagePool.Get().(*mqttsec.Message)
		*m = mqttsec.Message{Topic: pk.TopicName, Payload: pk.Payload,
			QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain}
		err = h.g.Publish(context.Background(), cn.sess, m)
		*m = mqttsec.Message{}
		messagePool.Put(m)
	}
	if err == nil {
		return pk, nil
	}
	h.rejectPublish(cl, pk, mqttsec.CodeOf(err))
	return pk, packets.ErrRejectPacket
}

var messagePool = sync.Pool{New: func() any { return new(mqttsec.Message) }}

func (h *Hook) rejectPublish(cl *mqtt.Client, pk packets.Packet, code mqttsec.ReasonCode) {
	code, disconnect := pubackCode(code)
	if disconnect {
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
		ack.ReasonCode = byte(code)
		ack.Properties.ReasonString = reasonString(code)
	} else if h.v3DenyDisconnect {
		cl.Stop(packets.ErrNotAuthorized)
		return
	}
	_ = cl.WritePacket(ack)
}

// Disconnect implements [mqttsec.Disconnector]: it closes the session's
// connection, with a DISCONNECT carrying code for a v5 client (0xA0 when the
// credentials expired) and by closing the socket for a v3 client. The will
// message of a connection closed for expired credentials is not sent. It
// does not block and does nothing for a session that already ended.
func (h *Hook) Disconnect(s *mqttsec.Session, code mqttsec.ReasonCode) {
	v, ok := h.sessions.Load(s)
	if !ok {
		return
	}
	cn := v.(*conn)
	go h.disconnect(cn.cl, code)
}

func (h *Hook) disconnect(cl *mqtt.Client, code mqttsec.ReasonCode) {
	if code == mqttsec.CodeMaximumConnectTime || code == mqttsec.CodeBanned {
		atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
	}
	pc := packets.Code{Code: byte(code), Reason: reasonString(code)}
	if cl.Properties.ProtocolVersion >= 5 {
		_ = h.s.DisconnectClient(cl, pc)
	}
	cl.Stop(pc)
}

var _ mqttsec.Disconnector = (*Hook)(nil)
var _ mqtt.Hook = (*Hook)(nil)

// connackCode maps a denial to a reason code a CONNACK may carry.
func connackCode(c mqttsec.ReasonCode) mqttsec.ReasonCode {
	switch c {
	case 0x80, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F:
		return c
	case mqttsec.CodeMessageRateTooHigh:
		return mqttsec.CodeConnectionRateExceeded
	}
	return mqttsec.CodeUnspecified
}

// subackCode maps a denial to a reason code a SUBACK may carry.
func subackCode(c mqttsec.ReasonCode) mqttsec.ReasonCode {
	switch c {
	case 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2:
		return c
	case mqttsec.CodeMessageRateTooHigh:
		return mqttsec.CodeQuotaExceeded
	}
	return mqttsec.CodeUnspecified
}

// pubackCode maps a publish denial to a reason code a PUBACK or PUBREC may
// carry, or reports that it calls for a DISCONNECT with that code instead
// (packet too large, banned, credentials expired).
func pubackCode(c mqttsec.ReasonCode) (mqttsec.ReasonCode, bool) {
	switch c {
	case 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99:
		return c, false
	case mqttsec.CodeMessageRateTooHigh:
		return mqttsec.CodeQuotaExceeded, false
	case mqttsec.CodePacketTooLarge, mqttsec.CodeBanned, mqttsec.CodeMaximumConnectTime:
		return c, true
	}
	return mqttsec.CodeUnspecified, false
}
