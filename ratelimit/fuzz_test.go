package ratelimit

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseBans checks that ParseBans never panics, and that what it
// accepts is written back by WriteBans to a list it parses to the same bans
// (the format round-trips, so a saved list loads as it was saved).
func FuzzParseBans(f *testing.F) {
	for _, s := range []string{
		"ip 192.0.2.7 never\n",
		"ip 10.0.0.0/8 2030-01-02T03:04:05Z \"scanners\"\n",
		"client_id \"dev\\t17\" never \"\"\n# comment\n\n",
		"subject \"alice\" 2030-01-02T03:04:05.5+01:00 \"guessing \\\"x\\\"\"\n",
		"ip 2001:db8::/32 never\nip ::1 never\n",
		"ip 10.0.0.1/8 never\n",                          // refused: bits past the prefix
		"client_id \"a\" never\nclient_id \"a\" never\n", // refused: duplicate
		"subject \"\\u00e9\\U0001F600\" never",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		bans, err := ParseBans(strings.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteBans(&buf, bans); err != nil {
			t.Fatalf("WriteBans of parsed bans: %v", err)
		}
		again, err := ParseBans(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("parse of written bans: %v\n%s", err, buf.Bytes())
		}
		if len(again) != len(bans) {
			t.Fatalf("%d bans, %d after a round trip", len(bans), len(again))
		}
		for i := range bans {
			a, b := bans[i], again[i]
			if a.Kind != b.Kind || a.Value != b.Value || a.Reason != b.Reason || !a.Until.Equal(b.Until) {
				t.Fatalf("ban %d: %+v, after a round trip %+v", i, a, b)
			}
		}
	})
}

// FuzzBanAddr checks address and CIDR parsing: the canonical form parses to
// itself, the prefix contains its own address, and an accepted prefix
// agrees with net/netip.
func FuzzBanAddr(f *testing.F) {
	for _, s := range []string{"192.0.2.7", "10.0.0.0/8", "::ffff:10.0.0.0/104", "2001:db8::/32",
		"fe80::1%eth0", "10.0.0.1/8", "::/0", "0.0.0.0/0", "1.2.3.4/32", "::ffff:1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseAddrOrPrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p.Masked() != p || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			t.Fatalf("%q parsed to non-canonical %v", s, p)
		}
		b, q, err := normalize(Ban{Kind: BanAddr, Value: s})
		if err != nil || q != p {
			t.Fatalf("normalize(%q) = %v, %v", s, q, err)
		}
		again, err := parseAddrOrPrefix(b.Value)
		if err != nil || again != p {
			t.Fatalf("canonical %q of %q parses to %v, %v", b.Value, s, again, err)
		}
		if !p.Contains(p.Addr()) {
			t.Fatalf("%v does not contain its address", p)
		}
		if std, err := netip.ParsePrefix(s); err == nil && std.Masked() == std && !std.Addr().Is4In6() && std != p {
			t.Fatalf("%q: %v, net/netip %v", s, p, std)
		}
	})
}
