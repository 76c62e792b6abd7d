package auth_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/topic"
)

// FuzzParseHash checks that ParseHash never panics, that an accepted hash
// prints back exactly as given (so a file round-trips byte for byte), and
// that every refusal wraps ErrMalformedHash. Hashes are not verified here:
// an accepted hash may legitimately cost seconds.
func FuzzParseHash(f *testing.F) {
	for _, s := range []string{
		// mosquitto_passwd defaults ($7$, PBKDF2-SHA512, 101 iterations)
		"$7$101$552PqRKIBes5embQ$5YZQ0uPohXxx8ISETXjeQ6wTI0X9JzDmSfsFQ1LhZG2p9HrHwB6G1ynYpVO/uieQS+YXHxsUDDjs9/znU8nrwQ==",
		// mosquitto_passwd -H sha512
		"$6$552PqRKIBes5embQ$5YZQ0uPohXxx8ISETXjeQ6wTI0X9JzDmSfsFQ1LhZG2p9HrHwB6G1ynYpVO/uieQS+YXHxsUDDjs9/znU8nrwQ==",
		// bcrypt variants
		"$2a$04$aaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"$2y$10$aaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		// argon2id PHC
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
		"", "$", "$7$", "$7$1$$", "$argon2id$", "plain",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := auth.ParseHash(s)
		if err != nil {
			if !errors.Is(err, auth.ErrMalformedHash) {
				t.Fatalf("error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		if h.String() != s {
			t.Fatalf("String() = %q, parsed %q", h.String(), s)
		}
		again, err := auth.ParseHash(h.String())
		if err != nil || again.Scheme() != h.Scheme() {
			t.Fatalf("re-parse: %v", err)
		}
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] > '~' {
				t.Fatalf("accepted a hash with byte %#x", s[i])
			}
		}
	})
}

// FuzzParsePasswordFile checks that the parser never panics, that errors
// name a line, and that writing an accepted file and reading it back gives
// the same users and hashes.
func FuzzParsePasswordFile(f *testing.F) {
	f.Add([]byte("# comment\nalice:$7$101$552PqRKIBes5embQ$5YZQ0uPohXxx8ISETXjeQ6wTI0X9JzDmSfsFQ1LhZG2p9HrHwB6G1ynYpVO/uieQS+YXHxsUDDjs9/znU8nrwQ==\n\n"))
	f.Add([]byte("bob:$2b$04$aaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\ncarol:$2b$04$aaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"))
	f.Add([]byte("a:x\n"))
	f.Add([]byte("a:$2b$04$aaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\na:$2b$04$aaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"))
	f.Add([]byte("\n\n  # x\n:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, err := auth.ParsePasswordFile(bytes.NewReader(data), "f")
		if err != nil {
			var pe *auth.ParseError
			if !errors.As(err, &pe) || pe.Line < 1 || pe.Line > bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("error without a valid line: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if _, err := pf.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		back, err := auth.ParsePasswordFile(bytes.NewReader(out.Bytes()), "f")
		if err != nil {
			t.Fatalf("re-parse of written file: %v\n%q", err, out.String())
		}
		if strings.Join(pf.Users(), "\n") != strings.Join(back.Users(), "\n") {
			t.Fatalf("users changed: %q vs %q", pf.Users(), back.Users())
		}
		for _, u := range pf.Users() {
			a, _ := pf.Lookup(u)
			b, ok := back.Lookup(u)
			if !ok || a.String() != b.String() {
				t.Fatalf("hash of %q changed", u)
			}
		}
		var again bytes.Buffer
		_, _ = back.WriteTo(&again)
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("write is not idempotent")
		}
	})
}

// lenientRule is the EMQX rule shape decoded by encoding/json, for a
// differential check of the strict parser.
type lenientRule struct {
	Permission string `json:"permission"`
	Action     string `json:"action"`
	Topic      string `json:"topic"`
	QoS        []int  `json:"qos"`
	Retain     *bool  `json:"retain"`
}

// FuzzParseACLClaim checks that the strict parser never panics, that what
// it accepts is also accepted by encoding/json with the same meaning, that
// every accepted topic is a valid filter, and that re-encoding the grants
// parses to the same grants.
func FuzzParseACLClaim(f *testing.F) {
	for _, s := range []string{
		`[{"permission":"allow","action":"publish","topic":"t/${clientid}"}]`,
		`[{"permission":"deny","action":"all","topic":"#","qos":[0,1,2],"retain":true}]`,
		`[{"permission":"allow","action":"subscribe","topic":"eq t/1/#","qos":[1]}]`,
		`{"pub":["a"],"sub":["b"],"all":["c"]}`,
		`[]`, `[{}]`, `null`, `[{"permission":"allow","permission":"deny"}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		grants, err := auth.ParseACLClaim(raw)
		if err != nil {
			if !errors.Is(err, auth.ErrMalformedACL) {
				t.Fatalf("error %v does not wrap ErrMalformedACL", err)
			}
			return
		}
		var rules []lenientRule
		if err := json.Unmarshal(raw, &rules); err != nil {
			t.Fatalf("strict parser accepted what encoding/json refuses: %v", err)
		}
		if len(rules) != len(grants) {
			t.Fatalf("%d rules, %d grants", len(rules), len(grants))
		}
		out := make([]map[string]any, len(grants))
		for i, g := range grants {
			r := rules[i]
			if g.Allow != (r.Permission == "allow") || g.Topic != r.Topic || topic.ValidateFilter(g.Topic) != nil {
				t.Fatalf("rule %d: grant %+v disagrees with %+v", i, g, r)
			}
			want := map[string]mqttsec.Access{"publish": mqttsec.Publish, "subscribe": mqttsec.Subscribe,
				"all": mqttsec.Publish | mqttsec.Subscribe}[r.Action]
			if want == 0 || g.Access != want {
				t.Fatalf("rule %d: access %v for action %q", i, g.Access, r.Action)
			}
			if len(g.QoS) != len(r.QoS) {
				t.Fatalf("rule %d: qos %v vs %v", i, g.QoS, r.QoS)
			}
			m := map[string]any{"permission": r.Permission, "action": r.Action, "topic": g.Topic}
			if g.QoS != nil {
				m["qos"] = g.QoS
				qs := make([]int, len(g.QoS))
				for j, q := range g.QoS {
					qs[j] = int(q)
				}
				m["qos"] = qs
			}
			if g.Retain != nil {
				m["retain"] = *g.Retain
			}
			out[i] = m
		}
		b, _ := json.Marshal(out)
		again, err := auth.ParseACLClaim(b)
		if err != nil || len(again) != len(grants) {
			t.Fatalf("re-encoded grants do not parse: %v", err)
		}
	})
}

// FuzzPasswordFileSet checks that every user name Set accepts is written
// and read back as itself, alone, next to a comment and another user (a
// name that became a comment, a blank line or another name would silently
// lose the user), and that every refusal wraps ErrInvalidUsername.
func FuzzPasswordFileSet(f *testing.F) {
	for _, s := range []string{
		"alice", "#alice", " alice", "alice ", "\u00a0#x", "a:b", "al\nice", "", " ", "ütf-8 ✓",
		"a#b", "\t#", "x\r", "$SYS", "*", "\u2028", "a\u0085b",
	} {
		f.Add(s)
	}
	h, err := auth.ParseHash("$2b$04$" + strings.Repeat("a", 21) + "." + strings.Repeat("a", 31))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name string) {
		pf, err := auth.ParsePasswordFile(strings.NewReader("# users\nzz-other:"+h.String()+"\n"), "f")
		if err != nil {
			t.Fatal(err)
		}
		if err := pf.Set(name, h); err != nil {
			if !errors.Is(err, auth.ErrInvalidUsername) {
				t.Fatalf("error %v does not wrap ErrInvalidUsername", err)
			}
			if auth.ValidateUsername(name) == nil {
				t.Fatalf("ValidateUsername accepts %q, Set refuses it", name)
			}
			return
		}
		if auth.ValidateUsername(name) != nil {
			t.Fatalf("Set accepts %q, ValidateUsername refuses it", name)
		}
		var out bytes.Buffer
		if _, err := pf.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		back, err := auth.ParsePasswordFile(&out, "f")
		if err != nil {
			t.Fatalf("Set accepted %q, the written file does not parse: %v", name, err)
		}
		want := []string{"zz-other", name}
		if name == "zz-other" {
			want = want[:1]
		}
		if got := back.Users(); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("users %q, want %q", got, want)
		}
	})
}
