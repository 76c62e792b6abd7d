package mqttsec

import (
	"errors"
	"fmt"
)

// ReasonCode is an MQTT v5 reason code.
type ReasonCode byte

// The reason codes a decision can produce.
const (
	CodeSuccess                 ReasonCode = 0x00
	CodeUnspecified             ReasonCode = 0x80
	CodeClientIDNotValid        ReasonCode = 0x85
	CodeBadUsernameOrPassword   ReasonCode = 0x86
	CodeNotAuthorized           ReasonCode = 0x87
	CodeServerUnavailable       ReasonCode = 0x88
	CodeServerBusy              ReasonCode = 0x89
	CodeBanned                  ReasonCode = 0x8A
	CodeSessionTakenOver        ReasonCode = 0x8E
	CodeTopicFilterInvalid      ReasonCode = 0x8F
	CodeTopicNameInvalid        ReasonCode = 0x90
	CodePacketTooLarge          ReasonCode = 0x95
	CodeMessageRateTooHigh      ReasonCode = 0x96
	CodeQuotaExceeded           ReasonCode = 0x97
	CodeConnectionRateExceeded  ReasonCode = 0x9F
	CodeMaximumConnectTime      ReasonCode = 0xA0
	CodeWildcardSubsUnsupported ReasonCode = 0xA2
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

// String returns the reason code in hexadecimal with its name.
func (c ReasonCode) String() string {
	name := "unknown"
	switch c {
	case CodeSuccess:
		name = "success"
	case CodeUnspecified:
		name = "unspecified error"
	case CodeClientIDNotValid:
		name = "client identifier not valid"
	case CodeBadUsernameOrPassword:
		name = "bad user name or password"
	case CodeNotAuthorized:
		name = "not authorized"
	case CodeServerUnavailable:
		name = "server unavailable"
	case CodeServerBusy:
		name = "server busy"
	case CodeBanned:
		name = "banned"
	case CodeSessionTakenOver:
		name = "session taken over"
	case CodeTopicFilterInvalid:
		name = "topic filter invalid"
	case CodeTopicNameInvalid:
		name = "topic name invalid"
	case CodePacketTooLarge:
		name = "packet too large"
	case CodeMessageRateTooHigh:
		name = "message rate too high"
	case CodeQuotaExceeded:
		name = "quota exceeded"
	case CodeConnectionRateExceeded:
		name = "connection rate exceeded"
	case CodeMaximumConnectTime:
		name = "maximum connect time"
	case CodeWildcardSubsUnsupported:
		name = "wildcard subscriptions not supported"
	}
	return fmt.Sprintf("0x%02X %s", byte(c), name)
}

// ReasonError is a denial that carries the MQTT v5 reason code to send.
// The package's sentinels are ReasonErrors; wrap them with %w to add detail
// and test for them with [errors.Is]. [CodeOf] finds the code in a chain.
type ReasonError struct {
	Code ReasonCode
	msg  string
}

// Error returns the message.
func (e *ReasonError) Error() string { return e.msg }

// NewReasonError returns a new ReasonError. Prefer wrapping a sentinel.
func NewReasonError(code ReasonCode, msg string) *ReasonError {
	return &ReasonError{Code: code, msg: msg}
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
	if errors.As(err, &re) && re.Code != CodeSuccess {
		return re.Code
	}
	return CodeUnspecified
}
