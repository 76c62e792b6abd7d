// Package acl authorizes MQTT publishes, subscriptions and deliveries with a
// Casbin policy, exactly as Casbin decides it, at the speed of an index.
//
// # Model
//
// [Model] is the Casbin model: requests (user, client, topic, act), policy
// lines (sub, topic, act, eft), roles through g (transitive), the subject
// "*" for everyone, and deny rules that override allows:
//
//	p, alice, sensors/%c/#, write, allow
//	p, *, public/#, read, allow
//	p, operators, plant/+/alarm, readwrite, deny
//	g, alice, operators
//
// mqttAct(r, p) is true when p equals r or p is "readwrite".
// mqttMatch(topic, filter, user, client) expands %u and %c in the policy
// filter and reports whether the result covers the request topic
// (topic.Covers): a topic name for publishes and deliveries, a topic filter
// for subscriptions, so that an allow rule for "a/b/#" does not pass a
// subscription to "a/#". A username or client ID that is empty, not UTF-8,
// or contains '+', '#' or '/' makes the rules that use it not apply, and so
// does one starting with '$' where it would begin the filter: "%c/#" never
// reaches $SYS (Mosquitto's patterns differ here).
//
// The request topic is taken literally: a [mqttsec.Guard] removes the
// $share/{group}/ prefix of a SUBSCRIBE filter before it asks, and a topic
// name such as "$share/g/x" (a PUBLISH to it) is a topic starting with '$',
// which "#" does not reach. A policy filter the policy writes as
// "$share/{group}/f" covers what f covers; a placeholder value never makes a
// filter shared ("$%c/g/%u" does not apply to a client named "share").
//
// A g line names two subjects without commas. Casbin keys lines by their
// fields joined with commas and links only the first two names of a longer
// line, so after such a line is added or removed its role links can
// disagree with its own g lines; the index then denies every request until
// a LoadPolicy rebuilds Casbin's role links from clean g lines.
//
// # Roles
//
// A user's roles are the names its g lines reach, transitively and at
// most ten links deep, as Casbin's default role manager follows them. Roles
// the credential carries ([mqttsec.Identity.Roles]: a JWT "roles" claim,
// auth.Anonymous(roles...)) count as g lines (user, role) of that
// connection only: [Casbin.Bind], [Casbin.Authorize] and
// [Casbin.AuthorizeMessage] decide as Enforce would on the policy with
// those lines added, so a token with roles ["operators"] gets the rules of
// operators and of every role operators reaches through the policy's g
// lines. [Casbin.AllowedRoles] and [Casbin.ExplainRoles] ask the same
// question without a client.
//
// # Subjects
//
// A subject may not be a role name or "*". The subject of a request is the
// user name after authentication (a [mqttsec.Guard] sets it to
// [mqttsec.Identity.Subject]: a password user, a JWT "sub", a certificate
// name). When it is "*" or the name of a role — a name that is the role of
// a g line, or one declared with [WithRoles] for roles only credentials
// carry — every request of that subject is denied, whatever the policy and
// the credential's grants say.
//
// Raw Casbin differs here: Enforce("operators", ...) applies the rules of
// the role operators (Casbin's g(user, role) is true for equal names), and
// Enforce("*", ...) applies every rule for "*". A token whose "sub" is
// "operators", or a certificate whose name is "*", would inherit rights it
// was never given. Apart from this rule and the malformed g lines above,
// which both only deny more, the index decides exactly as Enforce.
//
// # Index
//
// [NewCasbin] compiles the policy into one topic-level trie per subject and
// role, held in an immutable snapshot behind an atomic pointer. A check
// walks only the tries of the user, its roles and "*", takes no lock and
// allocates nothing; its decision equals e.Enforce(user, client, topic, act)
// for every request, with the exceptions under Subjects (a differential
// test, a fuzz target and a brute-force test of one-rule tries against
// [topic.Covers] compare them).
// Policy changes made through the enforcer (AddPolicy, RemovePolicy,
// AddGroupingPolicy, UpdatePolicy, LoadPolicy, a watcher's reload) are seen
// through a watcher and an adapter wrapper NewCasbin installs. A one-rule
// change copies only the path of that rule (and one shard of the subject
// table); a role-link change recomputes the roles of the names that reach
// it; batch calls (AddPolicies, RemovePolicies, RemoveFilteredPolicy),
// loads, and a change Casbin may have applied to another line than the one
// it reports (a field with a comma, a removal the index cannot find)
// recompile the whole index, or its policy lines, beside the old one. [Casbin.Bind] resolves a
// client's roles once at CONNECT; the bound authorizer notices a new policy
// generation on its next check. There is no decision cache, so no decision
// can be stale.
//
// # Other sources of rules
//
//   - [ParseMosquitto] and [MosquittoAdapter] read a Mosquitto acl_file into
//     the model (topic, pattern, user sections; the top section is for
//     anonymous clients).
//   - Grants on the identity (a JWT "acl" claim, [mqttsec.Grant]) narrow the
//     policy by default and can widen it with [WithGrants]; their QoS lists
//     limit publishes and the QoS a subscription is granted
//     ([Casbin.AuthorizeSubscription]).
//   - [WildcardPolicy] refuses broad wildcard subscriptions and $SYS.
//   - [WatchFile] reloads a policy file on change without a failed check
//     during the swap, and reports every reload, failed ones included, to
//     an [mqttsec.EventSink] ([WithEvents]; give it the Guard).
//   - [Lint] reports broad wildcard grants, anonymous wildcards, %c rules
//     that need client-ID binding, and rules that never change a decision,
//     each with a stable ID (the Finding... constants) and its line.
//
// # Concurrency
//
// [Casbin], the authorizers it binds, [WildcardPolicy] (once configured)
// and [FileWatcher] are safe for concurrent use. The enforcer itself is
// not, unless it is a casbin.SyncedEnforcer: change the policy from one
// goroutine or use a SyncedEnforcer.
package acl
