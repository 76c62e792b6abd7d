// Package ratelimit defends an MQTT broker against floods, password
// guessing, flapping clients and login storms, in bounded memory, as parts
// of an [mqttsec.Guard].
//
// # Parts
//
//   - [Limiter] is the Guard's [mqttsec.Limiter]: ban checks, failed-login
//     throttling per address and per user name, CONNECT rates per address
//     and overall, connection caps per address and per user, message, byte
//     and subscription rates per connection, disconnection of flooders
//     (0x96) and bans of flapping client IDs.
//   - [Gate] wraps the Guard's [mqttsec.Authenticator]: it bounds the
//     concurrent password verifications and serves waiting addresses in
//     turn, so a storm of logins neither takes the CPU from connected
//     clients nor keeps a real user out.
//   - [Bans] is the ban list, by client ID, subject, address or CIDR
//     prefix, with expiry: [Bans.Add], [Bans.Remove] and [Bans.List] are
//     the administrator's API, a [BanStore] ([BanFile]) persists it, and a
//     ban ends the sessions it covers through [Bans.Attach].
//   - [Store] keeps rate state per key; [MemoryStore] is the in-memory one
//     (16 bytes per active key, a fixed bound on keys, idle keys reused
//     without a sweeper), and a distributed store implements the same
//     interface.
//
// # Wiring
//
//	lim, err := ratelimit.New(ratelimit.Config{})    // secure defaults
//	g := mqttsec.New(mqttsec.Config{
//		Authenticator: ratelimit.NewGate(passwords, ratelimit.GateConfig{}),
//		Authorizer:    policy,
//		Limiter:       lim,
//	})
//	lim.Bans().Attach(g)                              // a ban disconnects
//
// # Reason codes
//
// A CONNECT is refused with 0x8A (banned) when a ban covers it, 0x9F
// (connection rate exceeded) when its address or user name is slowed for
// failed logins or a CONNECT rate is exceeded, 0x89 (server busy) when the
// Gate has no verification slot for it, and 0x97 (quota exceeded) over a
// connection cap; an MQTT 3.1.1 client gets 0x03 (server unavailable) or
// 0x05 (not authorized), see [mqttsec.ReasonCode.V3Connack].
//
// A PUBLISH over its connection's rates is refused with 0x96 (messages) or
// 0x97 (bytes) and never delivered: the adapter answers a v5 QoS 1 or 2
// PUBLISH with a PUBACK or PUBREC carrying 0x97 (a PUBACK cannot carry
// 0x96, see [mqttsec.ReasonCode.ForPuback]) and drops a QoS 0 or MQTT 3.1.1
// PUBLISH. A client that keeps sending more than its [Config.Flood] allows
// is disconnected with 0x96, at any QoS and protocol version. An
// administrator's ban ends a connected client's session through
// [mqttsec.Guard.Kick] with 0x8A; 0x8A is not a DISCONNECT reason code, so
// a v5 client receives a DISCONNECT with 0x98 (administrative action), as
// [mqttsec.ReasonCode.ForDisconnect] maps it, and its will is not sent.
//
// # Memory
//
// Rate state lives in Stores bounded by [MemoryConfig.MaxKeys] (16 MiB for
// the default 2^20 keys, per store); automatic bans are bounded by
// [BansConfig.MaxAutomatic]; per-connection state lives and dies with its
// connection. Nothing grows with what an attacker sends.
//
// # Concurrency
//
// Every type of this package is safe for concurrent use. No type starts a
// goroutine.
package ratelimit
