package mochi

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiDecode runs mochi v2.7.9's SUBSCRIBE decoder on a v5 body and reports
// whether it panicked, and its error otherwise.
func mochiDecode(body []byte) (panicked bool, err error) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	pk := packets.Packet{ProtocolVersion: 5, FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1, Remaining: len(body)}}
	return false, pk.SubscribeDecode(append([]byte(nil), body...))
}

// FuzzSubscribeV5OK checks subscribeV5OK against mochi's decoder: it must
// refuse every body that panics mochi, and never a body mochi decodes.
func FuzzSubscribeV5OK(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 1, '#', 0})                    // one filter, options
	f.Add([]byte{0, 1, 0, 0, 1, '#'})                       // missing options: panics mochi
	f.Add([]byte{0, 1, 0, 0, 1, '#', 1, 0, 1, '+'})         // second filter lacks options
	f.Add([]byte{0, 1, 2, 0x0B, 5, 0, 3, 'a', '/', 'b', 2}) // subscription identifier property
	f.Add([]byte{0, 1, 0x80, 0x80, 0x80, 0x80, 0x01})       // overlong properties length
	f.Add([]byte{0, 1, 0, 0xFF, 0xFF})                      // filter length past the end
	f.Add([]byte{0, 1})                                     // no filters
	f.Add([]byte{0})                                        // short packet id
	f.Fuzz(func(t *testing.T, body []byte) {
		ok := subscribeV5OK(body)
		p, err := mochiDecode(body)
		if ok && p {
			t.Fatalf("accepted a body that panics mochi: %x", body)
		}
		if !ok && !p && err == nil {
			t.Fatalf("refused a body mochi decodes: %x", body)
		}
	})
}

func frame(typ byte, body []byte) []byte {
	pk := []byte{typ}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if n == 0 {
			break
		}
	}
	return append(pk, body...)
}

func TestScanner(t *testing.T) {
	connect := func(level byte) []byte {
		return frame(0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', level, 0x02, 0, 30, 0, 0, 1, 'x'})
	}
	bigPub := frame(0x30, append([]byte{0, 3, 'a', '/', 'b'}, bytes.Repeat([]byte("p"), 70000)...))
	badSub := frame(0x82, []byte{0, 1, 0, 0, 1, '#'})
	goodSub := frame(0x82, []byte{0, 1, 0, 0, 1, '#', 1})
	v3Sub := frame(0x82, []byte{0, 1, 0, 1, '#', 1})
	for _, tc := range []struct {
		name   string
		stream []byte
		bad    bool
	}{
		{"v5 good", bytes.Join([][]byte{connect(5), bigPub, goodSub, frame(0xC0, nil)}, nil), false},
		{"v5 bad subscribe", bytes.Join([][]byte{connect(5), bigPub, badSub}, nil), true},
		{"v5 bad subscribe after good", bytes.Join([][]byte{connect(5), goodSub, badSub, bigPub}, nil), true},
		{"v3 layout is not checked as v5", bytes.Join([][]byte{connect(4), v3Sub, badSub}, nil), false},
		{"MQIsdp", bytes.Join([][]byte{frame(0x10, []byte{0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 30, 0, 1, 'x'}), badSub}, nil), false},
		{"length overflow", []byte{0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Any split of the stream into reads gives the same verdict.
			for _, chunk := range []int{1, 2, 3, 7, 100, 4096, len(tc.stream)} {
				var s scanner
				var err error
				for b := tc.stream; len(b) > 0 && err == nil; {
					k := min(chunk, len(b))
					err = s.feed(b[:k])
					b = b[k:]
				}
				if (err != nil) != tc.bad {
					t.Fatalf("chunk %d: err = %v, want bad = %v", chunk, err, tc.bad)
				}
			}
		})
	}
}

func BenchmarkScannerPublish(b *testing.B) {
	var s scanner
	_ = s.feed(frame(0x10, []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, 1, 'x'}))
	pub := frame(0x30, append([]byte{0, 3, 'a', '/', 'b', 0}, bytes.Repeat([]byte("p"), 64)...))
	stream := bytes.Repeat(pub, 30) // about one 2 KiB read of mochi's buffer
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.feed(stream); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzScannerBudget feeds arbitrary bytes, split at arbitrary points, to
// a scanner with a small inbound budget: it never panics, never holds more
// than the budget, and gives everything back.
func FuzzScannerBudget(f *testing.F) {
	f.Add([]byte{0x30, 0x80, 0x80, 0x01, 0, 1, 't'}, uint8(3))                   // a 16 KiB PUBLISH header
	f.Add(append([]byte{0x30, 0xFF, 0xFF, 0x03}, make([]byte, 64)...), uint8(2)) // larger than the budget
	f.Add([]byte{0x10, 0, 0x30, 0x02, 0, 0, 0xC0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		in := &inbound{max: 40 << 10}
		sc := scanner{in: in}
		step := int(split%16) + 1
		for len(data) > 0 {
			n := min(step, len(data))
			err := sc.feed(data[:n])
			data = data[n:]
			if errors.Is(err, errNoBudget) {
				// Nothing else holds the budget: the packet does not fit.
				if sc.resume() == nil {
					t.Fatal("resume took a budget that feed could not")
				}
				break
			}
			if err != nil {
				break
			}
			if u := in.used.Load(); u < 0 || u > in.max {
				t.Fatalf("budget used %d of %d", u, in.max)
			}
		}
		sc.giveBack()
		if u := in.used.Load(); u != 0 {
			t.Fatalf("budget not given back: %d", u)
		}
	})
}
