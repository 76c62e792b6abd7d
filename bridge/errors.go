package bridge

import "github.com/mqttsec/mqttsec"

// bridgeError is a package sentinel: its own message, and the sentinel it
// refines underneath, so that [errors.Is] and [mqttsec.CodeOf] see through it.
type bridgeError struct {
	msg  string
	base error
}

func (e *bridgeError) Error() string { return e.msg }
func (e *bridgeError) Unwrap() error { return e.base }

// Sentinel errors. Errors returned by this package wrap one of them with
// detail (the bridge, the field, the line); test with [errors.Is]. No error
// ever contains a password.
var (
	// ErrInvalid is a configuration that cannot run: a missing or malformed
	// field, an invalid topic pattern or prefix, a duplicate name or client
	// ID. [ErrInsecure] and [ErrLoop] wrap it, so errors.Is(err, ErrInvalid)
	// holds for every refused configuration.
	ErrInvalid error = &bridgeError{"bridge: invalid configuration", mqttsec.ErrUnspecified}
	// ErrInsecure is a configuration refused because it would be insecure
	// without the loudly named switch that allows it: a plaintext remote,
	// credentials in a URL, a password file readable by others.
	ErrInsecure error = &bridgeError{"bridge: insecure configuration", ErrInvalid}
	// ErrLoop is a set of mappings that forwards messages back to where they
	// came from, with loop prevention switched off.
	ErrLoop error = &bridgeError{"bridge: mappings form a loop", ErrInvalid}
	// ErrCredentials is a password that cannot be read: a missing file or
	// environment variable, an empty password.
	ErrCredentials error = &bridgeError{"bridge: credentials unavailable", ErrInvalid}
	// ErrMosquitto is a Mosquitto configuration that Mosquitto itself
	// refuses (a bridge option before any "connection", a malformed topic
	// line, ...). Insecure but valid settings are findings, not errors.
	ErrMosquitto error = &bridgeError{"bridge: invalid Mosquitto bridge configuration", mqttsec.ErrUnspecified}
	// ErrPacketTooLarge is a packet from a broker larger than the Maximum
	// Packet Size the bridge announced: the connection is closed before the
	// packet is read into memory.
	ErrPacketTooLarge error = &bridgeError{"bridge: packet exceeds the maximum packet size", mqttsec.ErrPacketTooLarge}
	// ErrPipeClosed is a dial to a closed [Pipe].
	ErrPipeClosed error = &bridgeError{"bridge: pipe closed", mqttsec.ErrServerUnavailable}
	// ErrMalformed is a byte stream from a broker that is not MQTT framing
	// (a remaining length longer than four bytes).
	ErrMalformed error = &bridgeError{"bridge: malformed packet", mqttsec.ErrUnspecified}
)
