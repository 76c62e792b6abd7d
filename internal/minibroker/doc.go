// Package minibroker is a small MQTT broker (MQTT 5.0, 3.1.1 and 3.1)
// whose every security decision is made by a [mqttsec.Guard]. It is the
// second adapter of this module: it needs nothing from the mochi package
// and exists to prove, and to test, that the root API is enough for any
// broker. It is not a product.
//
// # What it implements
//
// QoS 0 and 1 both ways; QoS 2 from clients (acknowledged with
// PUBREC/PUBCOMP, delivered once), with every subscription granted at most
// QoS 1. Retained messages, persistent sessions with a session expiry and
// an offline queue, will messages with the v5 will delay, shared
// subscriptions ("$share/group/filter", one member per message), No Local,
// Retain As Published, Retain Handling, message expiry, keep alive.
// Enhanced authentication (AUTH), topic aliases and subscription
// identifiers are refused with their reason codes.
//
// # How it uses the Guard
//
//	CONNECT      Guard.Connect -> CONNACK with ReasonCode.ForConnack (v5) or V3Connack;
//	             the session is registered with the Disconnector, then refused if Session.Err is set;
//	             a kept session is resumed only when Session.Resume says so, else discarded
//	PUBLISH      Guard.Publish -> PUBACK/PUBREC with ForPuback, or DISCONNECT when Disconnects;
//	             MQTT 3: acknowledged and dropped (the ack cannot carry a reason), or closed
//	SUBSCRIBE    Guard.Subscribe per filter -> SUBACK with the granted QoS, ForSuback or V3Suback
//	delivery     Guard.Deliver when a message is queued for a session and again just before it
//	             is sent (retained, offline-queued and resumed messages included)
//	will         Guard.Will when the will is due (after the will delay for a delayed will)
//	end          Guard.Disconnect(s, keep): keep is the session expiry (plus a second, so that
//	             the broker, not the Guard's timer, ends it), 0 for a clean session
//	Disconnector DISCONNECT with ReasonCode.ForDisconnect (v5) or a closed socket (v3);
//	             a kept session is discarded with its subscriptions, queue and delayed will
//
// A denied message is never delivered nor retained; a denied will is
// neither published nor retained. Every reason code goes through
// [ValidCode] before it is sent: a code its packet may not carry is
// replaced by 0x80 and counted in [Stats].InvalidCodes.
//
// # Bounds
//
// Every resource a client can make the broker hold is bounded by
// [Options]: the packet size (checked before the body is read), the time
// to send CONNECT, the keep alive, connections, sessions, subscriptions per
// session, queued and in-flight messages per session, retained messages,
// and how long a session is kept. [Broker.Close] stops every goroutine of
// the broker before it returns.
//
// # Concurrency
//
// A [Broker] is safe for concurrent use. Each connection has a reader and
// a writer goroutine; the broker's state is guarded by one mutex, which is
// never held while the Guard is called.
package minibroker
