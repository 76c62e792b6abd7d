package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/topic"
)

// MaxACLRules is the largest number of rules [ParseACLClaim] accepts.
const MaxACLRules = 256

// ParseACLClaim parses a JWT "acl" claim in EMQX 5.x format: a JSON array
// of rules
//
//	{"permission": "allow"|"deny", "action": "publish"|"subscribe"|"all",
//	 "topic": "filter", "qos": [0, 1, 2], "retain": true|false}
//
// where qos and retain are optional, into grants in claim order. Parsing is
// strict: unknown or duplicate fields, wrong types, invalid topic filters,
// EMQX's "eq " topic prefix, the pre-5.5 object format and more than
// [MaxACLRules] rules are errors wrapping [ErrMalformedACL]. Topics may use
// the placeholders of [topic.Expand].
func ParseACLClaim(raw []byte) ([]mqttsec.Grant, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, aclErr(-1, "not JSON")
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, aclErr(-1, "want an array of rules (the pre-5.5 object format is not supported)")
	}
	grants := []mqttsec.Grant{}
	for i := 0; dec.More(); i++ {
		if i >= MaxACLRules {
			return nil, aclErr(i, fmt.Sprintf("more than %d rules", MaxACLRules))
		}
		g, err := parseACLRule(dec, i)
		if err != nil {
			return nil, err
		}
		grants = append(grants, g)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return nil, aclErr(-1, "unterminated array")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, aclErr(-1, "trailing data after the array")
	}
	return grants, nil
}

func aclErr(i int, msg string) error {
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrMalformedACL, msg)
	}
	return fmt.Errorf("%w: rule %d: %s", ErrMalformedACL, i, msg)
}

func parseACLRule(dec *json.Decoder, i int) (mqttsec.Grant, error) {
	var g mqttsec.Grant
	tok, err := dec.Token()
	if d, ok := tok.(json.Delim); err != nil || !ok || d != '{' {
		return g, aclErr(i, "want an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return g, aclErr(i, "invalid JSON")
		}
		key, _ := tok.(string)
		if seen[key] {
			return g, aclErr(i, fmt.Sprintf("duplicate field %q", key))
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return g, aclErr(i, "invalid JSON")
		}
		switch key {
		case "permission":
			var s string
			if json.Unmarshal(raw, &s) != nil || (s != "allow" && s != "deny") {
				return g, aclErr(i, `permission must be "allow" or "deny"`)
			}
			g.Allow = s == "allow"
		case "action":
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return g, aclErr(i, "action must be a string")
			}
			switch s {
			case "publish":
				g.Access = mqttsec.Publish
			case "subscribe":
				g.Access = mqttsec.Subscribe
			case "all":
				g.Access = mqttsec.Publish | mqttsec.Subscribe
			default:
				return g, aclErr(i, `action must be "publish", "subscribe" or "all"`)
			}
		case "topic":
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return g, aclErr(i, "topic must be a string")
			}
			if strings.HasPrefix(s, "eq ") {
				return g, aclErr(i, `the "eq " topic prefix is not supported`)
			}
			if err := topic.ValidateFilter(s); err != nil {
				return g, aclErr(i, fmt.Sprintf("topic %q: %v", s, err))
			}
			g.Topic = s
		case "qos":
			var qs []json.RawMessage
			if json.Unmarshal(raw, &qs) != nil || len(qs) == 0 || len(qs) > 3 {
				return g, aclErr(i, "qos must be a non-empty array of 0, 1 and 2")
			}
			g.QoS = make([]byte, 0, len(qs))
			var have [3]bool
			for _, q := range qs {
				s := bytes.TrimSpace(q)
				if len(s) != 1 || s[0] < '0' || s[0] > '2' || have[s[0]-'0'] {
					return g, aclErr(i, "qos must be a non-empty array of distinct 0, 1 and 2")
				}
				have[s[0]-'0'] = true
				g.QoS = append(g.QoS, s[0]-'0')
			}
		case "retain":
			var b *bool
			if json.Unmarshal(raw, &b) != nil || b == nil {
				return g, aclErr(i, "retain must be true or false")
			}
			g.Retain = b
		default:
			return g, aclErr(i, fmt.Sprintf("unknown field %q", key))
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return g, aclErr(i, "invalid JSON")
	}
	for _, f := range [...]string{"permission", "action", "topic"} {
		if !seen[f] {
			return g, aclErr(i, fmt.Sprintf("missing %q", f))
		}
	}
	return g, nil
}
