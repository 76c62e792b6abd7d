package auth_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

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

// FuzzJWTClaims signs arbitrary claim sets with an HMAC key and checks what
// the JWT authenticator makes of them: never a panic, a denial always with
// 0x86, and an accepted token always one with a string subject, the
// configured audience, an "exp" in the future within Leeway (the
// Identity's expiry is exp + Leeway), and no secret in the Identity.
func FuzzJWTClaims(f *testing.F) {
	for _, s := range []string{
		`{"sub":"dev1","aud":"mqtt","exp":1800003600,"iat":1800000000}`,
		`{"sub":"dev1","aud":["x","mqtt"],"exp":1800000005}`,
		`{"sub":"dev1","aud":"mqtt","exp":1799999995}`,
		`{"sub":"dev1","aud":"mqtt","exp":1.8e9,"nbf":1800000100}`,
		`{"sub":"","aud":"mqtt","exp":1800003600}`,
		`{"sub":5,"aud":"mqtt","exp":1800003600}`,
		`{"sub":"dev1","aud":"mqtt","exp":"1800003600"}`,
		`{"sub":"dev1","aud":"mqtt","exp":1800003600,"roles":["a","b"],"acl":[{"permission":"allow","action":"publish","topic":"t/#"}]}`,
		`{"sub":"dev1","aud":"mqtt","exp":1800003600,"roles":"admin"}`,
		`{"sub":"dev1","aud":"mqtt","exp":1e400}`,
		`{"sub":"dev1","sub":"root","aud":"mqtt","exp":1800003600}`,
		`[]`, `null`, `{"aud":null}`,
	} {
		f.Add([]byte(s))
	}
	secret := []byte("0123456789abcdef0123456789abcdef-fuzz-secret")
	now := time.Unix(1_800_000_000, 0)
	j, err := auth.NewJWT(context.Background(), auth.JWTConfig{Algorithms: []string{"HS256"}, HMACSecret: secret,
		Audience: "mqtt", RolesClaim: "roles", ACLClaim: true, CacheSize: -1, Clock: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	defer j.Close()
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	f.Fuzz(func(t *testing.T, claims []byte) {
		signing := header + "." + base64.RawURLEncoding.EncodeToString(claims)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(signing))
		tok := signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		id, err := j.Authenticate(context.Background(), &mqttsec.Client{ID: "c"}, mqttsec.Credentials{Password: []byte(tok)})
		if errors.Is(err, mqttsec.ErrAbstain) && len(claims) == 0 {
			return // "header..signature" is not the shape of a token
		}
		if err != nil {
			if id != nil || mqttsec.CodeOf(err) != mqttsec.CodeBadUsernameOrPassword {
				t.Fatalf("denial %v (%v) with identity %v", err, mqttsec.CodeOf(err), id)
			}
			if strings.Contains(err.Error(), string(secret)) {
				t.Fatal("secret in an error")
			}
			return
		}
		var c struct {
			Sub string          `json:"sub"`
			Aud json.RawMessage `json:"aud"`
			Exp json.Number     `json:"exp"` // golang-jwt also takes a quoted number
		}
		if err := json.Unmarshal(claims, &c); err != nil {
			t.Fatalf("accepted claims encoding/json refuses: %v", err)
		}
		if id.Subject == "" || id.Subject != c.Sub || id.Method != mqttsec.MethodJWT {
			t.Fatalf("identity %+v for sub %q", id, c.Sub)
		}
		if !strings.Contains(string(c.Aud), `"mqtt"`) || id.Attributes[auth.AttrAudience] != "mqtt" {
			t.Fatalf("accepted audience %s", c.Aud)
		}
		exp, err := c.Exp.Float64()
		if err != nil {
			t.Fatalf("accepted exp %q: %v", c.Exp, err)
		}
		if !now.Before(id.Expiry) || id.Expiry.After(time.Unix(int64(exp)+1, 0).Add(auth.DefaultLeeway)) {
			t.Fatalf("expiry %v for exp %v at %v", id.Expiry, c.Exp, now)
		}
		for k, v := range id.Attributes {
			if strings.Contains(v, string(secret)) {
				t.Fatalf("secret in attribute %s", k)
			}
		}
	})
}
