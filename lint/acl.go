package lint

import (
	"bytes"
	"strings"

	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/topic"
)

// aclContext is what the configuration that references an ACL says about
// it.
type aclContext struct {
	// fromConf is true for an acl_file referenced by a mosquitto.conf.
	fromConf bool
	// clientIDBound is true when the configuration binds client IDs to
	// users (use_username_as_clientid true), so %c is as safe as %u.
	clientIDBound bool
}

// mosquittoACL lints a Mosquitto acl_file, parsed by acl.ParseMosquitto.
func (l *linter) mosquittoACL(path string, data []byte, c aclContext) error {
	rules, err := acl.ParseMosquitto(bytes.NewReader(data))
	if err != nil {
		return err
	}
	l.aclRules(path, rules, nil, c)
	return nil
}

// casbinPolicy lints a Casbin policy for acl.Model.
func (l *linter) casbinPolicy(path string, data []byte) error {
	rules, groups, err := acl.ParsePolicy(bytes.NewReader(data))
	if err != nil {
		return err
	}
	l.aclRules(path, rules, groups, aclContext{})
	return nil
}

// aclRules reports what needs the rules' context (the anonymous section,
// the configuration's client-ID binding), then maps every finding of
// acl.Lint.
func (l *linter) aclRules(path string, rules []acl.Rule, groups [][2]string, c aclContext) {
	for _, r := range rules {
		if r.Sub == acl.Anonymous && !r.Pattern && r.Eft == acl.EftAllow && topic.Covers(r.Topic, "+/#") {
			l.add("anonymous-wildcard-acl", path, r.Line, "%s in the anonymous section (%s)", r.Topic, r.String())
		}
		if c.fromConf && !c.clientIDBound && r.Pattern && r.Eft == acl.EftAllow && strings.Contains(r.Topic, "%c") {
			l.add("clientid-pattern-unbound", path, r.Line, "pattern %s %q without use_username_as_clientid true: any user picks the client ID that %%c expands to", r.Act, r.Topic)
		}
	}
	for _, f := range acl.Lint(rules, groups) {
		l.add(aclFindingID(f), path, f.Line, "%s: %s", f.Message, f.Rule)
	}
}

// aclFindingID maps a finding of acl.Lint to a lint rule. acl.Finding
// carries no ID today, so its kind is read from its message; findings this
// does not know (new kinds added to acl.Lint) pass through as
// "acl-finding" with their message as evidence, and get their own rule
// here once acl.Finding names them.
func aclFindingID(f acl.Finding) string {
	m := f.Message
	switch {
	case strings.HasPrefix(m, "shadowed by"), strings.HasPrefix(m, "overridden by"):
		return "acl-shadowed"
	case strings.HasPrefix(m, "pattern without"):
		return "pattern-without-placeholder"
	case strings.Contains(m, "never matches"), strings.Contains(m, "not a valid filter"):
		return "acl-invalid-rule"
	}
	return "acl-finding"
}
