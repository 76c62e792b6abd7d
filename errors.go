package mqttsec

import (
	"errors"
	"fmt"
)

// ReasonCode is an MQTT v5 reason code.
type ReasonCode byte

// The reason codes a decision can produce.
const (
	CodeSuccess                    ReasonCode = 0x00
	CodeUnspecified                ReasonCode = 0x80
	CodeMalformedPacket            ReasonCode = 0x81
	CodeProtocolError              ReasonCode = 0x82
	CodeImplementationSpecific     ReasonCode = 0x83
	CodeUnsupportedProtocol        ReasonCode = 0x84
	CodeClientIDNotValid           ReasonCode = 0x85
	CodeBadUsernameOrPassword      ReasonCode = 0x86
	CodeNotAuthorized              ReasonCode = 0x87
	CodeServerUnavailable          ReasonCode = 0x88
	CodeServerBusy                 ReasonCode = 0x89
	CodeBanned                     ReasonCode = 0x8A
	CodeServerShuttingDown         ReasonCode = 0x8B
	CodeBadAuthMethod              ReasonCode = 0x8C
	CodeKeepAliveTimeout           ReasonCode = 0x8D
	CodeSessionTakenOver           ReasonCode = 0x8E
	CodeTopicFilterInvalid         ReasonCode = 0x8F
	CodeTopicNameInvalid           ReasonCode = 0x90
	CodePacketIDInUse              ReasonCode = 0x91
	CodePacketIDNotFound           ReasonCode = 0x92
	CodeReceiveMaximumExceeded     ReasonCode = 0x93
	CodeTopicAliasInvalid          ReasonCode = 0x94
	CodePacketTooLarge             ReasonCode = 0x95
	CodeMessageRateTooHigh         ReasonCode = 0x96
	CodeQuotaExceeded              ReasonCode = 0x97
	CodeAdministrativeAction       ReasonCode = 0x98
	CodePayloadFormatInvalid       ReasonCode = 0x99
	CodeRetainNotSupported         ReasonCode = 0x9A
	CodeQoSNotSupported            ReasonCode = 0x9B
	CodeUseAnotherServer           ReasonCode = 0x9C
	CodeServerMoved                ReasonCode = 0x9D
	CodeSharedSubsUnsupported      ReasonCode = 0x9E
	CodeConnectionRateExceeded     ReasonCode = 0x9F
	CodeMaximumConnectTime         ReasonCode = 0xA0
	CodeSubscriptionIDsUnsupported ReasonCode = 0xA1
	CodeWildcardSubsUnsupported    ReasonCode = 0xA2
)

// The MQTT 3.1.1 CONNACK return codes.
const (
	V3Accepted           byte = 0x00
	V3BadProtocolVersion byte = 0x01
	V3IdentifierRejected byte = 0x02
	V3ServerUnavailable  byte = 0x03
	V3BadUsernameOrPass  byte = 0x04
	V3NotAuthorized      byte = 0x05
)

// V3Connack maps a v5 reason code to the MQTT 3.1.1 CONNACK return code a
// v3 client understands. Anything not listed is "not authorized" (0x05): a
// denial stays a denial.
func (c ReasonCode) V3Connack() byte {
	switch c {
	case CodeSuccess:
		return V3Accepted
	case CodeUnsupportedProtocol:
		return V3BadProtocolVersion
	case CodeClientIDNotValid:
		return V3IdentifierRejected
	case CodeBadUsernameOrPassword:
		return V3BadUsernameOrPass
	case CodeServerUnavailable, CodeServerBusy, CodeQuotaExceeded, CodeConnectionRateExceeded:
		return V3ServerUnavailable
	default:
		return V3NotAuthorized
	}
}

// String returns the reason code in hexadecimal with its name:
// "0x87 not authorized".
func (c ReasonCode) String() string {
	return fmt.Sprintf("0x%02X %s", byte(c), c.Name())
}

// Name returns the reason code's name as MQTT 5.0 gives it, in lower case
// ("not authorized"), or "unknown"; it is what a reason string may carry.
func (c ReasonCode) Name() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return "unknown"
}

var codeNames = map[ReasonCode]string{
	CodeSuccess:                    "success",
	CodeUnspecified:                "unspecified error",
	CodeMalformedPacket:            "malformed packet",
	CodeProtocolError:              "protocol error",
	CodeImplementationSpecific:     "implementation specific error",
	CodeUnsupportedProtocol:        "unsupported protocol version",
	CodeClientIDNotValid:           "client identifier not valid",
	CodeBadUsernameOrPassword:      "bad user name or password",
	CodeNotAuthorized:              "not authorized",
	CodeServerUnavailable:          "server unavailable",
	CodeServerBusy:                 "server busy",
	CodeBanned:                     "banned",
	CodeServerShuttingDown:         "server shutting down",
	CodeBadAuthMethod:              "bad authentication method",
	CodeKeepAliveTimeout:           "keep alive timeout",
	CodeSessionTakenOver:           "session taken over",
	CodeTopicFilterInvalid:         "topic filter invalid",
	CodeTopicNameInvalid:           "topic name invalid",
	CodePacketIDInUse:              "packet identifier in use",
	CodePacketIDNotFound:           "packet identifier not found",
	CodeReceiveMaximumExceeded:     "receive maximum exceeded",
	CodeTopicAliasInvalid:          "topic alias invalid",
	CodePacketTooLarge:             "packet too large",
	CodeMessageRateTooHigh:         "message rate too high",
	CodeQuotaExceeded:              "quota exceeded",
	CodeAdministrativeAction:       "administrative action",
	CodePayloadFormatInvalid:       "payload format invalid",
	CodeRetainNotSupported:         "retain not supported",
	CodeQoSNotSupported:            "qos not supported",
	CodeUseAnotherServer:           "use another server",
	CodeServerMoved:                "server moved",
	CodeSharedSubsUnsupported:      "shared subscriptions not supported",
	CodeConnectionRateExceeded:     "connection rate exceeded",
	CodeMaximumConnectTime:         "maximum connect time",
	CodeSubscriptionIDsUnsupported: "subscription identifiers not supported",
	CodeWildcardSubsUnsupported:    "wildcard subscriptions not supported",
}

// ReasonError is a denial that carries the MQTT v5 reason code to send.
// The package's sentinels are ReasonErrors; wrap them with %w to add detail
// and test for them with [errors.Is]. [CodeOf] finds the code in a chain.
// A ReasonError is immutable.
type ReasonError struct {
	code ReasonCode
	msg  string
}

// Error returns the message.
func (e *ReasonError) Error() string { return e.msg }

// Code returns the reason code the denial carries.
func (e *ReasonError) Code() ReasonCode { return e.code }

// NewReasonError returns a new ReasonError. Prefer wrapping a sentinel.
func NewReasonError(code ReasonCode, msg string) *ReasonError {
	return &ReasonError{code: code, msg: msg}
}

// Sentinel denials, each with its reason code.
var (
	ErrUnspecified        = NewReasonError(CodeUnspecified, "mqttsec: denied")
	ErrClientIDInvalid    = NewReasonError(CodeClientIDNotValid, "mqttsec: client identifier not valid")
	ErrClientIDTaken      = NewReasonError(CodeClientIDNotValid, "mqttsec: client identifier in use by another identity")
	ErrBadCredentials     = NewReasonError(CodeBadUsernameOrPassword, "mqttsec: bad user name or password")
	ErrNotAuthorized      = NewReasonError(CodeNotAuthorized, "mqttsec: not authorized")
	ErrServerUnavailable  = NewReasonError(CodeServerUnavailable, "mqttsec: server unavailable")
	ErrServerBusy         = NewReasonError(CodeServerBusy, "mqttsec: server busy")
	ErrBanned             = NewReasonError(CodeBanned, "mqttsec: banned")
	ErrTopicFilterInvalid = NewReasonError(CodeTopicFilterInvalid, "mqttsec: topic filter invalid")
	ErrTopicNameInvalid   = NewReasonError(CodeTopicNameInvalid, "mqttsec: topic name invalid")
	ErrPacketTooLarge     = NewReasonError(CodePacketTooLarge, "mqttsec: packet too large")
	ErrRateTooHigh        = NewReasonError(CodeMessageRateTooHigh, "mqttsec: message rate too high")
	ErrQuotaExceeded      = NewReasonError(CodeQuotaExceeded, "mqttsec: quota exceeded")
	ErrConnectionRate     = NewReasonError(CodeConnectionRateExceeded, "mqttsec: connection rate exceeded")
	ErrExpired            = NewReasonError(CodeMaximumConnectTime, "mqttsec: credentials expired")
	ErrRevoked            = NewReasonError(CodeNotAuthorized, "mqttsec: credentials revoked")
	ErrKicked             = NewReasonError(CodeAdministrativeAction, "mqttsec: disconnected by an administrator")
	ErrSessionOwned       = NewReasonError(CodeClientIDNotValid, "mqttsec: client identifier owned by a kept session of another identity")
	ErrForeignSession     = NewReasonError(CodeNotAuthorized, "mqttsec: no session of this Guard")
)

// ErrAbstain is returned by an [Authenticator] or [Authorizer] that does not
// apply to a request (a JWT authenticator shown a password, say), so that a
// chain moves on. A chain that ends in abstention denies; on its own
// ErrAbstain is a denial with [CodeUnspecified] for an authorizer and
// [CodeBadUsernameOrPassword] for an authenticator.
var ErrAbstain = errors.New("mqttsec: abstain")

// CodeOf returns the reason code an error carries: CodeSuccess for nil, the
// code of the first [ReasonError] in its chain, or CodeUnspecified for any
// other error (a denial is never turned into success).
func CodeOf(err error) ReasonCode {
	if err == nil {
		return CodeSuccess
	}
	var re *ReasonError
	if errors.As(err, &re) && re.code != CodeSuccess {
		return re.code
	}
	return CodeUnspecified
}

// The reason codes each MQTT v5 packet may carry (MQTT 5.0 sections 3.2.2.2,
// 3.4.2.1, 3.9.3 and 3.14.2.1). An adapter maps a Guard's answer through the
// method for the packet it sends, so that no packet carries a code the
// specification does not allow there: a client may treat that as a protocol
// error and never learn why it was refused.

// ForConnack returns the code a CONNACK answering a denied CONNECT carries:
// c itself where CONNACK allows it, 0x9F for a message rate (a connect
// rate), 0x8A for administrative action (a ban), 0x80 otherwise.
// [Guard.Connect] answers CONNECT.
func (c ReasonCode) ForConnack() ReasonCode {
	switch c {
	case 0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
		0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F:
		return c
	case CodeMessageRateTooHigh:
		return CodeConnectionRateExceeded
	case CodeAdministrativeAction:
		return CodeBanned
	}
	return CodeUnspecified
}

// ForPuback returns the code a PUBACK or PUBREC answering a denied PUBLISH
// carries: c itself where PUBACK allows it, 0x97 (quota exceeded) for a
// message rate, 0x80 otherwise. A denial for which [ReasonCode.Disconnects]
// is true is answered with a DISCONNECT instead. [Guard.Publish] answers
// PUBLISH.
func (c ReasonCode) ForPuback() ReasonCode {
	switch c {
	case 0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99:
		return c
	case CodeMessageRateTooHigh:
		return CodeQuotaExceeded
	}
	return CodeUnspecified
}

// ForSuback returns the code a SUBACK carries for a denied topic filter: c
// itself where SUBACK allows it, 0x97 for a rate, 0x80 otherwise.
// [Guard.Subscribe] answers one filter of a SUBSCRIBE. For an MQTT 3.1.1
// client use [ReasonCode.V3Suback].
func (c ReasonCode) ForSuback() ReasonCode {
	switch c {
	case 0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2:
		return c
	case CodeMessageRateTooHigh:
		return CodeQuotaExceeded
	}
	return CodeUnspecified
}

// ForDisconnect returns the code a server's DISCONNECT carries: c itself
// where DISCONNECT allows it, 0x87 (not authorized) for bad credentials,
// 0x98 (administrative action) for a ban, 0x80 otherwise. A [Disconnector]
// maps the code it is given through it.
func (c ReasonCode) ForDisconnect() ReasonCode {
	switch c {
	case 0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
		0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2:
		return c
	case CodeBadUsernameOrPassword, CodeClientIDNotValid:
		return CodeNotAuthorized
	case CodeBanned:
		return CodeAdministrativeAction
	}
	return CodeUnspecified
}

// Disconnects reports whether a denied PUBLISH with this code must end the
// connection (a DISCONNECT with [ReasonCode.ForDisconnect] for a v5 client,
// the socket closed for a v3 client) rather than be answered with a PUBACK:
// packet too large, credentials expired or revoked by an administrator, a
// ban.
func (c ReasonCode) Disconnects() bool {
	switch c {
	case CodePacketTooLarge, CodeMaximumConnectTime, CodeBanned, CodeAdministrativeAction:
		return true
	}
	return false
}

// V3Suback returns the MQTT 3.1.1 SUBACK return code of a denied filter:
// 0x80 (failure) for every denial, the granted QoS for success.
func (c ReasonCode) V3Suback() byte {
	if c <= 0x02 {
		return byte(c)
	}
	return 0x80
}
