package auth

import (
	"errors"
	"fmt"

	"github.com/mqttsec/mqttsec"
)

// Configuration and input errors. They are not denials: they are returned
// when a hash, a password file, a key or a claim cannot be used, and are
// tested for with [errors.Is].
var (
	// ErrMalformedHash is returned for a password hash string that is not
	// one of the supported formats, or has invalid parameters.
	ErrMalformedHash = errors.New("auth: malformed password hash")
	// ErrMalformedFile is returned for a password file line that is not a
	// valid "username:hash" entry; the [ParseError] names the line.
	ErrMalformedFile = errors.New("auth: malformed password file")
	// ErrDuplicateUser is returned when a password file names a user twice.
	ErrDuplicateUser = errors.New("auth: duplicate user")
	// ErrUnknownUser is returned by [PasswordFile.Delete] for a user that is
	// not in the file.
	ErrUnknownUser = errors.New("auth: unknown user")
	// ErrInvalidUsername is returned when setting a user name that a
	// password file cannot hold: empty, ':' or a control character, a
	// leading '#', white space at either end (see [PasswordFile.Set]).
	ErrInvalidUsername = errors.New("auth: invalid user name")
	// ErrPasswordTooLong is returned when hashing a password longer than the
	// scheme can use (bcrypt uses only 72 bytes). Passwords are never
	// silently truncated.
	ErrPasswordTooLong = errors.New("auth: password too long")
	// ErrWeakPassword is returned by [Policy.Check] for a password that does
	// not meet the strength policy.
	ErrWeakPassword = errors.New("auth: weak password")
	// ErrMalformedACL is returned for a JWT "acl" claim that is not in
	// EMQX 5.x format.
	ErrMalformedACL = errors.New("auth: malformed acl claim")
	// ErrConfig is returned by constructors for an invalid configuration.
	ErrConfig = errors.New("auth: invalid configuration")
)

// ParseError is a password file error that names its line. It is an
// immutable value. It wraps
// [ErrMalformedFile] or [ErrDuplicateUser] and, for a bad hash,
// [ErrMalformedHash]. It never contains a hash or a password.
type ParseError struct {
	// Name is the file name, if known.
	Name string
	// Line is the 1-based line number.
	Line int
	// Err is the underlying error.
	Err error
}

// Error returns "name:line: message".
func (e *ParseError) Error() string {
	name := e.Name
	if name == "" {
		name = "password file"
	}
	return fmt.Sprintf("%s:%d: %v", name, e.Line, e.Err)
}

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

// deny returns a denial with reason code 0x86 and a short reason. The
// reason never contains a secret.
func deny(reason string) error {
	return fmt.Errorf("%w: %s", mqttsec.ErrBadCredentials, reason)
}
