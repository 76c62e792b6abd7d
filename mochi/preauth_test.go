package mochi_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/mochi"
)

// serveHardened serves a guarded mochi broker on a loopback listener
// wrapped with HardenWith(cfg) and returns its address and the listener.
func serveHardened(t *testing.T, authn mqttsec.Authenticator, cfg mochi.HardenConfig, opts ...mochi.Option) (string, listeners.Listener) {
	t.Helper()
	g := mqttsec.New(mqttsec.Config{Authenticator: authn, Events: &recorder{}})
	s := newServer()
	_, err := mochi.NewHook(g, s, append([]mochi.Option{mochi.WithLogger(discard())}, opts...)...)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	hl := mochi.HardenWith(listeners.NewTCP(listeners.Config{ID: "h", Address: addr}), cfg)
	require.NoError(t, s.AddListener(hl))
	require.NoError(t, s.Serve())
	t.Cleanup(func() {
		// mochi v2.7.9 races Close against a connection still being set
		// up: close once every connection was answered or closed.
		require.Eventually(t, func() bool { return mochi.Pending(hl) == 0 }, testbroker.Timeout, 5*time.Millisecond)
		_ = s.Close()
	})
	return addr, hl
}

var anyone = mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
	return &mqttsec.Identity{Subject: "u-" + cl.ID, Method: mqttsec.MethodPassword}, nil
})

// connectPacket is an MQTT 3.1.1 CONNECT of client id with a password of
// n bytes.
func connectPacket(id string, n int) []byte {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 30}
	for _, s := range []string{id, "user", string(make([]byte, n))} {
		body = binary.BigEndian.AppendUint16(body, uint16(len(s)))
		body = append(body, s...)
	}
	return frameRaw(0x10, body)
}

func frameRaw(h byte, body []byte) []byte {
	out := []byte{h}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return append(out, body...)
		}
	}
}

// closedSoon reports whether the server closes c within d (rather than
// the read timing out).
func closedSoon(t *testing.T, c net.Conn, d time.Duration) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 64))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestConnectTooLarge: a CONNECT that claims more than the pre-auth limit
// closes the connection before its body is read (mochi would allocate the
// claim), whatever the packet limit of authenticated clients.
func TestConnectTooLarge(t *testing.T) {
	addr, _ := serveHardened(t, anyone, mochi.HardenConfig{MaxConnectSize: 1 << 10})
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte{0x10, 0xFF, 0xB0, 0x17}) // remaining length 383,103
	require.NoError(t, err)
	require.True(t, closedSoon(t, c, 3*time.Second))

	ok, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer ok.Close()
	_, err = ok.Write(connectPacket("small", 512))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_ = ok.SetReadDeadline(time.Now().Add(testbroker.Timeout))
	_, err = io.ReadFull(ok, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2, 0, 0}, ack, "a CONNECT under the limit is answered")
}

// TestPendingBounds: connections that have not been answered are bounded
// per IP and in all; an answered connection no longer counts.
func TestPendingBounds(t *testing.T) {
	addr, hl := serveHardened(t, anyone, mochi.HardenConfig{MaxPending: 4, MaxPendingPerIP: 2, ConnectTimeout: 10 * time.Second})
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		c, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	idle := []net.Conn{dialFrom("127.0.0.1"), dialFrom("127.0.0.1")}
	require.Eventually(t, func() bool { return mochi.Pending(hl) == 2 }, testbroker.Timeout, 5*time.Millisecond)
	require.True(t, closedSoon(t, dialFrom("127.0.0.1"), 3*time.Second), "a third idle socket from one IP is closed at once")
	idle = append(idle, dialFrom("127.0.0.2"), dialFrom("127.0.0.3"))
	require.Eventually(t, func() bool { return mochi.Pending(hl) == 4 }, testbroker.Timeout, 5*time.Millisecond)
	require.True(t, closedSoon(t, dialFrom("127.0.0.4"), 3*time.Second), "the listener's bound holds across IPs")

	// One of them connects: once answered it no longer counts.
	_, err := idle[0].Write(connectPacket("c0", 8))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_ = idle[0].SetReadDeadline(time.Now().Add(testbroker.Timeout))
	_, err = io.ReadFull(idle[0], ack)
	require.NoError(t, err)
	require.Equal(t, byte(0), ack[3])
	require.Eventually(t, func() bool { return mochi.Pending(hl) == 3 }, testbroker.Timeout, 5*time.Millisecond)
	fresh := dialFrom("127.0.0.1")
	require.False(t, closedSoon(t, fresh, 300*time.Millisecond), "a slot is free again")
	// Closing frees the slot too.
	for _, c := range idle[1:] {
		require.NoError(t, c.Close())
	}
	require.Eventually(t, func() bool { return mochi.Pending(hl) == 1 }, testbroker.Timeout, 5*time.Millisecond)
}

// TestSlowAuthenticationAnswered: a CONNECT that waited past the
// listener's connect timeout (for a verification slot, say) and is then
// refused still gets its CONNACK, with the reason (it used to get EOF: the
// pre-CONNECT deadline had ended the connection before the hook answered).
func TestSlowAuthenticationAnswered(t *testing.T) {
	busy := mqttsec.AuthenticatorFunc(func(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
		select {
		case <-time.After(600 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil, mqttsec.ErrServerBusy
	})
	addr, _ := serveHardened(t, busy, mochi.HardenConfig{ConnectTimeout: 400 * time.Millisecond},
		mochi.WithConnectTimeout(700*time.Millisecond))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write(connectPacket("slow", 8))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(testbroker.Timeout))
	_, err = io.ReadFull(c, ack)
	require.NoError(t, err, "the CONNACK arrives")
	require.Equal(t, []byte{0x20, 2, 0, mqttsec.V3ServerUnavailable}, ack, "0x89 server busy, as a v3 client reads it")
}

// TestPreAuthMemoryBounded: 1,000 sockets that each claim a 383 kB CONNECT
// and never send it cost the broker nothing they claim: the claims are
// refused and the sockets beyond the pending bounds are closed.
func TestPreAuthMemoryBounded(t *testing.T) {
	addr, hl := serveHardened(t, anyone, mochi.HardenConfig{})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(i/200), byte(1+i%200))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			continue // the machine's own limits; what matters is what the broker holds
		}
		conns = append(conns, c)
		_, _ = c.Write([]byte{0x10, 0xFF, 0xB0, 0x17})
	}
	require.Eventually(t, func() bool { return mochi.Pending(hl) == 0 }, testbroker.Timeout, 10*time.Millisecond,
		"every oversized CONNECT was refused")
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	require.Less(t, growth, int64(16<<20), "heap grew by %d bytes for %d claims of 383 kB (%d MB claimed)", growth, len(conns), len(conns)*383/1000)
}

// connected dials addr and completes an MQTT 3.1.1 CONNECT as id.
func connected(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Write(connectPacket(id, 8))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(testbroker.Timeout))
	_, err = io.ReadFull(c, ack)
	require.NoError(t, err)
	require.Equal(t, byte(0), ack[3])
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// publishHeader is the start of an MQTT 3.1.1 QoS 0 PUBLISH to topic "t"
// whose payload is n bytes long: its fixed header, the topic, and nothing
// of the payload.
func publishHeader(n int) []byte {
	body := append([]byte{0, 1, 't'}, make([]byte, n)...)
	full := frameRaw(0x30, body)
	return full[:len(full)-n]
}

// TestTrickledPackets: authenticated clients that send the headers of
// large packets and trickle (or never send) the rest do not make the
// broker allocate what the headers claim beyond the inbound budget, and
// are closed after the packet timeout; a client sending small packets is
// not held up.
func TestTrickledPackets(t *testing.T) {
	addr, _ := serveHardened(t, anyone, mochi.HardenConfig{InboundBudget: 1 << 20, PacketTimeout: time.Second})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const n, size = 40, 200_000 // 8 MB claimed, 1 MiB allowed
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = connected(t, addr, fmt.Sprintf("trickle-%d", i))
		_, err := conns[i].Write(publishHeader(size))
		require.NoError(t, err)
	}
	time.Sleep(300 * time.Millisecond) // every header is in
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	growth := int64(during.HeapInuse) - int64(before.HeapInuse)
	require.Less(t, growth, int64(4<<20), "heap grew by %d bytes while %d packets of %d bytes were announced", growth, n, size)

	// A client with small packets is not held up.
	small := connected(t, addr, "small")
	_, err := small.Write(frameRaw(0xC0, nil)) // PINGREQ
	require.NoError(t, err)
	resp := make([]byte, 2)
	_ = small.SetReadDeadline(time.Now().Add(testbroker.Timeout))
	_, err = io.ReadFull(small, resp)
	require.NoError(t, err)
	require.Equal(t, []byte{0xD0, 0}, resp)

	// The trickling clients are closed after the packet timeout.
	for i, c := range conns {
		require.True(t, closedSoon(t, c, testbroker.Timeout), "trickle-%d", i)
	}
}

// TestLargePacketWaitsForBudget: a well-behaved large packet that does not
// fit the inbound budget at once waits, and goes through once the packets
// ahead of it are in.
func TestLargePacketWaitsForBudget(t *testing.T) {
	addr, _ := serveHardened(t, anyone, mochi.HardenConfig{InboundBudget: 300_000, PacketTimeout: 5 * time.Second})
	slow := connected(t, addr, "slow")
	_, err := slow.Write(publishHeader(200_000)) // holds 200 kB of the budget
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	fast := connected(t, addr, "fast")
	pkt := append(publishHeader(200_000), make([]byte, 200_000)...)
	go func() { _, _ = fast.Write(pkt) }()
	time.Sleep(300 * time.Millisecond)
	_, err = slow.Write(make([]byte, 200_000)) // the slow packet completes
	require.NoError(t, err)
	// Then the fast one is read: a PINGREQ after it is answered.
	_, err = fast.Write(frameRaw(0xC0, nil))
	require.NoError(t, err)
	resp := make([]byte, 2)
	_ = fast.SetReadDeadline(time.Now().Add(testbroker.Timeout))
	_, err = io.ReadFull(fast, resp)
	require.NoError(t, err, "the waiting packet went through")
	require.Equal(t, []byte{0xD0, 0}, resp)
}
