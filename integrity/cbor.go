package integrity

import (
	"encoding/binary"
	"errors"
)

// The few CBOR (RFC 8949) pieces this package writes and pre-checks by
// hand: fixed-shape headers and envelopes, in preferred (shortest)
// encoding, definite lengths only.

// CBOR major types.
const (
	majUint  = 0
	majNeg   = 1
	majBytes = 2
	majText  = 3
	majArray = 4
	majMap   = 5
	majTag   = 6
	majOther = 7
)

// appendHead appends the head of a data item of major type maj with
// argument v, in the shortest form.
func appendHead(b []byte, maj byte, v uint64) []byte {
	m := maj << 5
	switch {
	case v < 24:
		return append(b, m|byte(v))
	case v <= 0xff:
		return append(b, m|24, byte(v))
	case v <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(v))
	case v <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), v)
}

// appendInt appends a CBOR integer.
func appendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return appendHead(b, majUint, uint64(v))
	}
	return appendHead(b, majNeg, uint64(-1-v))
}

func appendBytes(b []byte, p []byte) []byte {
	return append(appendHead(b, majBytes, uint64(len(p))), p...)
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, majText, uint64(len(s))), s...)
}

var errCBOR = errors.New("malformed CBOR")

// readHead reads the head of the data item at the start of b: its major
// type and argument, and the rest of b. Indefinite lengths, reserved
// additional information and arguments not in their shortest form are
// errors.
func readHead(b []byte) (maj byte, v uint64, rest []byte, err error) {
	if len(b) == 0 {
		return 0, 0, nil, errCBOR
	}
	maj, ai := b[0]>>5, b[0]&0x1f
	b = b[1:]
	// Only the shortest form of each argument is accepted, as this
	// package writes it: one encoding per value.
	switch {
	case ai < 24:
		return maj, uint64(ai), b, nil
	case ai == 24 && len(b) >= 1 && b[0] >= 24:
		return maj, uint64(b[0]), b[1:], nil
	case ai == 25 && len(b) >= 2 && b[0] != 0:
		return maj, uint64(binary.BigEndian.Uint16(b)), b[2:], nil
	case ai == 26 && len(b) >= 4 && (b[0] != 0 || b[1] != 0):
		return maj, uint64(binary.BigEndian.Uint32(b)), b[4:], nil
	case ai == 27 && len(b) >= 8 && (b[0] != 0 || b[1] != 0 || b[2] != 0 || b[3] != 0):
		return maj, binary.BigEndian.Uint64(b), b[8:], nil
	}
	return 0, 0, nil, errCBOR
}

// readBytes reads a byte string of at most max bytes; it returns a slice
// of b, not a copy.
func readBytes(b []byte, max int) (p, rest []byte, err error) {
	maj, n, rest, err := readHead(b)
	if err != nil || maj != majBytes || n > uint64(max) || n > uint64(len(rest)) {
		return nil, nil, errCBOR
	}
	return rest[:n], rest[n:], nil
}

// readInt reads a CBOR integer that fits in an int64.
func readInt(b []byte) (int64, []byte, error) {
	maj, v, rest, err := readHead(b)
	if err != nil || v > 1<<63-1 {
		return 0, nil, errCBOR
	}
	switch maj {
	case majUint:
		return int64(v), rest, nil
	case majNeg:
		return -1 - int64(v), rest, nil
	}
	return 0, nil, errCBOR
}

// readUint reads an unsigned integer that fits in an int64 (go-cose decodes
// header integers as int64, so larger values are refused everywhere).
func readUint(b []byte) (uint64, []byte, error) {
	maj, v, rest, err := readHead(b)
	if err != nil || maj != majUint || v > 1<<63-1 {
		return 0, nil, errCBOR
	}
	return v, rest, nil
}
