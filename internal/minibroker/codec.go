package minibroker

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/packets"
)

// The MQTT protocol levels the broker speaks.
const (
	v31  byte = 3 // MQTT 3.1 ("MQIsdp")
	v311 byte = 4 // MQTT 3.1.1
	v5   byte = 5
)

// Decoding errors. Each ends the connection; for an MQTT v5 client the
// DISCONNECT carries the code of [codeOfWireError].
var (
	errTooLarge  = errors.New("minibroker: packet too large")
	errMalformed = errors.New("minibroker: malformed packet")
	errProtocol  = errors.New("minibroker: protocol error")
)

// maxRemaining is the largest remaining length MQTT can encode.
const maxRemaining = 268435455

// readFrame reads one control packet: the fixed header byte and the body
// (variable header and payload). A packet whose total size exceeds max is
// refused with errTooLarge before its body is read, so a peer cannot make
// the broker allocate more than max bytes.
func readFrame(r *bufio.Reader, max int) (header byte, body []byte, err error) {
	header, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul, size := 0, 1, 1
	for i := 0; ; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		size++
		n += int(d&0x7f) * mul
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
		}
		mul *= 128
	}
	if n > maxRemaining || size+n > max {
		return 0, nil, fmt.Errorf("%w: %d bytes, at most %d", errTooLarge, size+n, max)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return header, body, nil
}

// decodeConnect decodes a CONNECT body of any protocol level. An
// unsupported level is returned as the packet's ProtocolVersion with a nil
// error when the name is a known MQTT name, so that the caller can answer
// it with a CONNACK; anything that does not parse is errMalformed.
func decodeConnect(header byte, body []byte) (cp *packets.Connect, err error) {
	defer recoverMalformed(&err)
	if header != packets.CONNECT<<4 {
		return nil, fmt.Errorf("%w: CONNECT flags %#x", errMalformed, header&0x0f)
	}
	d := decoder{b: body}
	name := d.string()
	level := d.byte()
	if d.err != nil {
		return nil, d.err
	}
	switch {
	case name == "MQTT" && (level == v311 || level == v5), name == "MQIsdp" && level == v31:
	case name == "MQTT" || name == "MQIsdp":
		return &packets.Connect{ProtocolName: name, ProtocolVersion: level}, nil
	default:
		return nil, fmt.Errorf("%w: protocol name %q", errMalformed, name)
	}
	if level == v5 {
		cp = &packets.Connect{Properties: &packets.Properties{}}
		buf := bytes.NewBuffer(body)
		if err := cp.Unpack(buf); err != nil {
			return nil, fmt.Errorf("%w: CONNECT: %w", errMalformed, err)
		}
		if buf.Len() != 0 {
			return nil, fmt.Errorf("%w: %d trailing bytes in CONNECT", errMalformed, buf.Len())
		}
		if cp.WillProperties == nil {
			cp.WillProperties = &packets.Properties{}
		}
	} else {
		cp = &packets.Connect{ProtocolName: name, ProtocolVersion: level,
			Properties: &packets.Properties{}, WillProperties: &packets.Properties{}}
		cp.UnpackFlags(d.byte())
		cp.KeepAlive = d.uint16()
		cp.ClientID = d.string()
		if cp.WillFlag {
			cp.WillTopic = d.string()
			cp.WillMessage = d.binary()
		}
		if cp.UsernameFlag {
			cp.Username = d.string()
		}
		if cp.PasswordFlag {
			cp.Password = d.binary()
		}
		if err := d.end(); err != nil {
			return nil, err
		}
	}
	// The connect flags: reserved bit 0 is zero, a will QoS is 0 to 2, and
	// without a will neither its QoS nor its retain flag is set
	// [MQTT-3.1.2-3], [MQTT-3.1.2-11], [MQTT-3.1.2-13].
	flags := cp.PackFlags()
	raw := body[len(name)+3]
	if raw&0x01 != 0 || raw != flags || cp.WillQOS > 2 {
		return nil, fmt.Errorf("%w: CONNECT flags %#x", errMalformed, raw)
	}
	if level != v5 && cp.PasswordFlag && !cp.UsernameFlag {
		return nil, fmt.Errorf("%w: password without user name", errMalformed)
	}
	if !utf8.ValidString(cp.ClientID) || !utf8.ValidString(cp.Username) {
		return nil, fmt.Errorf("%w: client ID or user name is not UTF-8", errMalformed)
	}
	return cp, nil
}

// decode decodes a packet sent by a client after CONNECT, for protocol
// level version. It returns one of the paho packets types.
func decode(version, header byte, body []byte) (pk packets.Packet, err error) {
	defer recoverMalformed(&err)
	typ, flags := header>>4, header&0x0f
	want := byte(0)
	if typ == packets.PUBREL || typ == packets.SUBSCRIBE || typ == packets.UNSUBSCRIBE {
		want = 2
	}
	if typ != packets.PUBLISH && flags != want {
		return nil, fmt.Errorf("%w: flags %#x for packet type %d", errMalformed, flags, typ)
	}
	if version != v5 {
		return decodeV3(typ, flags, body)
	}
	buf := bytes.NewBuffer(body)
	switch typ {
	case packets.PUBLISH:
		p := &packets.Publish{Properties: &packets.Properties{}, QoS: flags >> 1 & 3,
			Duplicate: flags&8 != 0, Retain: flags&1 != 0}
		if p.QoS > 2 {
			return nil, fmt.Errorf("%w: PUBLISH QoS 3", errMalformed)
		}
		pk = p
	case packets.PUBACK:
		pk = &packets.Puback{Properties: &packets.Properties{}}
	case packets.PUBREC:
		pk = &packets.Pubrec{Properties: &packets.Properties{}}
	case packets.PUBREL:
		pk = &packets.Pubrel{Properties: &packets.Properties{}}
	case packets.PUBCOMP:
		pk = &packets.Pubcomp{Properties: &packets.Properties{}}
	case packets.SUBSCRIBE:
		pk = &packets.Subscribe{Properties: &packets.Properties{}}
	case packets.UNSUBSCRIBE:
		pk = &packets.Unsubscribe{Properties: &packets.Properties{}}
	case packets.PINGREQ:
		if len(body) != 0 {
			return nil, fmt.Errorf("%w: PINGREQ with a body", errMalformed)
		}
		return &packets.Pingreq{}, nil
	case packets.DISCONNECT:
		d := &packets.Disconnect{Properties: &packets.Properties{}}
		if len(body) == 0 {
			return d, nil // reason 0x00, no properties [MQTT-3.14.2.1]
		}
		pk = d
	case packets.AUTH:
		pk = &packets.Auth{Properties: &packets.Properties{}}
	default:
		return nil, fmt.Errorf("%w: packet type %d from a client", errProtocol, typ)
	}
	if err := pk.Unpack(buf); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if s, ok := pk.(*packets.Subscribe); ok {
		if err := checkSubscribeOptions(body, s); err != nil {
			return nil, err
		}
	}
	if u, ok := pk.(*packets.Unsubscribe); ok && (buf.Len() != 0 || len(u.Topics) == 0) {
		return nil, fmt.Errorf("%w: UNSUBSCRIBE without a whole topic filter", errMalformed)
	}
	return pk, nil
}

// checkSubscribeOptions checks what paho's decoder does not: a SUBSCRIBE
// has at least one filter, and each subscription options byte has its
// reserved bits clear and a retain handling of 0 to 2 [MQTT-3.8.3-5].
func checkSubscribeOptions(body []byte, s *packets.Subscribe) error {
	if len(s.Subscriptions) == 0 {
		return fmt.Errorf("%w: SUBSCRIBE without filters", errProtocol)
	}
	n := 0
	for _, o := range s.Subscriptions {
		n += 3 + len(o.Topic)
	}
	if n > len(body) {
		return fmt.Errorf("%w: SUBSCRIBE payload", errMalformed)
	}
	rest := body[len(body)-n:]
	for _, o := range s.Subscriptions {
		opts := rest[2+len(o.Topic)]
		if opts&0xc0 != 0 || opts>>4&3 == 3 {
			return fmt.Errorf("%w: subscription options %#x", errMalformed, opts)
		}
		rest = rest[3+len(o.Topic):]
	}
	return nil
}

// decodeV3 decodes MQTT 3.1 and 3.1.1 packets (which have no properties)
// into the paho packet types, with empty properties.
func decodeV3(typ, flags byte, body []byte) (packets.Packet, error) {
	d := decoder{b: body}
	switch typ {
	case packets.PUBLISH:
		p := &packets.Publish{Properties: &packets.Properties{}, QoS: flags >> 1 & 3,
			Duplicate: flags&8 != 0, Retain: flags&1 != 0}
		if p.QoS > 2 {
			return nil, fmt.Errorf("%w: PUBLISH QoS 3", errMalformed)
		}
		p.Topic = d.string()
		if p.QoS > 0 {
			p.PacketID = d.uint16()
		}
		if d.err != nil {
			return nil, d.err
		}
		p.Payload = append([]byte(nil), d.b...)
		return p, nil
	case packets.PUBACK, packets.PUBREC, packets.PUBREL, packets.PUBCOMP:
		id := d.uint16()
		if err := d.end(); err != nil {
			return nil, err
		}
		switch typ {
		case packets.PUBACK:
			return &packets.Puback{PacketID: id, Properties: &packets.Properties{}}, nil
		case packets.PUBREC:
			return &packets.Pubrec{PacketID: id, Properties: &packets.Properties{}}, nil
		case packets.PUBREL:
			return &packets.Pubrel{PacketID: id, Properties: &packets.Properties{}}, nil
		}
		return &packets.Pubcomp{PacketID: id, Properties: &packets.Properties{}}, nil
	case packets.SUBSCRIBE:
		s := &packets.Subscribe{PacketID: d.uint16(), Properties: &packets.Properties{}}
		for d.err == nil && len(d.b) > 0 {
			f := d.string()
			opts := d.byte()
			if opts&0xfc != 0 || opts&3 == 3 {
				return nil, fmt.Errorf("%w: requested QoS byte %#x", errMalformed, opts)
			}
			s.Subscriptions = append(s.Subscriptions, packets.SubOptions{Topic: f, QoS: opts})
		}
		if d.err != nil {
			return nil, d.err
		}
		if len(s.Subscriptions) == 0 {
			return nil, fmt.Errorf("%w: SUBSCRIBE without filters", errProtocol)
		}
		return s, nil
	case packets.UNSUBSCRIBE:
		u := &packets.Unsubscribe{PacketID: d.uint16(), Properties: &packets.Properties{}}
		for d.err == nil && len(d.b) > 0 {
			u.Topics = append(u.Topics, d.string())
		}
		if d.err != nil {
			return nil, d.err
		}
		if len(u.Topics) == 0 {
			return nil, fmt.Errorf("%w: UNSUBSCRIBE without filters", errProtocol)
		}
		return u, nil
	case packets.PINGREQ:
		if err := d.end(); err != nil {
			return nil, err
		}
		return &packets.Pingreq{}, nil
	case packets.DISCONNECT:
		if err := d.end(); err != nil {
			return nil, err
		}
		return &packets.Disconnect{Properties: &packets.Properties{}}, nil
	}
	return nil, fmt.Errorf("%w: packet type %d from an MQTT 3 client", errProtocol, typ)
}

// catchPanics is turned off by the fuzz target, so that a panic in a
// decoder is found rather than absorbed.
var catchPanics = true

// recoverMalformed turns a panic of a decoder into errMalformed: whatever
// a peer sends, decoding fails closed and the broker keeps running.
func recoverMalformed(err *error) {
	if !catchPanics {
		return
	}
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: decoder panic: %v", errMalformed, r)
	}
}

// decoder reads the MQTT 3 wire types; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated packet", errMalformed)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint16() uint16 {
	if d.err != nil || len(d.b) < 2 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) binary() []byte {
	n := int(d.uint16())
	if d.err != nil || len(d.b) < n {
		d.fail()
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.binary()) }

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errMalformed, len(d.b))
	}
	return d.err
}

// Encoding. Every packet the broker sends is built here; each reason code
// passes through [Broker.checkCode] first.

func encode(pk packets.Packet) []byte {
	var buf bytes.Buffer
	_, _ = pk.WriteTo(&buf) // a bytes.Buffer does not fail
	return buf.Bytes()
}

// frame prepends a fixed header to an MQTT 3 body.
func frame(header byte, body []byte) []byte {
	out := make([]byte, 0, 5+len(body))
	out = append(out, header)
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		out = append(out, d)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// encodePublish encodes a PUBLISH for protocol level version; properties
// are sent to v5 clients only.
func encodePublish(version byte, p *packets.Publish) []byte {
	if version == v5 {
		return encode(p)
	}
	body := appendString(nil, p.Topic)
	if p.QoS > 0 {
		body = binary.BigEndian.AppendUint16(body, p.PacketID)
	}
	body = append(body, p.Payload...)
	h := packets.PUBLISH<<4 | p.QoS<<1
	if p.Duplicate {
		h |= 0x08
	}
	if p.Retain {
		h |= 0x01
	}
	return frame(h, body)
}

// encodeAck encodes a PUBACK, PUBREC or PUBCOMP. MQTT 3 acks carry no code.
func encodeAck(version, typ byte, id uint16, code byte) []byte {
	if version != v5 {
		return frame(typ<<4, binary.BigEndian.AppendUint16(nil, id))
	}
	switch typ {
	case packets.PUBACK:
		return encode(&packets.Puback{PacketID: id, ReasonCode: code, Properties: &packets.Properties{}})
	case packets.PUBREC:
		return encode(&packets.Pubrec{PacketID: id, ReasonCode: code, Properties: &packets.Properties{}})
	}
	return encode(&packets.Pubcomp{PacketID: id, ReasonCode: code, Properties: &packets.Properties{}})
}

// Reason codes a server may send, per packet type (MQTT 5.0 sections
// 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.7.2.1, 3.9.3, 3.11.3 and 3.14.2.1; for
// DISCONNECT, the codes whose "sent by" includes the server). These tables
// are written from the specification, independently of the mapping in the
// mqttsec package, so that a mapping error shows up here.
var (
	connackCodes    = codeSet(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	pubackCodes     = codeSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99) // PUBACK and PUBREC
	pubcompCodes    = codeSet(0x00, 0x92)
	subackCodes     = codeSet(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	unsubackCodes   = codeSet(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	disconnectCodes = codeSet(0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2)
	// MQTT 3.1.1 sections 3.2.2.3 and 3.9.3.
	v3ConnackCodes = codeSet(0x00, 0x01, 0x02, 0x03, 0x04, 0x05)
	v3SubackCodes  = codeSet(0x00, 0x01, 0x02, 0x80)
)

type codes [256]bool

func codeSet(cs ...byte) *codes {
	var s codes
	for _, c := range cs {
		s[c] = true
	}
	return &s
}

// ValidCode reports whether a server may send reason code (or, for MQTT
// 3, return code) code in a packet of type typ (a paho packets constant)
// to a client of protocol level version (3, 4 or 5). Packet types that
// carry no code are never valid.
func ValidCode(version, typ, code byte) bool {
	var s *codes
	if version != v5 {
		switch typ {
		case packets.CONNACK:
			s = v3ConnackCodes
		case packets.SUBACK:
			s = v3SubackCodes
		}
	} else {
		switch typ {
		case packets.CONNACK:
			s = connackCodes
		case packets.PUBACK, packets.PUBREC:
			s = pubackCodes
		case packets.PUBCOMP, packets.PUBREL:
			s = pubcompCodes
		case packets.SUBACK:
			s = subackCodes
		case packets.UNSUBACK:
			s = unsubackCodes
		case packets.DISCONNECT:
			s = disconnectCodes
		}
	}
	return s != nil && s[code]
}
