package lint

import (
	"bytes"
	"strings"

	"github.com/mqttsec/mqttsec/acl"
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
// acl.Lint to a rule of this package.
func (l *linter) aclRules(path string, rules []acl.Rule, groups [][2]string, c aclContext) {
	bound := c.clientIDBound || l.opt.ClientIDBound
	for _, r := range rules {
		if c.fromConf && !bound && r.Pattern && r.Eft == acl.EftAllow && strings.Contains(r.Topic, "%c") {
			l.add("clientid-pattern-unbound", path, r.Line, "pattern %s %q without use_username_as_clientid true: any user picks the client ID that %%c expands to", r.Act, r.Topic)
		}
	}
	for _, f := range acl.Lint(rules, groups) {
		id := aclFindingID(f)
		switch {
		case id == "":
			continue
		case id == "clientid-pattern-unbound" && (bound || c.fromConf):
			continue // bound; or reported above with the configuration's context
		}
		l.add(id, path, f.Line, "%s: %s", f.Message, f.Rule)
	}
}

// aclFindingID maps a finding of acl.Lint to a rule of this package; kinds
// this package does not know yet (added to acl.Lint later) pass through as
// "acl-finding" with their message as evidence.
func aclFindingID(f acl.Finding) string {
	switch f.ID {
	case acl.FindingShadowedRule, acl.FindingOverriddenRule:
		return "acl-shadowed"
	case acl.FindingPatternWithoutPlaceholder:
		return "pattern-without-placeholder"
	case acl.FindingInvalidRule:
		return "acl-invalid-rule"
	case acl.FindingAnonymousWildcard:
		return "anonymous-wildcard-acl"
	case acl.FindingBroadWildcardGrant:
		return "broad-wildcard-grant"
	case acl.FindingClientIDTemplate:
		return "clientid-pattern-unbound"
	case acl.FindingTemplateSharePrefix:
		return "template-share-prefix"
	}
	return "acl-finding"
}
