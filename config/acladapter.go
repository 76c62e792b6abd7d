package config

import (
	"errors"
	"fmt"
	"os"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"

	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/topic"
)

// policyAdapter is a read-only Casbin adapter that loads an acl_file and a
// Casbin CSV policy, either or both, into one acl.Model policy: a request
// is allowed when an allow rule of either matches and no deny rule of
// either does. Each file is parsed strictly (acl.ParseMosquitto,
// acl.ParsePolicy); a file that does not parse fails the whole load, so
// the previous policy stays in force.
type policyAdapter struct {
	aclFile, policyFile string
}

var errReadOnly = errors.New("config: the policy files are read-only")

func (a policyAdapter) LoadPolicy(m model.Model) error {
	if a.aclFile != "" {
		f, err := os.Open(a.aclFile)
		if err != nil {
			return err
		}
		rules, err := acl.ParseMosquitto(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", a.aclFile, err)
		}
		for _, r := range rules {
			if err := persist.LoadPolicyArray(append([]string{"p"}, r.Policy()...), m); err != nil {
				return fmt.Errorf("%s:%d: %w", a.aclFile, r.Line, err)
			}
		}
	}
	if a.policyFile != "" {
		f, err := os.Open(a.policyFile)
		if err != nil {
			return err
		}
		rules, groups, err := acl.ParsePolicy(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", a.policyFile, err)
		}
		for _, r := range rules {
			if err := checkRule(r); err != nil {
				return fmt.Errorf("%s:%d: %w", a.policyFile, r.Line, err)
			}
			if err := persist.LoadPolicyArray(append([]string{"p"}, r.Policy()...), m); err != nil {
				return fmt.Errorf("%s:%d: %w", a.policyFile, r.Line, err)
			}
		}
		for _, g := range groups {
			if err := persist.LoadPolicyArray([]string{"g", g[0], g[1]}, m); err != nil {
				return fmt.Errorf("%s: %w", a.policyFile, err)
			}
		}
	}
	return nil
}

// checkRule refuses a policy line whose act, effect or topic filter
// Casbin would take without complaint and never match: a misspelt deny
// rule would silently not deny.
func checkRule(r acl.Rule) error {
	switch r.Act {
	case acl.ActRead, acl.ActWrite, acl.ActReadWrite:
	default:
		return fmt.Errorf("%w: act %q: use read, write or readwrite", acl.ErrSyntax, r.Act)
	}
	switch r.Eft {
	case acl.EftAllow, acl.EftDeny:
	default:
		return fmt.Errorf("%w: effect %q: use allow or deny", acl.ErrSyntax, r.Eft)
	}
	if err := topic.ValidateFilter(r.Topic); err != nil {
		return fmt.Errorf("%w: topic filter %q: %w", acl.ErrSyntax, r.Topic, err)
	}
	return nil
}

func (policyAdapter) SavePolicy(model.Model) error                              { return errReadOnly }
func (policyAdapter) AddPolicy(string, string, []string) error                  { return errReadOnly }
func (policyAdapter) RemovePolicy(string, string, []string) error               { return errReadOnly }
func (policyAdapter) RemoveFilteredPolicy(string, string, int, ...string) error { return errReadOnly }
