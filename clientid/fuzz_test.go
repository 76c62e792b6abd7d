package clientid_test

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
)

// refDefault is the reference meaning of the default Policy.
var refDefault = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)

// FuzzValidate compares the default Policy with its one-line reference, and
// checks that no pattern lets through what every Policy refuses.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		"device-01",              // plain
		"$SYS",                   // leading '$'
		"a/b",                    // a topic separator
		"a+#",                    // wildcards
		"caf\u00e9",              // non-ASCII
		"a\u202eb",               // bidirectional override
		"\xff\xfe",               // invalid UTF-8
		"a\x00",                  // NUL
		strings.Repeat("x", 129), // too long
		"",
	} {
		f.Add(s)
	}
	loose, err := clientid.NewPolicy(clientid.WithPattern(`(?s:.*)`), clientid.WithLength(1, clientid.MaxLen))
	if err != nil {
		f.Fatal(err)
	}
	var def clientid.Policy
	f.Fuzz(func(t *testing.T, id string) {
		err := def.Validate(id)
		if got, want := err == nil, refDefault.MatchString(id); got != want {
			t.Fatalf("Validate(%q) = %v, reference accepts: %v", id, err, want)
		}
		if err != nil && mqttsec.CodeOf(err) != mqttsec.CodeClientIDNotValid {
			t.Fatalf("Validate(%q): code %s", id, mqttsec.CodeOf(err))
		}
		if loose.Validate(id) != nil {
			return
		}
		if !utf8.ValidString(id) || id == "" || id[0] == '$' || strings.ContainsAny(id, "+#/\x00\n\r\t\x7f\u0085\u2028\u2029\u202e\u200b\ufeff") {
			t.Fatalf("a pattern let %q through", id)
		}
	})
}

// placeholderOf returns the placeholder name of a template that parsed.
func placeholderOf(tmpl string) string {
	i := strings.IndexByte(tmpl, '{')
	j := strings.IndexByte(tmpl, '}')
	return tmpl[i+1 : j]
}

// FuzzTemplate parses templates and, for those that parse, compares Match
// with the regular-expression reference and checks that an ID belongs to
// one placeholder value at most.
func FuzzTemplate(f *testing.F) {
	for _, s := range [][3]string{
		{"{username}-*", "alice-phone", "alice"},     // the usual binding
		{"{username}-*", "alice-x-1", "alice"},       // another user's ID
		{"*-{sub}-*", "a-b-c-d", "b-c"},              // wildcards on both sides
		{"{attr:client_id}", "meter-42", "meter-42"}, // a token claim
		{"ü-{username}-*ß", "ü-alice-abcß", "alice"}, // multi-byte separators
		{"{cn}", "sensor-7", "sensor-7"},             // no certificate: no match
		{"{username}{cn}", "ab", "a"},                // refused: adjacent placeholders
		{"{user", "x", "x"},                          // refused: not closed
		{"a*-{username}.*.", "ab-x.y.", "x"},         // several wildcards
		{"{username}-\xff*", "a-\xffb", "a"},         // invalid UTF-8
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, tmpl, id, value string) {
		tp, err := clientid.ParseTemplate(tmpl)
		if err != nil {
			return
		}
		if tp.String() != tmpl {
			t.Fatalf("String() = %q, parsed %q", tp.String(), tmpl)
		}
		again, err := clientid.ParseTemplate(tp.String())
		if err != nil || again.String() != tmpl {
			t.Fatalf("round trip of %q: %v", tmpl, err)
		}
		name := placeholderOf(tmpl)
		client := func(v string) *mqttsec.Client {
			return &mqttsec.Client{ID: id, Identity: &mqttsec.Identity{Subject: v, Method: mqttsec.MethodPassword,
				Attributes: map[string]string{strings.TrimPrefix(name, "attr:"): v}}}
		}
		valued := name == "username" || name == "sub" || strings.HasPrefix(name, "attr:")
		if valued && len(id) <= 40 {
			// Every value under which id matches is a substring of id: at
			// most one of them may.
			owner := ""
			for i := 0; i < len(id); i++ {
				for j := i + 1; j <= len(id); j++ {
					v := id[i:j]
					if v == owner || !tp.Match(id, client(v)) {
						continue
					}
					if owner != "" {
						t.Fatalf("template %q: %q matches for %q and %q", tmpl, id, owner, v)
					}
					owner = v
				}
			}
		}
		got := tp.Match(id, client(value))
		if !utf8.ValidString(value) {
			// The reference cannot quote invalid UTF-8; byte-wise, such a
			// value matches only where id contains it.
			if got && !strings.Contains(id, value) {
				t.Fatalf("template %q: %q matches for %q, which it does not contain", tmpl, id, value)
			}
			return
		}
		want := valued && value != "" && refRegexp(tmpl, value).MatchString(id)
		if got != want {
			t.Fatalf("template %q, value %q: Match(%q) = %v, reference %v", tmpl, value, id, got, want)
		}
	})
}
