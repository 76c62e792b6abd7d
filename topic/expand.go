package topic

import (
	"strings"
	"unicode/utf8"
)

// Expand substitutes placeholders in a rule filter: %u and ${username} by
// username, %c and ${clientid} by clientID. It returns the expanded filter and
// true, or "" and false when a placeholder is used and its value is not a
// [SafeLevel] (empty, not UTF-8, or containing '+', '#', '/' or U+0000: such
// a value would widen or change the rule; the rule must then not apply). A filter without placeholders is returned unchanged. Any
// other '%' or '$' is kept literally.
func Expand(filter, username, clientID string) (string, bool) {
	if !strings.Contains(filter, "%") && !strings.Contains(filter, "${") {
		return filter, true
	}
	var b strings.Builder
	b.Grow(len(filter) + len(username) + len(clientID))
	for i := 0; i < len(filter); {
		var val string
		var n int
		switch {
		case strings.HasPrefix(filter[i:], "%u"):
			val, n = username, 2
		case strings.HasPrefix(filter[i:], "%c"):
			val, n = clientID, 2
		case strings.HasPrefix(filter[i:], "${username}"):
			val, n = username, len("${username}")
		case strings.HasPrefix(filter[i:], "${clientid}"):
			val, n = clientID, len("${clientid}")
		default:
			b.WriteByte(filter[i])
			i++
			continue
		}
		if !SafeLevel(val) {
			return "", false
		}
		b.WriteString(val)
		i += n
	}
	return b.String(), true
}

// HasPlaceholder reports whether filter uses %u, %c, ${username} or ${clientid}.
func HasPlaceholder(filter string) bool {
	return strings.Contains(filter, "%u") || strings.Contains(filter, "%c") ||
		strings.Contains(filter, "${username}") || strings.Contains(filter, "${clientid}")
}

// SafeLevel reports whether s can be substituted into a filter as (part of)
// one level without changing its meaning: non-empty valid UTF-8 without '+',
// '#', '/' or U+0000. (Two values that are each invalid UTF-8 could join
// into a valid character; they are refused one by one.)
func SafeLevel(s string) bool {
	return s != "" && !strings.ContainsAny(s, "+#/\x00") && utf8.ValidString(s)
}
