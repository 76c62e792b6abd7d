package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func cl(id, user, addr string) *mqttsec.Client {
	return &mqttsec.Client{ID: id, Username: user, RemoteAddr: addr, Protocol: 5}
}

func TestBansCheck(t *testing.T) {
	clock := newClock()
	b := NewBans(BansConfig{Clock: clock.Now})
	require.NoError(t, b.Check(cl("c", "u", "192.0.2.1:1")))
	for _, ban := range []Ban{
		{Kind: BanClientID, Value: "dev 17"},
		{Kind: BanSubject, Value: "mallory", Until: clock.Now().Add(time.Minute)},
		{Kind: BanAddr, Value: "192.0.2.7"},
		{Kind: BanAddr, Value: "10.0.0.0/8"},
		{Kind: BanAddr, Value: "2001:db8::/32"},
		{Kind: BanAddr, Value: "::ffff:198.51.100.9"}, // stored as IPv4
	} {
		require.NoError(t, b.Add(bg, ban))
	}
	for _, c := range []struct {
		cl     *mqttsec.Client
		banned bool
	}{
		{cl("dev 17", "", "192.0.2.1:1"), true},
		{cl("dev 18", "", "192.0.2.1:1"), false},
		{cl("x", "mallory", "192.0.2.1:1"), true},
		{cl("x", "", "192.0.2.7:1883"), true},
		{cl("x", "", "192.0.2.8:1883"), false},
		{cl("x", "", "10.200.3.4:1"), true},
		{cl("x", "", "[::ffff:10.1.1.1]:1"), true},
		{cl("x", "", "[2001:db8:ffff::1]:1"), true},
		{cl("x", "", "[2001:db9::1]:1"), false},
		{cl("x", "", "198.51.100.9:5"), true},
		{cl("x", "", "not an address"), false},
	} {
		err := b.Check(c.cl)
		if c.banned {
			require.ErrorIs(t, err, mqttsec.ErrBanned, "%+v", c.cl)
			require.Equal(t, mqttsec.CodeBanned, mqttsec.CodeOf(err))
		} else {
			require.NoError(t, err, "%+v", c.cl)
		}
	}
	values := []string{}
	for _, ban := range b.List() {
		values = append(values, ban.Kind.String()+" "+ban.Value)
	}
	require.Equal(t, []string{"client_id dev 17", "subject mallory", "ip 10.0.0.0/8",
		"ip 192.0.2.7", "ip 198.51.100.9", "ip 2001:db8::/32"}, values)

	clock.Add(time.Minute)
	require.NoError(t, b.Check(cl("x", "mallory", "192.0.2.1:1")), "the ban expired")
	require.Len(t, b.List(), 5)

	ok, err := b.Remove(bg, BanAddr, "10.0.0.0/8")
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = b.Remove(bg, BanAddr, "10.0.0.0/8")
	require.NoError(t, err)
	require.False(t, ok, "absence is reported")
	require.NoError(t, b.Check(cl("x", "", "10.200.3.4:1")))
	require.ErrorIs(t, b.Check(cl("x", "", "192.0.2.7:1")), mqttsec.ErrBanned, "other prefixes stay")
}

func TestBansRefuseInvalid(t *testing.T) {
	b := NewBans(BansConfig{})
	for _, ban := range []Ban{
		{},
		{Kind: BanClientID},
		{Kind: BanSubject, Value: "\xff"},
		{Kind: BanAddr, Value: "10.0.0.1/8"}, // bits past the prefix
		{Kind: BanAddr, Value: "fe80::1%eth0"},
		{Kind: BanAddr, Value: "example.com"},
		{Kind: BanAddr, Value: "10.0.0.0/33"},
		{Kind: 9, Value: "x"},
	} {
		require.ErrorIs(t, b.Add(bg, ban), ErrInvalidBan, "%+v", ban)
	}
	require.Empty(t, b.List())
}

func TestAutoBansGrowAndAreBounded(t *testing.T) {
	clock := newClock()
	b := NewBans(BansConfig{Clock: clock.Now, MaxAutomatic: 3})
	ban, ok := b.autoBan(BanAddr, "192.0.2.1", "test", time.Minute, time.Hour)
	require.True(t, ok)
	require.Equal(t, clock.Now().Add(time.Minute), ban.Until)
	require.True(t, ban.Auto)
	clock.Add(2 * time.Minute)
	ban, _ = b.autoBan(BanAddr, "192.0.2.1", "test", time.Minute, time.Hour)
	require.Equal(t, clock.Now().Add(2*time.Minute), ban.Until, "a key banned again is banned for twice as long")
	for range 10 {
		clock.Add(ban.Until.Sub(clock.Now()) + time.Second) // expired, remembered
		ban, _ = b.autoBan(BanAddr, "192.0.2.1", "test", time.Minute, time.Hour)
	}
	require.Equal(t, time.Hour, ban.Until.Sub(clock.Now()), "at most MaxBan")
	clock.Add(ban.Until.Sub(clock.Now()) + time.Hour) // forgotten
	ban, _ = b.autoBan(BanAddr, "192.0.2.1", "test", time.Minute, time.Hour)
	require.Equal(t, time.Minute, ban.Until.Sub(clock.Now()), "a forgotten key starts again")

	// A manual ban in force is not replaced by an automatic one.
	require.NoError(t, b.Add(bg, Ban{Kind: BanClientID, Value: "m"}))
	_, ok = b.autoBan(BanClientID, "m", "test", time.Minute, time.Hour)
	require.False(t, ok)
	require.Zero(t, b.List()[0].Until)

	for i := range 10 {
		b.autoBan(BanSubject, strings.Repeat("u", i+1), "test", time.Minute, time.Hour)
	}
	auto := 0
	for _, ban := range b.List() {
		if ban.Auto {
			auto++
		}
	}
	require.Equal(t, 3, auto, "automatic bans are bounded")
	require.Len(t, b.List(), 4, "manual bans are not evicted")
}

type memBanStore struct {
	mu    sync.Mutex
	bans  []Ban
	saves int
	fail  error
}

func (m *memBanStore) LoadBans(context.Context) ([]Ban, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Ban(nil), m.bans...), m.fail
}

func (m *memBanStore) SaveBans(_ context.Context, bans []Ban) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.bans = append([]Ban(nil), bans...)
	m.saves++
	return nil
}

func TestBansPersist(t *testing.T) {
	clock := newClock()
	path := filepath.Join(t.TempDir(), "bans")
	b := NewBans(BansConfig{Store: BanFile(path), Clock: clock.Now})
	require.NoError(t, b.Load(bg), "a missing file holds no bans")
	until := clock.Now().Add(time.Hour)
	require.NoError(t, b.Add(bg, Ban{Kind: BanClientID, Value: "a \"quoted\" id", Reason: "r"}))
	require.NoError(t, b.Add(bg, Ban{Kind: BanAddr, Value: "2001:db8::/48", Until: until}))
	b.autoBan(BanSubject, "auto", "flapping", time.Minute, time.Hour)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	b2 := NewBans(BansConfig{Store: BanFile(path), Clock: clock.Now})
	require.NoError(t, b2.Load(bg))
	list := b2.List()
	require.Len(t, list, 2, "automatic bans are not persisted")
	require.Equal(t, "a \"quoted\" id", list[0].Value)
	require.Equal(t, "r", list[0].Reason)
	require.True(t, until.Equal(list[1].Until))

	ok, err := b2.Remove(bg, BanClientID, "a \"quoted\" id")
	require.NoError(t, err)
	require.True(t, ok)
	b3 := NewBans(BansConfig{Store: BanFile(path), Clock: clock.Now})
	require.NoError(t, b3.Load(bg))
	require.Len(t, b3.List(), 1)

	// A failing store keeps the ban in force and reports the error.
	fail := &memBanStore{fail: errors.New("disk full")}
	b4 := NewBans(BansConfig{Store: fail})
	require.ErrorContains(t, b4.Add(bg, Ban{Kind: BanSubject, Value: "s"}), "disk full")
	require.ErrorIs(t, b4.Check(cl("x", "s", "192.0.2.1:1")), mqttsec.ErrBanned)
	require.Error(t, b4.Load(bg))
	require.Len(t, b4.List(), 1, "a failed load changes nothing")

	// Load replaces manual bans, keeps automatic ones.
	ms := &memBanStore{bans: []Ban{{Kind: BanClientID, Value: "loaded"}}}
	b5 := NewBans(BansConfig{Store: ms})
	require.NoError(t, b5.Add(bg, Ban{Kind: BanClientID, Value: "old"}))
	b5.autoBan(BanClientID, "auto", "x", time.Minute, time.Hour)
	ms.bans = []Ban{{Kind: BanClientID, Value: "loaded"}}
	require.NoError(t, b5.Load(bg))
	var vals []string
	for _, ban := range b5.List() {
		vals = append(vals, ban.Value)
	}
	require.Equal(t, []string{"auto", "loaded"}, vals)
	// An invalid stored ban makes Load fail and change nothing.
	ms.bans = []Ban{{Kind: BanAddr, Value: "nope"}}
	require.ErrorIs(t, b5.Load(bg), ErrInvalidBan)
	require.Len(t, b5.List(), 2)
}

func TestParseBans(t *testing.T) {
	in := `# comment

ip 192.0.2.7 never
ip 10.0.0.0/8 2030-01-02T03:04:05Z "scanners"
client_id "dev\t17" never ""
subject	"alice"   2030-01-02T03:04:05.5+01:00 "guessing \"x\""
`
	bans, err := ParseBans(strings.NewReader(in))
	require.NoError(t, err)
	require.Len(t, bans, 4)
	require.Equal(t, "dev\t17", bans[2].Value)
	require.Equal(t, `guessing "x"`, bans[3].Reason)
	require.True(t, bans[3].Until.Equal(time.Date(2030, 1, 2, 2, 4, 5, 5e8, time.UTC)))

	var buf bytes.Buffer
	require.NoError(t, WriteBans(&buf, bans))
	again, err := ParseBans(&buf)
	require.NoError(t, err)
	require.Len(t, again, 4)
	for i := range bans {
		require.True(t, bans[i].Until.Equal(again[i].Until))
		bans[i].Until, again[i].Until = time.Time{}, time.Time{}
	}
	require.Equal(t, bans, again)

	for _, bad := range []string{
		"ip 192.0.2.7",                       // no expiry
		"ip 192.0.2.7 tomorrow",              // bad expiry
		"ip 192.0.2.7 never reason",          // unquoted reason
		"ip 192.0.2.7 never \"a\" extra",     // trailing text
		"client_id dev never",                // unquoted client ID
		"client_id \"\" never",               // empty
		"client_id \"dev never",              // unterminated
		"client_id \"a\"never",               // no separator
		"ip 10.0.0.1/8 never",                // bits past the prefix
		"ip ::ffff:1.2.3.4 never",            // not canonical
		"host 1.2.3.4 never",                 // unknown kind
		"ip 1.2.3.4 never\nip 1.2.3.4 never", // duplicate
		"ip 1.2.3.4 \"never\"",               // quoted expiry
		"subject \"\\xff\" never",            // invalid UTF-8
	} {
		_, err := ParseBans(strings.NewReader(bad))
		require.ErrorIs(t, err, ErrMalformedBans, "%q", bad)
	}
}
