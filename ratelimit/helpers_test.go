package ratelimit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

// needLoopbacks skips the test (fails it under CI) when the system cannot
// use loopback addresses other than 127.0.0.1: Linux routes all of
// 127.0.0.0/8 to the loopback interface, other systems configure only
// 127.0.0.1.
func needLoopbacks(t testing.TB) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err == nil {
		l.Close()
		return
	}
	msg := "this system cannot use loopback addresses but 127.0.0.1: " + err.Error()
	if testenv.CI() {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// rawConnect sends an MQTT v5 CONNECT from the loopback address local
// ("127.0.0.2", say) to addr and returns the CONNACK reason code. On
// success the connection is returned open (closed at t.Cleanup); on a
// refusal it is closed. The Guard sees local as the client's address.
func rawConnect(t testing.TB, addr, local, clientID, user, pass string) (byte, net.Conn, error) {
	d := net.Dialer{Timeout: 20 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, nil, err
	}
	var body []byte
	body = appendStr(body, "MQTT")
	flags := byte(0x02)
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	body = append(body, 5, flags, 0, 30, 0) // level 5, flags, keep-alive 30 s, no properties
	body = appendStr(body, clientID)
	if user != "" {
		body = appendStr(body, user)
	}
	if pass != "" {
		body = appendStr(body, pass)
	}
	pk := append([]byte{0x10}, varint(len(body))...)
	pk = append(pk, body...)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(pk); err != nil {
		c.Close()
		return 0, nil, err
	}
	r := bufio.NewReader(c)
	typ, err := r.ReadByte()
	if err != nil {
		c.Close()
		return 0, nil, fmt.Errorf("read CONNACK: %w", err)
	}
	n, err := readVarint(r)
	if err != nil {
		c.Close()
		return 0, nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		c.Close()
		return 0, nil, err
	}
	if typ != 0x20 || len(b) < 2 {
		c.Close()
		return 0, nil, fmt.Errorf("expected CONNACK, got type 0x%02x len %d", typ, len(b))
	}
	if b[1] != 0 {
		c.Close()
		return b[1], nil, nil
	}
	_ = c.SetDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return 0, c, nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func varint(n int) []byte {
	var out []byte
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			return out
		}
	}
}

func readVarint(r *bufio.Reader) (int, error) {
	n, mul := 0, 1
	for i := 0; i < 4; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		n += int(d&0x7f) * mul
		mul *= 128
		if d&0x80 == 0 {
			return n, nil
		}
	}
	return 0, errors.New("bad remaining length")
}

// passwords returns a Passwords authenticator for users, all with the
// password pw, hashed with bcrypt at cost (one hash shared by all, so
// building it costs one hash; each user's first login still costs a full
// verification, the cache being keyed by user name and password).
func passwords(t testing.TB, cost int, pw string, users ...string) *auth.Passwords {
	t.Helper()
	h, err := auth.HashPassword([]byte(pw), auth.HashOptions{BcryptCost: cost})
	require.NoError(t, err)
	f := auth.NewPasswordFile()
	for _, u := range users {
		require.NoError(t, f.Set(u, h))
	}
	return auth.NewPasswords(f, auth.PasswordsConfig{})
}
