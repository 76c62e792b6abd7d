package redisstore

import (
	"errors"
	"fmt"

	"github.com/mqttsec/mqttsec"
)

// Errors of this package. Test for them with [errors.Is].
var (
	// ErrUnavailable is Redis that cannot be reached or did not answer in
	// time. It wraps [mqttsec.ErrServerUnavailable] (0x88), so that a
	// CONNECT refused because the cluster state cannot be read is answered
	// "server unavailable", never as the client's fault.
	ErrUnavailable = fmt.Errorf("%w: redis unreachable", mqttsec.ErrServerUnavailable)
	// ErrClosed is an operation on a [Node] after [Node.Close].
	ErrClosed = errors.New("redisstore: node closed")
)

// maxQuoted is how much of a client ID or subject an error quotes: an ID
// can be 65,535 bytes long, and an error ends up in a log line.
const maxQuoted = 64

// quote returns s quoted with %q, cut to maxQuoted bytes.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q...", s[:maxQuoted])
}

// unavailable wraps a Redis error of operation op in ErrUnavailable.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}
