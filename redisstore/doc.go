// Package redisstore shares a broker's security state across a cluster of
// brokers through Redis (github.com/redis/go-redis/v9): who holds which
// client ID, and which sessions to end, and when the Casbin policy changed.
// Without it, each broker of a cluster decides alone, and an attacker
// refused by one simply connects to another.
//
// # Wiring
//
// Each broker process runs one [Node] on the cluster's Redis and attaches
// its Guard to it:
//
//	node, err := redisstore.New(rdb, redisstore.Config{Events: guard}) // rdb: a *redis.Client
//	defer node.Close()
//	reg := node.Registry(redisstore.RegistryConfig{})                  // TakeoverOwner, 30 s leases
//	authz, err := acl.NewCasbin(enforcer, acl.WithWatcher(node.Watcher()))
//	guard.Reload(mqttsec.Config{
//		Registry:   clientid.Bound(reg, binding),
//		Authorizer: authz,
//		...
//	})
//	node.Attach(guard)                                                 // kicks reach this broker
//
// # Client-ID registry
//
// [Registry] is the cluster-wide [mqttsec.Registry], with the takeover
// modes of [clientid.Registry]: by default only the identity holding an ID
// may take it, live or kept, on any broker. A claim is one Lua script; the
// connection's lease is refreshed by its node every LeaseTTL/3 and expires
// LeaseTTL after its node died. A takeover across brokers is published to
// the node holding the old session, which closes it with 0x8E (session
// taken over), or discards it, delayed will included, when it is kept.
//
// # Kicks
//
// [Node.Kick] ends the sessions of a client ID or a subject on every broker
// (an administrator's kick, a user removed). Every node receives kicks on
// one pub/sub channel and applies them to its Guard with
// [mqttsec.Guard.Kick].
//
// # Policy watcher
//
// [Watcher] is a Casbin watcher on pub/sub: a policy change made on one
// node makes every other node reload the policy from the shared adapter
// (about 2.5 ms on loopback with a 1,000-rule policy, BENCHMARKS.md).
//
// # Faults
//
// Redis down or slow (each operation is bounded by [Config.Timeout]):
//
//	registry claims     refused with 0x88 (server unavailable); RegistryConfig.InsecureFailOpen admits them and checks later
//	live connections    kept; their leases are refreshed again when Redis is back
//	releases            retried until Redis is back (a kept session's binding is written then)
//	kicks, policy       Kick and the watcher return an error; the watcher publishes the change when Redis is back
//	subscription        reconnected with back-off; then the watchers reload and the registry re-checks its leases
//
// Every failure is reported to [Config.Events] as an [mqttsec.EventError]
// with Source "redis" (the first of an outage at once, then at most every
// [Config.ReportInterval]), and the recovery as an [mqttsec.EventWarning].
// Nothing panics, and [Node.Close] stops every goroutine. When Redis comes
// back empty (restarted without persistence), each node writes back the
// bindings it holds, live and kept.
//
// Redis pub/sub keeps no message: a node whose subscription was broken
// misses what was published meanwhile. After it resubscribes it catches up
// with what is state (the policy is reloaded, leases and kept sessions are
// checked against Redis, which ends sessions taken over elsewhere), but a
// [Node.Kick] it missed is lost: make lasting refusals state (a ban, a
// removed credential), not only kicks.
//
// # Keys
//
// Every key and channel starts with [Config.Prefix] ("mqttsec:"):
//
//	<prefix>cid:<client ID>   hash   a client ID's binding; expires with its last lease or kept session (at most MaxKeep)
//	<prefix>kick              channel  kicks and takeovers
//	<prefix>policy            channel  policy changes
//
// No key is written without a TTL.
//
// # Security
//
// Whoever can write to the cluster's Redis can end any session and bind any
// client ID: protect it as the brokers' own state (AUTH with an ACL user
// limited to the prefix, TLS, a private network). Messages read from Redis
// are parsed defensively (bounded, malformed ones ignored and reported).
//
// # Concurrency
//
// [Node], [Registry] and [Watcher] are safe for concurrent use. A Node
// starts its goroutines in [New], [Node.Registry] and [Node.Watcher], and
// stops them all in [Node.Close].
package redisstore
