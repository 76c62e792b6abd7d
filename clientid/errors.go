package clientid

import (
	"errors"
	"fmt"

	"github.com/mqttsec/mqttsec"
)

// Errors of this package. Denials carry their MQTT reason code through the
// root sentinel they wrap; test for them with [errors.Is].
var (
	// ErrInvalid is a client ID a [Policy] refuses; it wraps
	// [mqttsec.ErrClientIDInvalid] (0x85; 0x02 for an MQTT 3.1.1 client).
	ErrInvalid = fmt.Errorf("%w: policy", mqttsec.ErrClientIDInvalid)
	// ErrNotBound is a client ID outside the [Binding] of the identity
	// that presents it; it wraps [mqttsec.ErrClientIDInvalid] (0x85).
	ErrNotBound = fmt.Errorf("%w: not bound to the identity", mqttsec.ErrClientIDInvalid)
	// ErrTaken is a client ID held by a live connection the [Registry]
	// does not let the new one take over; it wraps
	// [mqttsec.ErrClientIDTaken] (0x85).
	ErrTaken = fmt.Errorf("%w: registry", mqttsec.ErrClientIDTaken)
	// ErrOwned is a client ID whose kept session belongs to another
	// identity; it wraps [mqttsec.ErrSessionOwned] (0x85).
	ErrOwned = fmt.Errorf("%w: registry", mqttsec.ErrSessionOwned)
	// ErrFull is a new client ID refused because the [Registry] holds as
	// many as [WithMaxIDs] allows; it wraps [mqttsec.ErrQuotaExceeded]
	// (0x97; 0x03 for an MQTT 3.1.1 client).
	ErrFull = fmt.Errorf("%w: client-ID registry full", mqttsec.ErrQuotaExceeded)
	// ErrTemplate is a binding template that does not parse.
	ErrTemplate = errors.New("clientid: invalid template")
)

// maxQuoted is how much of a client ID an error message quotes: an ID can
// be 65,535 bytes long, an error ends up in a log line.
const maxQuoted = 64

// quote returns id quoted with %q, cut to maxQuoted bytes.
func quote(id string) string {
	if len(id) <= maxQuoted {
		return fmt.Sprintf("%q", id)
	}
	return fmt.Sprintf("%q...", id[:maxQuoted])
}
