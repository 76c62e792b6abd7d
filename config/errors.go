package config

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors of this package. Every error [Parse], [Load], [File.Check] and
// [File.Open] return wraps one of them (an [*Error] says where), and they
// are tested for with errors.Is.
var (
	// ErrSyntax is a document that is not YAML, a value of the wrong type
	// or a key given twice.
	ErrSyntax = errors.New("config: syntax error")
	// ErrUnknownKey is a key the schema does not have (a typo is never
	// ignored).
	ErrUnknownKey = errors.New("config: unknown key")
	// ErrInvalid is a value the schema does not allow, or keys that
	// contradict each other.
	ErrInvalid = errors.New("config: invalid value")
	// ErrInsecure is a configuration refused because it is insecure; the
	// message names the insecure_... switch that accepts it.
	ErrInsecure = errors.New("config: insecure configuration")
	// ErrFile is a file the configuration names that is missing, is not a
	// regular file, or cannot be loaded.
	ErrFile = errors.New("config: file error")
	// ErrPermissions is a file others may read (a secret) or change: see
	// [File.Check].
	ErrPermissions = errors.New("config: unsafe file permissions")
)

// Error is a problem at one place of a configuration file. It never holds
// a secret: file contents are not quoted, only keys and values of the
// configuration itself.
type Error struct {
	// File is the configuration file's name as given to [Parse] or [Load].
	File string
	// Line is the 1-based line of the key, or 0 when unknown.
	Line int
	// Key is the key's path: "listeners[1].tls.client_auth".
	Key string
	// Err says what is wrong; it wraps one of the package's sentinels.
	Err error
}

// Error returns "file:line: key: message".
func (e *Error) Error() string {
	s := e.File
	if s == "" {
		s = "config"
	}
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// wrapf returns an error that is sentinel (for errors.Is) and says only
// the message, so that an [Error] reads "file:line: key: message". Errors
// among args that are wrapped with %w stay reachable through errors.Is.
func wrapf(sentinel error, format string, args ...any) error {
	return &kindError{sentinel: sentinel, err: fmt.Errorf(format, args...)}
}

type kindError struct {
	sentinel error
	err      error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.sentinel, e.err} }
