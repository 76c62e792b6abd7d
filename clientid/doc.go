// Package clientid polices MQTT client identifiers: what an ID may look
// like, which identity may use which ID, who may take over a live or kept
// session, and how to make IDs nobody can guess.
//
// MQTT lets a CONNECT with an ID already in use close the connection that
// holds it and inherit its session (subscriptions, queued messages, the
// pending will). Brokers that implement this after authentication alone
// let one authenticated user take over another device's session. This
// package is the configurable defence; it plugs into a [mqttsec.Guard]:
//
//	policy, err := clientid.NewPolicy()                           // what an ID may look like
//	binding, err := clientid.NewBinding("{username}-*", "{cn}")   // which identity may use it
//	guard := mqttsec.New(mqttsec.Config{
//		ClientIDs: policy,
//		Registry:  clientid.Bound(clientid.NewRegistry(), binding), // who may take it over
//		...
//	})
//
// # Validation
//
// [Policy] is a [mqttsec.ClientIDPolicy], run before authentication:
// length bounds (1..128 bytes by default), a conservative character set
// or a pattern of your own, and refusals no pattern can lift: '/', '+',
// '#' and a leading '$' (which would let a topic rule using %c reach
// another client's topics, wildcards or $SYS), control and format
// characters. A refused ID is answered with 0x85 "client identifier not
// valid" (0x02 for MQTT 3.1.1).
//
// # Binding
//
// [Binding] ties IDs to identities with templates: "{username}-*" lets
// alice use "alice-phone" and not "bob-phone"; "{cn}" lets a device use
// exactly the common name of its verified certificate; "{san:dns}",
// "{san:uri}" and the other SAN placeholders use its subject alternative
// names; "{attr:client_id}" uses a fact the authenticator vouches for. A
// binding needs the identity, so it is checked after authentication, when
// the registry is asked: [Bound] puts a binding in front of a registry. An
// ID outside the binding is refused with 0x85, whoever holds it.
//
// # Registry and takeover
//
// [Registry] is a [mqttsec.Registry]: it binds each ID to the identity that
// holds it, live or for as long as the broker keeps its session, and
// applies a [Takeover] mode to a second CONNECT with the same ID:
//
//	TakeoverOwner (default)  only the same identity may take over a live session or resume a kept one; others get 0x85
//	TakeoverDeny             no second connection while one is live, whoever it is; kept sessions as owner
//	InsecureTakeoverAllow    MQTT's rule: anyone may take over; another identity gets a fresh session, never the old one
//
// It is sharded, bounds its memory, takes its clock as an option, and
// costs 51 to 72 bytes per bound ID beyond the ID string, 48 more while a
// connection holds it (BENCHMARKS.md).
//
// # Generation
//
// [Generate] returns an ID of a prefix and 128 random bits, for devices
// and for IDs a broker assigns to clients that sent none.
//
// # Concurrency
//
// A [Policy], a [Template], a [Binding] and a [Registry] are safe for
// concurrent use. Options must not be changed after construction.
package clientid
