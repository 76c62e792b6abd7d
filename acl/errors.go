package acl

import (
	"errors"
	"fmt"

	"github.com/mqttsec/mqttsec"
)

// Errors of this package. Denials wrap [mqttsec.ErrNotAuthorized] (0x87).
var (
	// ErrModel means the enforcer's model is not [Model].
	ErrModel = errors.New("acl: enforcer model is not acl.Model")
	// ErrSyntax means a policy or acl_file line does not parse.
	ErrSyntax = errors.New("acl: syntax error")
	// ErrDenied is the denial of this package; it wraps
	// [mqttsec.ErrNotAuthorized].
	ErrDenied = fmt.Errorf("%w: acl", mqttsec.ErrNotAuthorized)
	// ErrWildcard is a subscription refused by a [WildcardPolicy]; it wraps
	// [mqttsec.ErrNotAuthorized].
	ErrWildcard = fmt.Errorf("%w: wildcard subscription not allowed", mqttsec.ErrNotAuthorized)
)

func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
