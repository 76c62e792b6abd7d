package clientid

import (
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"

	"github.com/mqttsec/mqttsec"
)

// Length bounds of client IDs, in bytes.
const (
	// DefaultMinLen is the shortest client ID a [Policy] accepts unless
	// [WithLength] says otherwise.
	DefaultMinLen = 1
	// DefaultMaxLen is the longest client ID a [Policy] accepts unless
	// [WithLength] says otherwise.
	DefaultMaxLen = 128
	// MaxLen is the longest client ID MQTT can carry.
	MaxLen = 65535
)

// DefaultChars describes the characters a [Policy] accepts unless
// [WithPattern] says otherwise: ASCII letters and digits, '-', '_', '.',
// ':' and '@'. IDs the broker assigns (mochi's, [Generate]'s) and device
// names, MAC addresses and e-mail addresses fit in it; look-alike letters,
// spaces and characters with a meaning in topics or file names do not.
const DefaultChars = "[A-Za-z0-9_.:@-]"

// Policy is a [mqttsec.ClientIDPolicy]: it validates a client ID before
// authentication. Every Policy refuses, whatever its options:
//
//   - an ID shorter or longer than its bounds (default 1..128 bytes);
//   - invalid UTF-8, control characters (C0, DEL, C1), format characters
//     (bidirectional overrides, zero-width characters), line and paragraph
//     separators, private-use code points, non-characters and U+FFFD: they
//     forge, hide or garble text in logs and tools;
//   - '+', '#' and '/': where a topic rule expands the client ID (%c in
//     acl and Mosquitto patterns), they would turn it into a wildcard or
//     reach another client's topic tree ("devices/%c/#" with the ID "a/b"
//     is inside device "a"'s tree);
//   - a leading '$': a topic starting with '$' is the broker's ($SYS), and
//     "%c/#" would reach it.
//
// It then requires the characters of [DefaultChars], or the pattern of
// [WithPattern].
//
// An empty ID is refused too: the adapter must have assigned one before
// the Guard sees it. MQTT lets a client send an empty ID to be given one:
// MQTT 5 always, MQTT 3.1.1 only with clean session 1; mochi assigns its own
// ID then, before the Guard is called, and refuses an empty ID with clean
// session 0 itself. An empty ID reaching a Policy is one the adapter did not
// assign.
//
// Every refusal wraps [ErrInvalid] (reason code 0x85 "client identifier not
// valid", 0x02 "identifier rejected" for MQTT 3.1.1).
//
// The zero Policy, and a nil *Policy, apply the defaults. A Policy must not
// be modified after use; it is safe for concurrent use.
type Policy struct {
	minLen, maxLen int
	// pattern is the anchored pattern of WithPattern; nil means DefaultChars.
	pattern *regexp.Regexp
	source  string
}

// PolicyOption configures a [Policy] made by [NewPolicy].
type PolicyOption func(*Policy) error

// NewPolicy returns a Policy with the defaults changed by opts.
func NewPolicy(opts ...PolicyOption) (*Policy, error) {
	p := &Policy{}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// WithLength sets the length bounds in bytes: 1 <= min <= max <= [MaxLen].
// An ID the broker assigns must fit too (mochi's are 20 bytes; see
// [Generate]).
func WithLength(minLen, maxLen int) PolicyOption {
	return func(p *Policy) error {
		if minLen < 1 || minLen > maxLen || maxLen > MaxLen {
			return fmt.Errorf("clientid: length bounds %d..%d not within 1..%d", minLen, maxLen, MaxLen)
		}
		p.minLen, p.maxLen = minLen, maxLen
		return nil
	}
}

// WithPattern replaces [DefaultChars] by a regular expression (RE2 syntax,
// package regexp) the whole ID must match: it is anchored at both ends, so
// "[a-z]+" accepts "abc" and refuses "abc!". The fixed refusals of [Policy]
// still apply: a pattern cannot admit '/', '+', '#', a leading '$' or a
// control character. An ID the broker assigns must match too.
func WithPattern(expr string) PolicyOption {
	return func(p *Policy) error {
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			return fmt.Errorf("clientid: pattern: %w", err)
		}
		p.pattern, p.source = re, expr
		return nil
	}
}

func (p *Policy) bounds() (minLen, maxLen int) {
	if p == nil || p.maxLen == 0 {
		return DefaultMinLen, DefaultMaxLen
	}
	return p.minLen, p.maxLen
}

// ValidateClientID implements [mqttsec.ClientIDPolicy]: it validates cl.ID
// with [Policy.Validate], and says why an empty ID is refused (an MQTT
// 3.1.1 client with clean session 0 must send one; otherwise the adapter
// should have assigned one).
func (p *Policy) ValidateClientID(cl *mqttsec.Client) error {
	if cl == nil {
		return fmt.Errorf("%w: no client", ErrInvalid)
	}
	if cl.ID == "" {
		if cl.Protocol < 5 && !cl.CleanStart {
			return fmt.Errorf("%w: an MQTT 3.1.1 client without clean session must send a client ID", ErrInvalid)
		}
		return fmt.Errorf("%w: empty client ID not assigned by the broker", ErrInvalid)
	}
	return p.Validate(cl.ID)
}

// Validate reports whether the policy accepts id, with an error wrapping
// [ErrInvalid] when it does not. It allocates only to describe a refusal.
func (p *Policy) Validate(id string) error {
	minLen, maxLen := p.bounds()
	if len(id) < minLen || len(id) > maxLen {
		return fmt.Errorf("%w: %s is %d bytes long, not %d..%d", ErrInvalid, quote(id), len(id), minLen, maxLen)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, quote(id))
	}
	if id[0] == '$' {
		return fmt.Errorf("%w: %s starts with '$'", ErrInvalid, quote(id))
	}
	ascii := true
	for i := 0; i < len(id); i++ {
		if c := id[i]; c >= utf8.RuneSelf {
			ascii = false
		} else if c == '+' || c == '#' || c == '/' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s contains %q", ErrInvalid, quote(id), c)
		}
	}
	if !ascii {
		for _, r := range id {
			if forbidden(r) {
				return fmt.Errorf("%w: %s contains %U", ErrInvalid, quote(id), r)
			}
		}
	}
	if p == nil || p.pattern == nil {
		if !ascii {
			return fmt.Errorf("%w: %s contains characters outside %s", ErrInvalid, quote(id), DefaultChars)
		}
		for i := 0; i < len(id); i++ {
			if !defaultChar(id[i]) {
				return fmt.Errorf("%w: %s contains %q, outside %s", ErrInvalid, quote(id), id[i], DefaultChars)
			}
		}
		return nil
	}
	if !p.pattern.MatchString(id) {
		return fmt.Errorf("%w: %s does not match the pattern %q", ErrInvalid, quote(id), p.source)
	}
	return nil
}

// forbidden reports whether r is refused in any client ID: the checks of
// [Policy.Validate] on non-ASCII runes.
func forbidden(r rune) bool {
	switch {
	case r == utf8.RuneError: // only from invalid UTF-8, refused before
		return true
	case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs):
		return true
	case r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE: // non-characters
		return true
	}
	return false
}

func defaultChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == ':' || c == '@'
}

var _ mqttsec.ClientIDPolicy = (*Policy)(nil)
