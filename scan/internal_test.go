package scan

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		addr string
		tls  bool
	}{
		{"mqtt://127.0.0.1", "127.0.0.1:1883", false},
		{"tcp://broker:1884", "broker:1884", false},
		{"mqtts://broker", "broker:8883", true},
		{"ssl://[::1]:9000", "[::1]:9000", true},
		{"MQTTS://Broker.Example:8883/", "Broker.Example:8883", true},
	} {
		got, err := parseTarget(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.addr, got.addr, tc.in)
		require.Equal(t, tc.tls, got.tls, tc.in)
	}
	for _, bad := range []string{"", "broker:1883", "http://x", "mqtt://", "mqtt://u:p@h", "mqtt://h:0", "mqtt://h:x", "mqtt://h/a", "mqtt://h?q=1", "ws://h"} {
		_, err := parseTarget(bad)
		require.ErrorIs(t, err, ErrTarget, bad)
	}
}

// frameAll feeds b to a limitConn's framer in chunks of n bytes.
func frameAll(max int, b []byte, n int) error {
	c := &limitConn{max: max}
	for len(b) > 0 {
		k := min(n, len(b))
		if err := c.frame(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

func TestLimitConnFraming(t *testing.T) {
	var stream []byte
	stream = appendPacket(stream, 0x20, []byte{0, 0})                 // CONNACK
	stream = appendPacket(stream, 0x30, bytes.Repeat([]byte{1}, 300)) // PUBLISH, two-byte length
	stream = appendPacket(stream, 0xD0, nil)                          // PINGRESP, empty body
	for _, chunk := range []int{1, 2, 3, 7, 1000} {
		require.NoError(t, frameAll(300, stream, chunk), "chunk %d", chunk)
		require.ErrorIs(t, frameAll(299, stream, chunk), errPacketTooLarge, "chunk %d", chunk)
	}
	// Five length bytes are malformed, whatever the limit.
	require.ErrorIs(t, frameAll(1<<30, []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, 1), errPacketTooLarge)
}

// hostileBroker answers every connection with a CONNACK header that
// claims the largest remaining length MQTT can encode (256 MiB), then
// sends nothing more. It is a fault no real broker produces on purpose.
func hostileBroker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 512)
				if _, err := c.Read(buf); err != nil {
					return
				}
				_, _ = c.Write([]byte{0x20, 0xFF, 0xFF, 0xFF, 0x7F})
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return l.Addr().String()
}

// TestOversizedClaim: neither client allocates what a broker claims; the
// connection fails at once with errPacketTooLarge.
func TestOversizedClaim(t *testing.T) {
	addr := hostileBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, v := range []string{"v3", "v5"} {
		nc, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		lc := newLimitConn(nc, DefaultMaxPacketSize)
		start := time.Now()
		if v == "v3" {
			_, _, err = connect3(ctx, lc, connOpts{clientID: "x"}, time.Second)
		} else {
			_, _, err = connect5(ctx, lc, connOpts{clientID: "x"}, DefaultMaxPacketSize, time.Second)
		}
		require.ErrorIs(t, err, errPacketTooLarge, v)
		require.Less(t, time.Since(start), 5*time.Second, v)
	}

	// A whole scan of such a broker ends, with nothing decided.
	rep, err := Run(ctx, "mqtt://"+addr, Options{Checks: []string{"anonymous-connect", "wildcard-subscribe"}, CheckTimeout: 3 * time.Second})
	require.NoError(t, err)
	for _, f := range rep.Findings {
		require.NotEqual(t, Fail, f.Status, "%s: %s", f.ID, f.Evidence)
	}
}

func TestPrintable(t *testing.T) {
	require.Equal(t, "a?b", printable("a\nb", 10))
	require.Equal(t, "abc...", printable("abcdef", 3))
	require.Equal(t, "?", printable("\xff", 10))
}

func TestConnOptsSummaryHasNoPassword(t *testing.T) {
	s := connOpts{user: "u", userFlag: true, pass: []byte("hunter2"), passFlag: true, keep: true, will: &will{topic: "t"}}.summary()
	require.NotContains(t, s, "hunter2")
	require.Contains(t, s, `user "u"`)
}

// TestSilentBroker: a listener that accepts connections and never answers
// ends the scan at once with ErrUnreachable, instead of every check
// waiting for its deadline.
func TestSilentBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	start := time.Now()
	_, err = Run(context.Background(), "mqtt://"+l.Addr().String(), Options{CheckTimeout: time.Second})
	require.ErrorIs(t, err, ErrUnreachable)
	require.ErrorContains(t, err, "no answer to an MQTT CONNECT")
	require.Less(t, time.Since(start), 5*time.Second)
}
