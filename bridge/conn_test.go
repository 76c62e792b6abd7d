package bridge

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"
)

// refScan is the reference framing check: it parses a whole stream at once.
func refScan(stream []byte, max int) error {
	for i := 0; i < len(stream); {
		i++ // fixed header byte
		length, mult := 0, 1
		for n := 1; ; n++ {
			if i >= len(stream) {
				return nil // incomplete header: nothing to refuse yet
			}
			c := stream[i]
			i++
			length += int(c&0x7f) * mult
			mult *= 128
			if c&0x80 == 0 {
				if 1+n+length > max {
					return ErrPacketTooLarge
				}
				break
			}
			if n == 4 {
				return ErrMalformed
			}
		}
		i += length
	}
	return nil
}

func encodePacket(t testing.TB, cp *packets.ControlPacket) []byte {
	var b bytes.Buffer
	_, err := cp.WriteTo(&b)
	require.NoError(t, err)
	return b.Bytes()
}

func TestFrameGuard(t *testing.T) {
	pub := (&paho.Publish{Topic: "a/b", QoS: 1, PacketID: 7, Payload: bytes.Repeat([]byte("x"), 300)}).Packet()
	pkt := encodePacket(t, &packets.ControlPacket{FixedHeader: packets.FixedHeader{Type: packets.PUBLISH}, Content: pub})
	ping := []byte{0xD0, 0}
	stream := append(append(append([]byte{}, ping...), pkt...), ping...)

	// Every chunking of a stream within the limit passes.
	for split := 0; split <= len(stream); split++ {
		g := frameGuard{max: len(pkt)}
		require.NoError(t, g.scan(stream[:split]))
		require.NoError(t, g.scan(stream[split:]))
		require.Equal(t, uint8(0), g.state)
	}
	// One byte less and the packet is refused at its header, whatever the chunking.
	for split := 0; split <= len(stream); split++ {
		g := frameGuard{max: len(pkt) - 1}
		err := g.scan(stream[:split])
		if err == nil {
			err = g.scan(stream[split:])
		}
		require.ErrorIs(t, err, ErrPacketTooLarge)
	}
	// A 256 MB claim is refused after five bytes.
	g := frameGuard{max: 1 << 20}
	require.ErrorIs(t, g.scan([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}), ErrPacketTooLarge)
	g = frameGuard{max: 1 << 20}
	require.ErrorIs(t, g.scan([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}), ErrMalformed)
}

// TestConnMarksPublishWrites checks that the conn reports the PUBLISH
// packets paho writes, and no other packet.
func TestConnMarksPublishWrites(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = bytes.NewBuffer(nil).ReadFrom(b) }()
	n := 0
	c := newConn(a, 1024, func() { n++ })
	for _, cp := range []*packets.ControlPacket{
		{FixedHeader: packets.FixedHeader{Type: packets.PINGREQ}, Content: &packets.Pingreq{}},
		{FixedHeader: packets.FixedHeader{Type: packets.PUBLISH}, Content: (&paho.Publish{Topic: "t", Payload: []byte("p")}).Packet()},
		{FixedHeader: packets.FixedHeader{Type: packets.PUBACK}, Content: &packets.Puback{PacketID: 1, Properties: &packets.Properties{}}},
		{FixedHeader: packets.FixedHeader{Type: packets.PUBLISH}, Content: (&paho.Publish{Topic: "t", QoS: 1, PacketID: 2}).Packet()},
	} {
		_, err := cp.WriteTo(c)
		require.NoError(t, err)
	}
	require.Equal(t, 2, n)
}

func TestConnRefusesOversizedPacket(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := newConn(a, 64, nil)
	go func() { _, _ = b.Write([]byte{0x30, 0x80, 0x80, 0x40}) }() // claims 1 MiB
	buf := make([]byte, 16)
	_, err := c.Read(buf)
	require.ErrorIs(t, err, ErrPacketTooLarge)
	_, err = c.Read(buf)
	require.ErrorIs(t, err, ErrPacketTooLarge, "the error sticks")
}

func TestQueueOrderAndLimits(t *testing.T) {
	q := newQueue(3, 1000)
	mk := func(qos byte, size int) *item { return &item{qos: qos, size: size, msg: &paho.Publish{}} }
	a, b, c := mk(1, 10), mk(1, 10), mk(1, 10)
	for _, it := range []*item{a, b, c} {
		require.Equal(t, admitted, q.admit(it))
	}
	require.Equal(t, full, q.admit(mk(1, 10)), "QoS 1 beyond Buffer")
	require.Equal(t, admitted, q.admit(mk(0, 10)))
	require.Equal(t, admitted, q.admit(mk(0, 10)))
	require.Equal(t, admitted, q.admit(mk(0, 10)))
	require.Equal(t, dropped, q.admit(mk(0, 10)), "QoS 0 beyond Buffer")
	require.Equal(t, 6, q.held())

	ctx := context.Background()
	require.Same(t, a, q.next(ctx, ctx))
	require.Same(t, b, q.next(ctx, ctx))
	q.requeue(b)
	q.requeue(a)
	require.Same(t, a, q.next(ctx, ctx), "retries first, in order")
	require.Same(t, b, q.next(ctx, ctx))
	require.Same(t, c, q.next(ctx, ctx))
	q.done(a)
	require.Equal(t, 5, q.held())

	st := &item{status: true, qos: 1, size: 2, msg: &paho.Publish{}}
	q.admit(st)
	require.Same(t, st, q.next(ctx, ctx), "status first")

	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	for q.next(ctx, cctx) != nil {
	}
	require.True(t, errors.Is(cctx.Err(), context.DeadlineExceeded))

	// Bytes: a message larger than the limit still moves alone.
	q = newQueue(10, 100)
	require.Equal(t, admitted, q.admit(mk(1, 500)))
	require.Equal(t, full, q.admit(mk(1, 1)))
	require.Equal(t, dropped, q.admit(mk(0, 1)))
}

func TestQueuePurge(t *testing.T) {
	q := newQueue(10, 1000)
	mk := func(gen uint64, qos byte) *item { return &item{gen: gen, qos: qos, size: 1, msg: &paho.Publish{}} }
	old1, old0, cur := mk(1, 1), mk(1, 0), mk(2, 1)
	inflight := mk(1, 1)
	for _, it := range []*item{inflight, old1, old0, cur} {
		q.admit(it)
	}
	ctx := context.Background()
	require.Same(t, inflight, q.next(ctx, ctx))
	retried := mk(1, 2)
	q.admit(retried)
	q.requeue(q.next(ctx, ctx)) // old1 goes to the retry list
	require.Equal(t, 2, q.purge(2), "old QoS 1 and 2 messages not in flight")
	require.Equal(t, 3, q.held())
	require.Same(t, old0, q.next(ctx, ctx))
	require.Same(t, cur, q.next(ctx, ctx))
}
