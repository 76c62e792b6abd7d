package auth

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultMinLength is the minimum password length [Policy] enforces when
// MinLength is zero.
const DefaultMinLength = 12

// Policy is the strength policy applied when a password is set (by
// [PasswordFile.Set] callers and `mqttsec passwd`), never when one is
// verified: a weak password already in a file still works until changed.
// The zero value is the recommended policy. A Policy is safe for concurrent
// use.
type Policy struct {
	// MinLength is the minimum length in characters (UTF-8 code points);
	// zero means DefaultMinLength, a negative value disables the check.
	MinLength int `yaml:"min_length"`
	// AllowUsername allows a password equal to the user name (compared
	// case-insensitively). Off by default.
	AllowUsername bool `yaml:"allow_username"`
	// AllowCommon allows passwords on the built-in list of common passwords
	// (compared case-insensitively). Off by default.
	AllowCommon bool `yaml:"allow_common"`
}

// Check returns nil when password is acceptable for username under the
// policy, or an error wrapping [ErrWeakPassword] that says why (never
// repeating the password).
func (p Policy) Check(username string, password []byte) error {
	min := p.MinLength
	if min == 0 {
		min = DefaultMinLength
	}
	if n := utf8.RuneCount(password); min > 0 && n < min {
		return fmt.Errorf("%w: shorter than %d characters", ErrWeakPassword, min)
	}
	if !p.AllowUsername && username != "" && bytes.EqualFold(password, []byte(username)) {
		return fmt.Errorf("%w: equal to the user name", ErrWeakPassword)
	}
	if !p.AllowCommon {
		lower := strings.ToLower(string(password))
		if _, ok := commonPasswords[lower]; ok {
			return fmt.Errorf("%w: on the list of common passwords", ErrWeakPassword)
		}
	}
	return nil
}

// commonPasswords is a small list of the most used passwords, including the
// defaults of common IoT devices and MQTT tutorials.
var commonPasswords = func() map[string]struct{} {
	m := make(map[string]struct{})
	for _, p := range strings.Fields(`
123456 123456789 12345678 12345 1234567 1234567890 123123 111111 000000 654321
password password1 password123 passw0rd p@ssw0rd p@ssword qwerty qwerty123
qwertyuiop 1q2w3e4r 1q2w3e4r5t abc123 iloveyou admin admin123 administrator
root toor letmein welcome welcome1 monkey dragon master sunshine princess
football baseball shadow superman trustno1 changeme default guest user test
test123 secret secret123 mqtt mqttpassword mosquitto broker raspberry pi
ubnt support service changeit 1111111111 123321 666666 888888 121212
aaaaaa asdfgh asdfghjkl zxcvbnm 1qaz2wsx qazwsx michael jessica password12
welcome123 admin1234 adminadmin rootroot passwordpassword 123456789012
qwerty123456 iloveyou123 letmein123 changeme123 administrator1 hello123
`) {
		m[p] = struct{}{}
	}
	return m
}()

// maxUsername is the longest user name: the MQTT limit of a string.
const maxUsername = 65535

// validUsername reports whether name can be a user of a password file:
// non-empty valid UTF-8 without ':' or control characters, at most 65535
// bytes (the MQTT limit). The parser applies it to the names it reads;
// [storableUsername] adds what writing a name back needs.
func validUsername(name string) error {
	if name == "" || len(name) > maxUsername || !utf8.ValidString(name) {
		return fmt.Errorf("%w: empty, too long or not UTF-8", ErrInvalidUsername)
	}
	for _, r := range name {
		if r == ':' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: %q contains ':' or a control character", ErrInvalidUsername, name)
		}
	}
	return nil
}

// ValidateUsername returns an error wrapping [ErrInvalidUsername] when a
// password file cannot hold name, the check [PasswordFile.Set] makes: see
// there. Use it to refuse a name before asking for its password.
func ValidateUsername(name string) error { return storableUsername(name) }

// storableUsername reports whether name can be written to a password file
// and read back as itself: a valid name (see validUsername) that does not
// start with '#' (the line would be a comment) and has no white space at
// either end (trimmed on reading, as Mosquitto does, or a blank line).
func storableUsername(name string) error {
	if err := validUsername(name); err != nil {
		return err
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if first == '#' || unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Errorf("%w: %q starts with '#' or white space, or ends with white space: "+
			"a password file cannot hold it", ErrInvalidUsername, name)
	}
	return nil
}
