// Package topic validates, matches and compares MQTT topic names and topic
// filters, following the wildcard rules of MQTT 3.1.1 and 5.0 (section 4.7).
//
// A topic name is what a PUBLISH carries: 1 to 65535 bytes of valid UTF-8,
// no U+0000 and no wildcard characters. A topic filter is what a SUBSCRIBE
// carries: the same byte rules, where '+' fills exactly one whole level and
// '#' is the whole last level. A shared subscription "$share/{group}/{filter}"
// is a valid filter when the group is a non-empty level without wildcards and
// the filter after it is valid; [Match] and the outer filter of [Covers]
// compare the filter after the group.
//
// Only filters are unshared, never names: "$share/g/x" as a topic name (a
// PUBLISH, a delivery) is a topic that starts with '$', and "#" does not
// match it. The inner argument of [Covers] is taken literally (validated
// by [ValidateLiteral]), so an authorizer handed the filter of a SUBSCRIBE
// removes its $share prefix first ([Unshare]) and cannot mistake a name for
// a subscription.
//
// # Matching and containment
//
// [Match] reports whether a filter matches a name. [Covers] reports whether
// one filter matches every name another filter matches; it is how a
// subscription is authorized safely: an allow rule for "a/b/#" must not pass
// a SUBSCRIBE to "a/#". A filter whose first level is a wildcard never matches
// a name that starts with '$' ([MQTT-4.7.2-1]).
//
// Match, Covers, ValidateName, ValidateFilter and ValidateLiteral allocate
// nothing; invalid input never matches.
//
// # Placeholders
//
// [Expand] substitutes the username and client ID into a rule filter
// (%u, %c, ${username}, ${clientid}). A value that is empty, not valid
// UTF-8, or contains '+', '#' or '/' cannot be substituted: the rule does not
// apply instead of being widened.
//
// All functions are safe for concurrent use.
package topic
