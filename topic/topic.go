package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MaxLen is the largest topic name or filter MQTT can carry, in bytes.
const MaxLen = 65535

// Errors returned by [ValidateName] and [ValidateFilter].
var (
	ErrEmpty          = errors.New("topic: empty")
	ErrTooLong        = errors.New("topic: longer than 65535 bytes")
	ErrInvalidUTF8    = errors.New("topic: invalid UTF-8")
	ErrNUL            = errors.New("topic: contains U+0000")
	ErrWildcardInName = errors.New("topic: wildcard in a topic name")
	ErrBadWildcard    = errors.New("topic: wildcard not on a whole level, or '#' not last")
	ErrBadShare       = errors.New("topic: malformed $share filter")
)

const sharePrefix = "$share/"

// ValidateName reports whether name is a valid topic name for a PUBLISH:
// 1 to 65535 bytes of valid UTF-8 without U+0000, '+' or '#'.
func ValidateName(name string) error {
	return check(name, false)
}

// ValidateFilter reports whether filter is a valid topic filter for a
// SUBSCRIBE. '+' must fill a whole level, '#' must be the whole last level,
// and a "$share/{group}/{filter}" filter needs a non-empty group without
// wildcards and a valid filter after it.
func ValidateFilter(filter string) error {
	if strings.HasPrefix(filter, sharePrefix) {
		if len(filter) > MaxLen {
			return ErrTooLong
		}
		if _, _, err := splitShare(filter); err != nil {
			return err
		}
	}
	return check(filter, true)
}

// ValidateLiteral reports whether s is a valid topic name or topic filter
// taken literally, as an authorizer sees a request: the rules of
// [ValidateFilter] without the shared-subscription syntax. The filter
// inside a shared subscription ("$share/" in "$share/g/$share/") and a topic
// name such as "$share/x" are literal: they are not parsed as a share.
func ValidateLiteral(s string) error {
	return check(s, true)
}

// Unshare returns the filter inside a shared subscription
// "$share/{group}/{filter}" and true, or filter unchanged and false when it
// is not a shared subscription. It does not validate.
func Unshare(filter string) (string, bool) {
	if !strings.HasPrefix(filter, sharePrefix) {
		return filter, false
	}
	_, f, err := splitShare(filter)
	if err != nil {
		return filter, false
	}
	return f, true
}

func splitShare(filter string) (group, f string, err error) {
	rest := filter[len(sharePrefix):]
	group, f, ok := strings.Cut(rest, "/")
	if !ok || group == "" || f == "" || strings.ContainsAny(group, "+#") {
		return "", "", ErrBadShare
	}
	return group, f, nil
}

func check(s string, filter bool) error {
	if len(s) == 0 {
		return ErrEmpty
	}
	if len(s) > MaxLen {
		return ErrTooLong
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case 0:
				return ErrNUL
			case '+', '#':
				if !filter {
					return ErrWildcardInName
				}
				if i > 0 && s[i-1] != '/' {
					return ErrBadWildcard
				}
				if c == '#' && i+1 != len(s) {
					return ErrBadWildcard
				}
				if c == '+' && i+1 != len(s) && s[i+1] != '/' {
					return ErrBadWildcard
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return ErrInvalidUTF8
		}
		i += size
	}
	return nil
}

// HasWildcard reports whether s contains '+' or '#'.
func HasWildcard(s string) bool {
	return strings.ContainsAny(s, "+#")
}

// Match reports whether the topic filter matches the topic name. It is false
// when either is invalid. '#' also matches the parent level ("a/#" matches
// "a"), and a filter whose first level is a wildcard never matches a name
// that starts with '$'. A shared subscription matches what its inner filter
// matches.
func Match(filter, name string) bool {
	if ValidateFilter(filter) != nil || check(name, false) != nil {
		return false
	}
	filter, _ = Unshare(filter)
	if name[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	return match(filter, name)
}

// match compares a valid filter with a valid name level by level.
func match(f, n string) bool {
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := strings.Cut(n, "/")
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore:
			return !nmore
		case !nmore:
			// The name ends here; only a trailing "#" matches its parent.
			return frest == "#"
		}
		f, n = frest, nrest
	}
}

// Covers reports whether filter outer matches every topic name that filter
// inner matches. outer must be a valid filter ([ValidateFilter]) and inner
// a valid literal one ([ValidateLiteral]; a topic name is a filter without
// wildcards, so Covers(f, name) == Match(f, name)). It is false when either
// is invalid.
//
// outer is a filter as a subscription or a rule states it: a shared
// subscription "$share/{group}/f" covers what f covers. inner is taken
// literally: it is the topic name of a PUBLISH or a delivery, or the filter
// of a SUBSCRIBE after the caller removed any $share prefix ([Unshare]). A
// name such as "$share/g/x" is a topic starting with '$', not the topic "x".
//
// Covers is the check for a SUBSCRIBE: a rule "a/b/#" does not cover "a/#",
// "a/+" does not cover "a/#", "+/#" covers "#", and "#" does not cover "$SYS/#".
func Covers(outer, inner string) bool {
	if ValidateFilter(outer) != nil || check(inner, true) != nil {
		return false
	}
	outer, _ = Unshare(outer)
	// A filter starting with a wildcard never matches '$' names, so it cannot
	// cover a filter whose first level is a literal starting with '$'.
	if (outer[0] == '+' || outer[0] == '#') && inner[0] == '$' {
		return false
	}
	full := len(inner)
	for {
		ol, orest, omore := strings.Cut(outer, "/")
		if ol == "#" {
			return true
		}
		il, irest, imore := strings.Cut(inner, "/")
		if il == "#" {
			// inner matches every name from this level down, and the parent
			// name before "/#" too when there is one (a topic name is never
			// empty, so "/#" and "#" have none). Outer, which has no '#' at
			// this level, covers that only as "+/#" when there is no parent.
			consumed := full - len(inner)
			return consumed <= 1 && ol == "+" && omore && orest == "#"
		}
		if ol != "+" && (il == "+" || il != ol) {
			return false
		}
		switch {
		case !omore:
			return !imore
		case !imore:
			return orest == "#"
		}
		outer, inner = orest, irest
	}
}
