package integrity

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mqttsec/mqttsec/topic"
)

// Rule marks the topics a filter matches as protected: messages on them
// must be signed, and may be required to be encrypted.
type Rule struct {
	// Filter is an MQTT topic filter. A whole level "%u" stands for the
	// signer's subject: "devices/%u/#" protects every topic under devices/
	// and accepts on "devices/a/temp" only a key bound to subject "a".
	// At most one level may be "%u". As in MQTT, a filter starting with a
	// wildcard does not match topic names starting with '$'.
	Filter string
	// Signers, when not empty, are the only subjects whose keys may sign
	// on the topics.
	Signers []string
	// EncryptionKey, when set, is the ID of the secret key a [Sender]
	// encrypts the topics' messages with (COSE_Encrypt0, A256GCM), and
	// every verifier refuses plaintext on them. Receivers decrypt with the
	// key the message names, so the key can be rotated by ID.
	EncryptionKey string
}

// Policy says which topics are protected and how. Rules are tried in
// order and the first whose filter matches a topic applies; a topic no
// rule matches is not protected. A nil *Policy protects every topic with
// no signer constraint and no encryption.
//
// A Policy is immutable and safe for concurrent use.
type Policy struct {
	rules []rule
}

type rule struct {
	Rule
	match string // Filter with "%u" replaced by "+"
	level int    // index of the "%u" level, -1 if none
}

// everything is the rule of a nil Policy.
var everything = &rule{Rule: Rule{Filter: "#"}, match: "#", level: -1}

// NewPolicy returns a policy of rules. A filter that is not a valid topic
// filter, a "%u" that is not a whole level or appears twice, or an empty
// signer is an error.
func NewPolicy(rules ...Rule) (*Policy, error) {
	p := &Policy{rules: make([]rule, 0, len(rules))}
	for _, r := range rules {
		c := rule{Rule: r, level: -1}
		c.Signers = slices.Clone(r.Signers)
		levels := strings.Split(r.Filter, "/")
		for i, lv := range levels {
			if lv == "%u" {
				if c.level >= 0 {
					return nil, fmt.Errorf("%w: rule %q: \"%%u\" used twice", ErrConfig, r.Filter)
				}
				c.level = i
				levels[i] = "+"
			} else if strings.Contains(lv, "%u") {
				return nil, fmt.Errorf("%w: rule %q: \"%%u\" must be a whole level", ErrConfig, r.Filter)
			}
		}
		c.match = strings.Join(levels, "/")
		if err := topic.ValidateFilter(c.match); err != nil {
			return nil, fmt.Errorf("%w: rule %q: %w", ErrConfig, r.Filter, err)
		}
		if _, shared := topic.Unshare(c.match); shared {
			return nil, fmt.Errorf("%w: rule %q: a rule filter cannot be a shared subscription", ErrConfig, r.Filter)
		}
		for _, s := range c.Signers {
			if s == "" {
				return nil, fmt.Errorf("%w: rule %q: empty signer", ErrConfig, r.Filter)
			}
		}
		if r.EncryptionKey != "" {
			if err := checkID(r.EncryptionKey); err != nil {
				return nil, fmt.Errorf("rule %q: %w", r.Filter, err)
			}
		}
		p.rules = append(p.rules, c)
	}
	return p, nil
}

// Lookup returns the rule that applies to the topic name t, and whether t
// is protected.
func (p *Policy) Lookup(t string) (Rule, bool) {
	r := p.lookup(t)
	if r == nil {
		return Rule{}, false
	}
	out := r.Rule
	out.Signers = slices.Clone(out.Signers)
	return out, true
}

// Protects reports whether messages on the topic name t must be signed.
func (p *Policy) Protects(t string) bool { return p.lookup(t) != nil }

func (p *Policy) lookup(t string) *rule {
	if p == nil {
		return everything
	}
	for i := range p.rules {
		if topic.Match(p.rules[i].match, t) {
			return &p.rules[i]
		}
	}
	return nil
}

// allows reports whether subject may sign on topic t, which the rule
// matches.
func (r *rule) allows(t, subject string) bool {
	if len(r.Signers) > 0 && !slices.Contains(r.Signers, subject) {
		return false
	}
	if r.level >= 0 && levelOf(t, r.level) != subject {
		return false
	}
	return true
}

// levelOf returns level i of the topic name t, or "" (never a subject).
func levelOf(t string, i int) string {
	for ; i > 0; i-- {
		j := strings.IndexByte(t, '/')
		if j < 0 {
			return ""
		}
		t = t[j+1:]
	}
	if j := strings.IndexByte(t, '/'); j >= 0 {
		return t[:j]
	}
	return t
}
