// Package mochi plugs a [mqttsec.Guard] into a mochi-mqtt v2 broker
// (github.com/mochi-mqtt/server/v2, tested with v2.7.9).
//
// [NewHook] returns one [Hook] that routes every CONNECT, PUBLISH,
// SUBSCRIBE, delivery and disconnect of the broker through the Guard, and
// registers it on the server with AddHook. [Harden] wraps a listener so
// that sockets which never send CONNECT are closed and packets that would
// crash mochi are refused.
//
// # Usage
//
//	g := mqttsec.New(mqttsec.Config{Authenticator: users, Authorizer: policy})
//	caps := mqtt.NewDefaultServerCapabilities()
//	caps.MaximumPacketSize = 1 << 20            // required: NewHook refuses an unbounded server
//	caps.MaximumSessionExpiryInterval = 86400   // mochi's default keeps sessions for 136 years
//	s := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: mochi.Logger(slog.Default())})
//	if _, err := mochi.NewHook(g, s); err != nil { // registers the hook
//		return err
//	}
//	tcp := listeners.NewTCP(listeners.Config{ID: "tls", Address: ":8883", TLSConfig: tlsCfg})
//	if err := s.AddListener(mochi.Harden(tcp, 10*time.Second)); err != nil {
//		return err
//	}
//	return s.Serve()
//
// Register exactly one hook that answers OnConnectAuthenticate or OnACLCheck:
// do not add auth.AllowHook or auth.Hook next to this one (see below). The
// package example is the same wiring, compiled and run.
//
// # What mochi v2.7.9 gets wrong, and what the hook does about it
//
//   - mochi ORs OnConnectAuthenticate and OnACLCheck across hooks, so any
//     permissive hook overrides a denial. The hook decides CONNECT in
//     OnConnect (which mochi ANDs) and PUBLISH in OnPublish, so those
//     cannot be overridden. For subscriptions it revokes, in OnSubscribed,
//     any filter another hook granted against the Guard. Deliveries cannot
//     be protected that way: [NewHook] and [Hook.Verify] probe the server's
//     hooks and report [ErrForeignACL], and the hook logs an error when the
//     server starts with such a hook.
//   - OnConnectAuthenticate returning false always answers 0x86. The hook
//     answers a denied CONNECT itself in OnConnect, with the Guard's reason
//     code (0x85, 0x87, 0x8A, 0x97, 0x9F, ...) for v5 clients and
//     [mqttsec.ReasonCode.V3Connack] for MQTT 3.1.1 clients (0x02, 0x03,
//     0x04, 0x05), then stops mochi by returning the error.
//   - mochi asks OnACLCheck(cl, topic, false) for every delivery to every
//     subscriber, retained messages included: the hook runs
//     [mqttsec.Guard.Deliver], which takes no lock and allocates nothing.
//     mochi also asks OnACLCheck(cl, filter, false) for each SUBSCRIBE
//     filter; the hook answers those from the decisions OnSubscribe took.
//   - mochi takes "$SHARE/{group}/{filter}", in any case, as a shared
//     subscription to filter; MQTT (and the Guard) only "$share". The hook
//     refuses such filters with 0x8F, so that no filter is subscribed
//     without being authorized.
//   - mochi asks OnACLCheck(cl, topic, true) for every PUBLISH before
//     OnPublish. The hook decides once, in OnPublish, where it sees the whole
//     message (QoS, retain flag, payload size, the topic after alias
//     resolution); the write check only looks the session up.
//   - A wrapped packets.Code returned from OnPublish panics mochi, and a bare
//     Code is ignored (the message delivered) at QoS 0 and for v3 clients.
//     The hook returns only packets.ErrRejectPacket and answers the client
//     itself: a PUBACK (QoS 1) or PUBREC (QoS 2) with the Guard's code for
//     v5, a plain ack for v3 (or a disconnect, [WithV3DenyDisconnect]). A
//     denied message is neither delivered nor retained.
//   - Will messages skip the ACL, at CONNECT and when mochi sends them
//     (mochi #503): the will of a CONNECT is passed to
//     [mqttsec.Guard.Connect], which refuses the connection when it is not
//     allowed, and [Hook.OnWill] asks [mqttsec.Guard.Will] again when the
//     will is due, with the current policy and credentials. mochi lets no
//     hook drop a will: a denied one is replaced by an empty message on a
//     topic under [ReservedPrefix], which nobody may subscribe to.
//   - A delayed will (v5 will delay interval) is cancelled by mochi at the
//     next CONNECT with the same client ID, whoever sends it, and is sent
//     without any check. The hook sends delayed wills itself after the
//     check; the Guard keeps the client ID bound to the session's owner for
//     the delay, so only the owner's return cancels it.
//   - There is no read deadline before CONNECT: [Harden] and [IdleTimeout]
//     (and [HardenNet], [IdleNetListener] for a net.Listener) close sockets
//     that do not complete the TLS handshake and CONNECT in time (default
//     [DefaultConnectTimeout]).
//   - An MQTT v5 SUBSCRIBE whose last filter lacks its options byte makes
//     mochi's decoder index past the end of the packet; the panic ends the
//     broker process, so any client that can connect can stop the broker.
//     No hook runs before that decoder: [Harden] scans the inbound stream
//     and closes such a connection before mochi decodes the packet. Wrap
//     every listener with it.
//   - Without Capabilities.MaximumPacketSize, mochi allocates whatever size
//     a packet's header claims (up to 256 MB), before authentication. Set
//     it (mqtt.NewDefaultServerCapabilities, then MaximumPacketSize); the
//     hook cannot, since mochi reads the packet before any hook runs, so
//     [NewHook] refuses a server without it ([ErrUnboundedPackets]).
//   - Session takeover happens after authentication. The Guard's Registry
//     decides at CONNECT: a refused takeover is answered before mochi
//     touches the existing session, which stays connected. A kept (offline)
//     session belongs to its identity for as long as mochi keeps it: another
//     identity is refused (0x85) rather than allowed to take it over or to
//     discard it with a clean start; a session the Guard does not tell the
//     hook to resume ([mqttsec.Session.Resume]) is discarded before mochi
//     could let the new connection inherit it.
//   - mochi resends the messages queued for a kept session as soon as it is
//     resumed, before any hook sees the connection as established. The hook
//     re-authorizes the kept subscriptions (removing or downgrading them) and
//     drops the queued messages the resuming identity may no longer receive
//     at CONNECT, before mochi moves them over.
//   - mochi logs every refused CONNECT a second time (an empty message from
//     its listener) and dumps rejected PUBLISH packets, payload included, at
//     debug level. [Harden] keeps the listener quiet about refusals the Guard
//     reported; [Logger] filters the rest and redacts payloads.
//   - Messages the embedding program publishes through mochi's inline client
//     (Server.Publish) are the program's own and are not checked as
//     publishes; their deliveries are checked like any other.
//   - mochi assigns an ID to a client that sent none before OnConnect; the
//     Guard sees the assigned ID.
//
// Credentials that expire (a JWT exp, a certificate's notAfter) or are
// revoked ([mqttsec.Guard.Revalidate] after a password file, CRL or key set
// reload; [mqttsec.Guard.Kick]) are enforced by the hook as the Guard's
// [mqttsec.Disconnector]: the connection is closed with a DISCONNECT 0xA0,
// 0x87 or 0x98 (v5) or just closed (v3), and a kept session is discarded
// with its queued messages and delayed will. Credentials that expire while
// their CONNECT is still being processed get a refused CONNECT (0x86).
//
// # Sessions
//
// The hook keeps the [mqttsec.Session] of each connection in a sync.Map keyed
// by mochi's *Client: mochi v2.7.9's Client has no field for user data, and a
// sync.Map read of a stable key takes no lock and allocates nothing (about
// 10 ns). [mqttsec.Guard.Disconnect] runs exactly once per connection, in
// OnDisconnect, also for a connection that was taken over. When mochi keeps a
// session after its connection ends (v5 session expiry, v3 clean session 0),
// the hook keeps the identity that subscribed to authorize the messages
// mochi queues for it, as long as that identity's credentials are valid.
//
// # Concurrency
//
// A [Hook] is safe for concurrent use; mochi calls it from every client's
// goroutines at once. The hook starts no long-lived goroutine: a Disconnect
// runs in a short-lived goroutine so that the Guard's timer never blocks on
// a socket.
package mochi
