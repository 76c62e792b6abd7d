package clientid_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
)

func TestPolicyDefault(t *testing.T) {
	var zero clientid.Policy
	var nilPolicy *clientid.Policy
	made, err := clientid.NewPolicy()
	require.NoError(t, err)
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"device-01", true},
		{"sensor_7.floor:2@plant", true},
		{"AA:BB:CC:DD:EE:FF", true},
		{"d0v3s5e4t1j9qjq1ptk0", true}, // the shape of a mochi-assigned ID
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"$SYS", false},   // a leading '$' reaches broker topics through %c
		{"a$b", false},    // '$' is outside the default characters
		{"a/b", false},    // reaches another client's tree through %c
		{"a+", false},     // a wildcard through %c
		{"#", false},      // a wildcard through %c
		{"a b", false},    // space
		{"a\x00b", false}, // NUL
		{"a\nb", false},   // forges log lines
		{"a\x7f", false},  // DEL
		{"caf\xc3\xa9", false},
		{"\xff", false},         // invalid UTF-8
		{"\u0430dmin", false},   // Cyrillic a: a look-alike of "admin"
		{"a\u202eb", false},     // right-to-left override
		{"a\u200bb", false},     // zero-width space
		{"a%c", false},          // '%' is outside the default characters
		{"a*", false},           // '*' is outside the default characters
		{"..", true},            // dots are plain characters in topics
		{"x\u0085", false},      // C1 next line
		{"user@example", true},  // e-mail shaped
		{"a\u2028b", false},     // line separator
		{"\ufeffdevice", false}, // byte-order mark
	} {
		for name, p := range map[string]*clientid.Policy{"zero": &zero, "nil": nilPolicy, "new": made} {
			err := p.Validate(tc.id)
			if tc.ok {
				require.NoError(t, err, "%s: %q", name, tc.id)
				continue
			}
			require.Error(t, err, "%s: %q", name, tc.id)
			require.ErrorIs(t, err, clientid.ErrInvalid)
			require.ErrorIs(t, err, mqttsec.ErrClientIDInvalid)
			require.Equal(t, mqttsec.CodeClientIDNotValid, mqttsec.CodeOf(err))
		}
	}
}

func TestPolicyOptions(t *testing.T) {
	p, err := clientid.NewPolicy(clientid.WithLength(4, 8), clientid.WithPattern(`[a-z]+(-[0-9]+)?`))
	require.NoError(t, err)
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"abcd", true},
		{"abc-1234", true},
		{"abc", false},       // too short
		{"abcdefghi", false}, // too long
		{"abcd!", false},     // the pattern is anchored at the end
		{"!abcd", false},     // and at the start
		{"ABCD", false},
		{"ab-1-2", false},
	} {
		err := p.Validate(tc.id)
		if tc.ok {
			require.NoError(t, err, tc.id)
		} else {
			require.ErrorIs(t, err, clientid.ErrInvalid, tc.id)
		}
	}

	// A pattern cannot admit what every Policy refuses.
	loose, err := clientid.NewPolicy(clientid.WithPattern(`.*`), clientid.WithLength(1, clientid.MaxLen))
	require.NoError(t, err)
	require.NoError(t, loose.Validate("any thing, ümlaut and all"))
	for _, id := range []string{"a/b", "a+", "a#", "$x", "a\tb", "a\u202eb", "a\ufffeb", "a\ufdd0", "a\ue000"} {
		require.ErrorIs(t, loose.Validate(id), clientid.ErrInvalid, "%q", id)
	}
	// "|" inside the pattern does not escape the anchors.
	alt, err := clientid.NewPolicy(clientid.WithPattern(`a|b`))
	require.NoError(t, err)
	require.NoError(t, alt.Validate("a"))
	require.Error(t, alt.Validate("ab"))
	require.Error(t, alt.Validate("xb"))

	for _, bad := range []clientid.PolicyOption{
		clientid.WithLength(0, 10),
		clientid.WithLength(5, 4),
		clientid.WithLength(1, clientid.MaxLen+1),
		clientid.WithPattern(`[a-`),
	} {
		_, err := clientid.NewPolicy(bad)
		require.Error(t, err)
	}
}

func TestPolicyEmptyID(t *testing.T) {
	var p clientid.Policy
	for _, cl := range []mqttsec.Client{
		{Protocol: 4, CleanStart: false},
		{Protocol: 4, CleanStart: true},
		{Protocol: 5, CleanStart: true},
		{Protocol: 5, CleanStart: false},
	} {
		err := p.ValidateClientID(&cl)
		require.ErrorIs(t, err, clientid.ErrInvalid)
		require.Equal(t, byte(0x02), mqttsec.CodeOf(err).V3Connack())
	}
	err := p.ValidateClientID(&mqttsec.Client{Protocol: 4})
	require.ErrorContains(t, err, "clean session")
	require.Error(t, p.ValidateClientID(nil))
	require.NoError(t, p.ValidateClientID(&mqttsec.Client{ID: "dev-1", Protocol: 5}))
}

func TestPolicyErrorQuotesShortly(t *testing.T) {
	p, err := clientid.NewPolicy(clientid.WithLength(1, clientid.MaxLen))
	require.NoError(t, err)
	long := strings.Repeat("x", 60000) + "/"
	err = p.Validate(long)
	require.Error(t, err)
	require.Less(t, len(err.Error()), 300, "an error quotes a bounded part of the ID")
	err = p.Validate("a\nb")
	require.NotContains(t, err.Error(), "\n", "control characters are escaped")
	require.True(t, errors.Is(err, mqttsec.ErrClientIDInvalid))
}

func TestGenerate(t *testing.T) {
	var p clientid.Policy
	seen := map[string]bool{}
	for range 1000 {
		id := clientid.Generate("dev-")
		require.Len(t, id, len("dev-")+clientid.GeneratedLen)
		require.True(t, strings.HasPrefix(id, "dev-"))
		require.NoError(t, p.Validate(id))
		require.False(t, seen[id], "duplicate %q", id)
		seen[id] = true
	}
	// Every character position varies: the suffix is not a counter.
	for i := len("dev-"); i < len("dev-")+clientid.GeneratedLen-1; i++ {
		chars := map[byte]bool{}
		for id := range seen {
			chars[id[i]] = true
		}
		require.Greater(t, len(chars), 16, "position %d", i)
	}
	require.Len(t, clientid.Generate(""), clientid.GeneratedLen)
}
