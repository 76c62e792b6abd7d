package minibroker

import (
	"bufio"
	"bytes"
	"errors"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
)

// TestValidCodeAgainstMappings checks every code the mqttsec mappings can
// produce for each packet against the broker's own tables, and that the
// tables refuse what the specification does not allow.
func TestValidCodeAgainstMappings(t *testing.T) {
	for c := range 256 {
		code := mqttsec.ReasonCode(c)
		if code >= 0x80 || code == 0 {
			require.True(t, ValidCode(v5, packets.CONNACK, byte(code.ForConnack())), "CONNACK %s", code)
			require.True(t, ValidCode(v5, packets.PUBACK, byte(code.ForPuback())), "PUBACK %s", code)
			require.True(t, ValidCode(v5, packets.PUBREC, byte(code.ForPuback())), "PUBREC %s", code)
			require.True(t, ValidCode(v5, packets.SUBACK, byte(code.ForSuback())), "SUBACK %s", code)
			require.True(t, ValidCode(v5, packets.DISCONNECT, byte(code.ForDisconnect())), "DISCONNECT %s", code)
			require.True(t, ValidCode(v311, packets.CONNACK, code.V3Connack()), "v3 CONNACK %s", code)
			require.True(t, ValidCode(v311, packets.SUBACK, code.V3Suback()), "v3 SUBACK %s", code)
		}
	}
	for _, tc := range []struct {
		version, typ, code byte
	}{
		{v5, packets.PUBACK, 0x95}, {v5, packets.PUBACK, 0x96}, {v5, packets.PUBACK, 0x8A}, {v5, packets.PUBACK, 0xA0},
		{v5, packets.PUBACK, 0x86}, {v5, packets.CONNACK, 0x98}, {v5, packets.CONNACK, 0x96}, {v5, packets.CONNACK, 0xA0},
		{v5, packets.SUBACK, 0x86}, {v5, packets.SUBACK, 0x96}, {v5, packets.SUBACK, 0x8A},
		{v5, packets.DISCONNECT, 0x04}, {v5, packets.DISCONNECT, 0x86}, {v5, packets.DISCONNECT, 0x8A},
		{v5, packets.DISCONNECT, 0x85}, {v5, packets.UNSUBACK, 0x10}, {v5, packets.PUBCOMP, 0x80},
		{v311, packets.CONNACK, 0x87}, {v311, packets.CONNACK, 0x06}, {v311, packets.SUBACK, 0x87},
		{v311, packets.PUBACK, 0x00}, {v5, packets.PUBLISH, 0x00},
	} {
		require.False(t, ValidCode(tc.version, tc.typ, tc.code), "%+v", tc)
	}
}

func TestCheckCodeReplaces(t *testing.T) {
	b := &Broker{}
	b.o.defaults()
	b.log = b.o.Logger
	require.Equal(t, byte(0x87), b.checkCode(v5, packets.PUBACK, 0x87))
	require.Equal(t, byte(0x80), b.checkCode(v5, packets.PUBACK, 0x96))
	require.Equal(t, byte(0x05), b.checkCode(v311, packets.CONNACK, 0x87))
	require.Equal(t, int64(2), b.invalid.Load())
}

func TestReadFrameBounds(t *testing.T) {
	read := func(b []byte, max int) error {
		_, _, err := readFrame(bufio.NewReader(bytes.NewReader(b)), max)
		return err
	}
	require.ErrorIs(t, read([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}, 1<<20), errTooLarge)
	require.ErrorIs(t, read([]byte{0x10, 0x7f}, 128), errTooLarge) // 2 + 127 > 128
	require.NoError(t, read(append([]byte{0x10, 0x7e}, make([]byte, 126)...), 128))
	require.ErrorIs(t, read([]byte{0x10, 0x80, 0x80, 0x80, 0x80, 0x01}, 1<<20), errMalformed)
}

// FuzzDecode feeds arbitrary packets to the decoders: they never panic,
// and every error is one of the wire errors (which end the connection).
func FuzzDecode(f *testing.F) {
	f.Add(byte(0), []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x1e, 0x00, 0x04, 't', 'e', 's', 't'})
	f.Add(byte(0), encode(&packets.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: "c", WillFlag: true,
		WillTopic: "w", WillMessage: []byte("x"), WillProperties: &packets.Properties{}, Properties: &packets.Properties{}}))
	f.Add(byte(5), []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'})
	f.Add(byte(5), []byte{0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x01})
	f.Add(byte(4), []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x01})
	f.Add(byte(4), []byte{0x32, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 'x'})
	f.Add(byte(5), []byte{0xa2, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00})
	f.Add(byte(5), []byte{0xe0, 0x02, 0x04, 0x00})
	catchPanics = false
	defer func() { catchPanics = true }()
	f.Fuzz(func(t *testing.T, version byte, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		h, body, err := readFrame(r, 4096)
		if err != nil {
			return
		}
		var pk any
		if h>>4 == packets.CONNECT {
			pk, err = decodeConnect(h, body)
		} else {
			pk, err = decode(version%3+3, h, body)
		}
		if err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, errProtocol) {
				t.Fatalf("error %v is not a wire error", err)
			}
			return
		}
		if pk == nil {
			t.Fatal("no packet and no error")
		}
	})
}
