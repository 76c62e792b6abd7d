package integrity

import (
	"errors"
	"fmt"

	"github.com/mqttsec/mqttsec"
)

// The kinds of failure of a verification. Test for them with [errors.Is];
// the error returned wraps exactly one of them, with detail (a key ID, a
// topic, quoted) that never contains key material.
var (
	// ErrUnsigned: the topic is protected and the message carries no
	// signature (neither a COSE_Sign1 envelope nor a signature property).
	ErrUnsigned = errors.New("integrity: message not signed")
	// ErrMalformed: the signature or the envelope does not parse, or its
	// protected header lacks a field this package requires (key ID,
	// sender epoch, sequence number, timestamp) or has one it does not
	// know.
	ErrMalformed = errors.New("integrity: malformed signature")
	// ErrUnknownKey: the key ID is not in the key source.
	ErrUnknownKey = errors.New("integrity: unknown key")
	// ErrAlgorithm: the message's algorithm is not the key's algorithm.
	ErrAlgorithm = errors.New("integrity: algorithm does not match the key")
	// ErrBadSignature: the signature does not verify: the payload, the
	// topic or the protected header was changed, or it was signed by
	// another key.
	ErrBadSignature = errors.New("integrity: bad signature")
	// ErrKeyNotBound: the key is not bound to the identity that published
	// the message (broker side: the key's subject is not the publishing
	// client's authenticated subject), or is bound to no identity.
	ErrKeyNotBound = errors.New("integrity: key not bound to the publisher")
	// ErrSignerNotAllowed: the key's subject may not sign on this topic
	// (a [Rule] with Signers, or a "%u" level naming another subject).
	ErrSignerNotAllowed = errors.New("integrity: signer not allowed on this topic")
	// ErrReplay: the message was seen before, is older than the replay
	// window, or comes from an earlier run of its sender.
	ErrReplay = errors.New("integrity: replayed message")
	// ErrExpired: the message's timestamp is older than the accepted age.
	ErrExpired = errors.New("integrity: message expired")
	// ErrFuture: the message's timestamp is further ahead than the
	// accepted clock skew.
	ErrFuture = errors.New("integrity: message timestamp in the future")
	// ErrNotEncrypted: the topic requires encryption and the message is
	// plaintext.
	ErrNotEncrypted = errors.New("integrity: message not encrypted")
	// ErrDecrypt: the encrypted content does not parse or does not
	// decrypt (unknown content key, altered ciphertext).
	ErrDecrypt = errors.New("integrity: cannot decrypt")
)

// ErrConfig is returned by constructors and key parsers for an invalid
// configuration or key.
var ErrConfig = errors.New("integrity: invalid configuration")

// errPayloadFormat carries MQTT v5 reason code 0x99 (payload format
// invalid): the payload is not in the format the topic requires.
var errPayloadFormat = mqttsec.NewReasonError(0x99, "integrity: payload format invalid")

// Code returns the MQTT v5 reason code the broker check ([Protect])
// answers a failure with: 0x99 (payload format invalid) when the message
// is not in the form a protected topic requires ([ErrUnsigned],
// [ErrMalformed], [ErrNotEncrypted]), 0x87 (not authorized) for every other
// failure, 0x00 for nil.
func Code(err error) mqttsec.ReasonCode {
	switch {
	case err == nil:
		return mqttsec.CodeSuccess
	case errors.Is(err, ErrUnsigned), errors.Is(err, ErrMalformed), errors.Is(err, ErrNotEncrypted):
		return 0x99
	}
	return mqttsec.CodeNotAuthorized
}

// denial wraps a verification failure in the reason-code sentinel the
// broker answers it with.
func denial(err error) error {
	if Code(err) == 0x99 {
		return fmt.Errorf("%w: %w", errPayloadFormat, err)
	}
	return fmt.Errorf("%w: %w", mqttsec.ErrNotAuthorized, err)
}
