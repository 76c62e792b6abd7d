package redisstore

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mqttsec/mqttsec"
)

// FuzzParseKick: a message read from the kick channel either parses into
// a kick whose fields re-encode to the same message, or is refused; it
// never panics, and a parsed kick always has a known kind and a code that
// denies (>= 0x80).
func FuzzParseKick(f *testing.F) {
	for _, s := range []string{
		"1|lease|142|a1b2c3d4e5f60718|0718a1b2c3d4e5f6|0718a1b2c3d4e5f6.1f",
		"1|client|152|a1b2c3d4e5f60718||dev|with|bars",
		"1|subject|135|a1b2c3d4e5f60718||alice",
		"1|subject|0|n||alice",
		"2|client|152|n||x",
		"1|nope|152|n||x",
		"1|client|999|n||x",
		"1|client|152|n",
		"",
		"1|client|152|n||\xff\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, ok := parseKick(s)
		if !ok {
			return
		}
		switch m.kind {
		case kickLease, kickClient, kickSubject:
		default:
			t.Fatalf("kind %q accepted", m.kind)
		}
		if m.code < 0x80 {
			t.Fatalf("code %#x accepted", byte(m.code))
		}
		n := &Node{id: m.from}
		re := n.kickMessage(m.kind, m.code, m.to, m.value)
		// The code may have been written with leading zeros or a sign.
		want := strings.SplitN(s, "|", 6)
		want[2] = strconv.Itoa(int(m.code))
		if re != strings.Join(want, "|") {
			t.Fatalf("%q re-encodes as %q", s, re)
		}
		if m.kind != kickLease && Target(Target{kind: m.kind, value: m.value}).match() == nil {
			t.Fatal("no matcher")
		}
		_ = mqttsec.ReasonCode(m.code).String()
	})
}

// FuzzParseBan: a ban-list entry read from Redis either parses into a ban
// whose encoding gives back the same entry, or is skipped; it never
// panics.
func FuzzParseBan(f *testing.F) {
	for _, s := range [][2]string{
		{"subject|mallory", "0|abuse"},
		{"client_id|dev|1", "1796160177184|"},
		{"ip|203.0.113.0/24", "1796160177184|scan|ner"},
		{"ip|2001:db8::/32", "0|"},
		{"nope|x", "0|"},
		{"subject|x", "-1|"},
		{"subject|x", "12"},
		{"subject", "0|"},
		{"subject|\xff", "0|\xfe"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, field, value string) {
		b, ok := parseBan(field, value)
		if !ok {
			return
		}
		if got := banField(b); got != field {
			t.Fatalf("field %q re-encodes as %q", field, got)
		}
		if len(b.Reason) <= maxReason {
			// The time may have been written with leading zeros.
			_, reason, _ := strings.Cut(value, "|")
			if got := banValue(b); !strings.HasSuffix(got, "|"+reason) {
				t.Fatalf("value %q re-encodes as %q", value, got)
			}
		}
	})
}
