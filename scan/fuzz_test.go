package scan

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

// FuzzInbound feeds what a hostile broker might send through the
// scanner's inbound path: the framing limit, then the MQTT 3.1.1 packet
// reader and PUBLISH parser. Nothing panics, the framer refuses exactly the
// packets larger than the limit (or with a malformed length), and no packet
// read is larger than the limit.
func FuzzInbound(f *testing.F) {
	f.Add([]byte{0x20, 0x02, 0x00, 0x00}, uint16(64), uint8(1))                                  // CONNACK
	f.Add(appendPacket(nil, 0x32, []byte{0, 3, 'a', '/', 'b', 0, 1, 'x'}), uint16(64), uint8(3)) // PUBLISH QoS 1
	f.Add([]byte{0x20, 0xFF, 0xFF, 0xFF, 0x7F}, uint16(1024), uint8(2))                          // 256 MiB claim
	f.Add([]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, uint16(1024), uint8(1))                    // five length bytes
	f.Add([]byte{0x30, 0x05, 0x00, 0x09, 'a'}, uint16(1024), uint8(7))                           // topic longer than the packet
	f.Fuzz(func(t *testing.T, data []byte, max uint16, chunk uint8) {
		limit := int(max)
		c := &limitConn{max: limit}
		n := int(chunk)%16 + 1
		var ferr error
		for b := data; len(b) > 0 && ferr == nil; {
			k := min(n, len(b))
			ferr = c.frame(b[:k])
			b = b[k:]
		}
		if ferr != nil && !errors.Is(ferr, errPacketTooLarge) {
			t.Fatalf("unexpected framing error %v", ferr)
		}
		if ferr != nil {
			return // the connection ends here: nothing is read
		}
		// In production readPacket reads only what the framer let through.
		br := bufio.NewReader(bytes.NewReader(data))
		for {
			typ, body, err := readPacket(br)
			if err != nil {
				break
			}
			if len(body) > limit {
				t.Fatalf("a %d-byte packet passed a %d-byte limit", len(body), limit)
			}
			if typ>>4 == 3 {
				if m, _, ok := parsePublish3(typ, body); ok && len(m.topic)+len(m.payload) > len(body) {
					t.Fatal("PUBLISH parts larger than the packet")
				}
			}
		}
	})
}
