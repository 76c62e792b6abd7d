package clientid

import (
	"crypto/rand"
	"encoding/base32"
)

// GeneratedLen is the number of characters [Generate] appends to its
// prefix: 128 random bits in lower-case base32.
const GeneratedLen = 26

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Generate returns prefix followed by [GeneratedLen] characters from
// "a-z2-7" that encode 128 bits from crypto/rand: an ID nobody can guess
// or predict, for a device being provisioned, or for a broker to assign to
// a client that sent an empty client ID (MQTT 5 "assigned client
// identifier"). mochi assigns predictable IDs of its own (a time stamp, a
// machine and process ID and a counter); an adapter can assign these
// instead.
//
// The result passes a [Policy] whose pattern and length admit the prefix
// and 26 more characters: the default Policy does for a prefix of up to 102
// characters of [DefaultChars] that does not start with '$'.
func Generate(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never returns an error
	buf := make([]byte, len(prefix)+GeneratedLen)
	copy(buf, prefix)
	lowerBase32.Encode(buf[len(prefix):], b[:])
	return string(buf)
}
