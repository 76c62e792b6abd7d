// Package mqttsec is a library of composable MQTT security middleware.
//
// The root package holds the shared vocabulary — [Client], [Identity],
// [Access], [ReasonError] and its sentinels — the small interfaces the other
// packages implement ([Authenticator], [Authorizer], [ClientIDPolicy],
// [Registry], [Limiter], [EventSink]) and [Guard], which composes them into
// the decisions a broker makes:
//
//	CONNECT    Guard.Connect    limits, client-ID policy, authentication, expiry, will message, client-ID registry
//	PUBLISH    Guard.Publish    topic-name validation, size, rate, authorization (publish)
//	SUBSCRIBE  Guard.Subscribe  filter validation, rate, authorization (subscribe, with the granted QoS)
//	delivery   Guard.Deliver    authorization (receive), once per message per subscriber
//	will       Guard.Will       authorization (publish) again when the will is due
//	connection Guard.Disconnect client-ID release, kept for as long as the broker keeps the session
//
// [Guard] documents which packet answers each decision and how to map its
// reason code for that packet ([ReasonCode.ForConnack], ...).
//
// Rights are checked over time, not only at the door: credentials that
// expire end their sessions; [Guard.Revalidate] ends the sessions whose
// credentials were withdrawn (the Guard runs it after a credential reload
// reaches it as an [EventSink]); [Guard.Kick] ends sessions on demand; a
// policy change applies to the next check of every live session, including
// messages queued for kept sessions and wills.
//
// Deny wins: every step can only refuse. A Guard without an Authenticator
// denies every CONNECT; without an Authorizer it denies every publish,
// subscribe and delivery. Every denial wraps a sentinel that carries its MQTT
// v5 reason code; [CodeOf] extracts it and [ReasonCode.V3Connack] maps it for
// MQTT 3.1.1 clients.
//
// # Packages
//
//   - topic: topic and filter validation, matching, containment, placeholders.
//   - auth: password files, JWT and X.509 authenticators, chains.
//   - acl: Casbin-backed topic authorization at index speed.
//   - tlsconf: secure TLS configuration, mTLS, hot reload, pinning.
//   - mochi: the adapter that plugs a Guard into a mochi-mqtt v2 broker.
//
// # Example
//
//	g := mqttsec.New(mqttsec.Config{
//		Authenticator: passwords,   // an *auth.Passwords, an auth.Chain, ...
//		Authorizer:    policy,      // an *acl.Casbin
//		Logger:        slog.Default(),
//	})
//	hook, err := mochi.NewHook(g, server)
//
// The Examples of [Guard] show what an adapter for another broker does with
// each answer; the mochi package is the adapter for mochi-mqtt v2.
//
// # Concurrency
//
// A Guard and a Session are safe for concurrent use. [Guard.Reload] swaps
// all parts atomically; per-connection state is re-bound on its next check.
// The zero Guard denies every CONNECT.
package mqttsec
