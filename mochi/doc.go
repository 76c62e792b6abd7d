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
//	if err := s.Serve(); err != nil { // starts the listeners and returns
//		return err
//	}
//	<-ctx.Done()
//	return s.Close()
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
//   - mochi copies each message once per subscriber and queues the copies
//     (8,192 per client by default) without a bound in bytes, keeps QoS 1
//     and 2 messages for offline sessions, and accepts any number of
//     subscriptions: see Memory bounds below.
//   - mochi writes to a client while holding the client's lock, and takes
//     the same lock to give a QoS 1 or 2 message for it a packet
//     identifier: one subscriber that stops reading stalls every publisher
//     of its topics until its keep-alive runs out, forever with a keep-alive
//     of zero. [Harden] bounds every write ([HardenConfig.WriteTimeout]) and
//     the hook disconnects such a subscriber as soon as a QoS 1 or 2 message
//     waits for it ([Limits.WriteStall]).
//   - mochi decodes topics, filters, client IDs, user names, passwords and
//     properties as views of the packet's buffer, and keeps them: a
//     retained or queued copy of a message keeps the whole original packet,
//     a subscription the whole SUBSCRIBE, a session its CONNECT with the
//     password. The hook gives mochi copies of what it keeps and clears the
//     password once the Guard has decided.
//   - A client that announces a receive maximum stops getting QoS 1 and 2
//     messages once that many were held back: mochi sends a held-back
//     message, deletes it from the client's inflight messages and ignores
//     its PUBACK, which never gives the quota back. The hook gives it back.
//   - mochi accepts 65,535 inbound topic aliases per client (each keeps a
//     topic) although it announces none, and allocates each connection's
//     outbound queue (8 bytes a slot, 8,192 slots) at accept, before
//     CONNECT. [NewHook] lowers both ([Limits.TopicAliases],
//     [Limits.WritesPending]).
//   - mochi answers MQTT 3.1.1 CONNECTs its own checks refuse with MQTT 5
//     codes (0x80 for an empty client ID without clean session, 0x82 for an
//     empty password with its flag set), accepts a QoS 1 PUBLISH with a
//     PUBACK of 0x01 (a SUBACK code), copies every property of a PUBLISH
//     into its acknowledgement, and strips the user properties of every
//     PUBLISH to a client that asked for no problem information (paho asks
//     whenever its CONNECT carries a property). [Hook.OnPacketEncode]
//     corrects each before the packet is encoded.
//   - mochi lets a client take over a live connection's session when the
//     registry allows it (MQTT's own rule) and hands it its subscriptions;
//     the hook empties a session the Guard does not tell it to resume
//     ([Hook.OnSessionEstablish]) and the CONNACK says no session.
//   - mochi closes a connection it ends at once, with the client's unread
//     data in the socket: the reset that follows makes the client's system
//     discard the DISCONNECT that says why. [Harden] shuts the sending side
//     and drains first.
//   - mochi's assigned client IDs are built from a timestamp and a counter:
//     someone who predicts the next one can take it first, and the client it
//     is assigned to is refused. [WithAssignClientID] replaces them.
//   - mochi drops QoS 1 and 2 messages for a client beyond its inflight
//     maximum (1,024 by default): a backlog longer than that (a bridge
//     during a long outage) is lost inside mochi. Raise
//     Capabilities.MaximumInflight with the clients' needs, within the
//     memory bounds below.
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
// # Memory bounds
//
// A hostile-load run against mochi v2.7.9 with its defaults drove the
// process from 13 MB to 560–790 MB with four cheap attacks. The same
// attacks, with every bound lifted and with the defaults ([Limits],
// [mqttsec.Quotas], [HardenConfig]), measured as the growth of the Go heap
// after garbage collection (MQTTSEC_MEASURE=1 go test -run Measure -v
// ./mochi):
//
//	attack                                                   unbounded   defaults
//	slow consumers: 40 connections of one user that never     553 MB      45 MB
//	  read, 64 messages of 250 kB
//	offline queues: 40 kept sessions of one user,             656 MB      35 MB
//	  64 QoS 1 messages of 250 kB
//	retained flood: one user, 1,400 messages of 250 kB        358 MB       9 MB
//	pre-authentication: 1,000 sockets claiming a 383 kB       400 MB     0.4 MB
//	  CONNECT, never sent
//
// The retained flood cost 785 MB in the hostile-load run: each retained
// copy also kept its whole original packet, which the hook now prevents.
// From 40 users instead of one, the slow consumers hold 293 MB: the
// broker-wide Outbound budget (256 MiB) and the writes in progress.
//
// What the process can be made to hold, with serve's defaults (maximum
// packet 384 KiB, 10,000 clients, kept sessions for 24 h):
//
//   - Before authentication, per listener: MaxPending × (MaxConnectSize +
//     about 56 KiB of connection and TLS state), 120 MiB, for at most twice
//     ConnectTimeout (measured: 80 KiB per pending connection with a 60 kB
//     password). A CONNECT within MaxConnectSize but made of user
//     properties, which mochi decodes to 16 times its size, is refused before
//     authentication ([Limits.PropertyBytes]).
//   - Per authenticated connection: the one packet being written (2 × 384
//     KiB, for at most WriteTimeout), its subscriptions
//     ([Limits.SubscriptionBytes], 1 MiB), inbound topic aliases
//     ([Limits.TopicAliases] × [Limits.TopicLength], 10 KiB), its will (at
//     most MaxConnectSize, 64 KiB) and 16 KiB of state (measured for an
//     idle connection): about 1.9 MiB.
//   - Packets being read: mochi allocates a packet's whole claimed size
//     when its header is in (and holds it twice while it arrives). Packets
//     of 16 KiB or more take their size from the listener's
//     [HardenConfig.InboundBudget] (64 MiB, so at most 128 MiB held) and
//     wait, unread, while it is spent; a packet must arrive within
//     [HardenConfig.PacketTimeout] (1 minute). Smaller packets: 2 × 16 KiB
//     per connection at most.
//   - Per kept session: its subscriptions, will and state, about 1.1 MiB
//     (measured: 143 KB with 100 one-level subscriptions);
//     at most [mqttsec.Quotas] SessionsPerSubject (100) per user and
//     Sessions (10,000) in all.
//   - Messages held for clients and kept sessions (outbound queues,
//     unacknowledged QoS 1/2, offline queues): [Limits.SubjectBacklog] per
//     user (32 MiB), [Limits.Outbound] in all (256 MiB).
//   - Retained messages, with their topic tree: RetainedBytesPerSubject per
//     user (8 MiB), RetainedBytes in all (128 MiB).
//
// So one user with n connections holds at most n × 1.9 MiB + 110 MiB (kept
// sessions) + 32 MiB + 8 MiB, plus its share of the listeners' inbound
// budgets; everyone together at most 10,000 × 1.9 MiB (clients) + 10,000
// × 1.1 MiB (kept sessions) + 256 MiB + 128 MiB + 128 MiB per listener.
// The per-connection term dominates: lower the packet size and the number
// of clients (or the connections per user, with a connection limit) to
// lower it. A message in the books counts its payload, topic, correlation data
// and user properties plus 1.6 KiB for mochi's copies; concurrent
// publishers may overshoot a budget by one message each.
//
// # Concurrency
//
// A [Hook] is safe for concurrent use; mochi calls it from every client's
// goroutines at once. The hook starts no long-lived goroutine: a Disconnect
// runs in a short-lived goroutine so that the Guard's timer never blocks on
// a socket.
package mochi
