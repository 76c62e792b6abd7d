package acl

import (
	"strings"

	"github.com/casbin/casbin/v2/model"
	"github.com/mqttsec/mqttsec/topic"
)

// Model is the Casbin model this package implements. A request is
// (user, client, topic, act) with act "read" or "write"; a policy line is
// (sub, topic, act, eft) with act "read", "write" or "readwrite" and eft
// "allow" or "deny"; g lines give users roles (transitively). A deny that
// matches overrides every allow.
const Model = `[request_definition]
r = user, client, topic, act
[policy_definition]
p = sub, topic, act, eft
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = (p.sub == "*" || g(r.user, p.sub)) && mqttAct(r.act, p.act) && mqttMatch(r.topic, p.topic, r.user, r.client)
`

// The act values of requests and policy lines.
const (
	ActRead      = "read"
	ActWrite     = "write"
	ActReadWrite = "readwrite"
)

// The eft values of policy lines.
const (
	EftAllow = "allow"
	EftDeny  = "deny"
)

// Everyone is the subject of a policy line that applies to every user.
const Everyone = "*"

// NewModel returns a fresh Casbin model built from [Model].
func NewModel() model.Model {
	m, err := model.NewModelFromString(Model)
	if err != nil {
		panic("acl: Model does not parse: " + err.Error())
	}
	return m
}

// MQTTAct is the Casbin function mqttAct(requestAct, policyAct): true when
// they are equal or the policy act is "readwrite".
func MQTTAct(requestAct, policyAct string) bool {
	return policyAct == requestAct || policyAct == ActReadWrite
}

// MQTTMatch is the Casbin function mqttMatch(topic, filter, user, client):
// it expands %u/%c (and ${username}/${clientid}) in the policy filter with
// user and client and reports whether the expansion covers topic (a topic
// name, or a subscription filter without its $share prefix; see
// [topic.Covers], which takes topic literally). A placeholder whose value is
// not a [topic.SafeLevel] (empty, not UTF-8, containing '+', '#' or '/')
// makes the rule not apply, and so does a value starting with '$' that would
// begin the filter, and an expansion that is a shared subscription
// ("$share/...") when the policy filter does not start with "$share/".
func MQTTMatch(requestTopic, filter, user, client string) bool {
	exp, ok := expand(filter, user, client)
	if !ok {
		return false
	}
	return topic.Covers(exp, requestTopic)
}

// expand is topic.Expand, except that a placeholder value may not change
// what kind of filter the rule is:
//
//   - a value starting with '$' may not begin the filter (after a
//     $share/{group}/ prefix the policy wrote): "%c/#" must not become
//     "$SYS/#" for a client that names itself "$SYS". Topics starting with
//     '$' are the server's; only a policy that writes the '$' reaches them.
//   - a value may not make the rule a shared subscription: "$%c/g/%u" for
//     client "share" would be "$share/g/<user>", which covers what "<user>"
//     covers (and "$SYS" for a user named so). Only a filter the policy
//     writes as "$share/..." is shared.
func expand(filter, user, client string) (string, bool) {
	if dollarLead(filter, user, client) {
		return "", false
	}
	exp, ok := topic.Expand(filter, user, client)
	if !ok || strings.HasPrefix(exp, sharePrefix) != strings.HasPrefix(filter, sharePrefix) {
		return "", false
	}
	return exp, true
}

const sharePrefix = "$share/"

// dollarLead reports whether the first level of filter (after any $share
// prefix) starts with a placeholder whose value starts with '$'.
func dollarLead(filter, user, client string) bool {
	if inner, ok := topic.Unshare(filter); ok {
		filter = inner
	}
	var v string
	switch {
	case strings.HasPrefix(filter, "%u"), strings.HasPrefix(filter, "${username}"):
		v = user
	case strings.HasPrefix(filter, "%c"), strings.HasPrefix(filter, "${clientid}"):
		v = client
	}
	return v != "" && v[0] == '$'
}

func stringArgs(args []any, n int) ([]string, bool) {
	if len(args) != n {
		return nil, false
	}
	out := make([]string, n)
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, false
		}
		out[i] = s
	}
	return out, true
}

func mqttActFunc(args ...any) (any, error) {
	s, ok := stringArgs(args, 2)
	if !ok {
		return false, nil
	}
	return MQTTAct(s[0], s[1]), nil
}

func mqttMatchFunc(args ...any) (any, error) {
	s, ok := stringArgs(args, 4)
	if !ok {
		return false, nil
	}
	return MQTTMatch(s[0], s[1], s[2], s[3]), nil
}

// checkModel reports whether m is [Model] (after Casbin's normalization).
func checkModel(m model.Model) error {
	want := NewModel()
	for _, k := range [...][2]string{{"r", "r"}, {"p", "p"}, {"g", "g"}, {"e", "e"}, {"m", "m"}} {
		w, ok1 := want[k[0]][k[1]]
		g, ok2 := m[k[0]][k[1]]
		if !ok1 || !ok2 {
			return errorf(ErrModel, "section %s missing", k[0])
		}
		if norm(w.Value) != norm(g.Value) {
			return errorf(ErrModel, "%s = %q, want %q", k[0], g.Value, w.Value)
		}
	}
	for sec, am := range m {
		for ptype := range am {
			if _, ok := want[sec][ptype]; !ok && (sec == "p" || sec == "g" || sec == "r" || sec == "m" || sec == "e") {
				return errorf(ErrModel, "unexpected %s in section %s", ptype, sec)
			}
		}
	}
	return nil
}

func norm(s string) string { return strings.Join(strings.Fields(s), "") }
