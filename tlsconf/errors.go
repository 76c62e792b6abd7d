package tlsconf

import "github.com/mqttsec/mqttsec"

// tlsError is a package sentinel: its own message, and the root package's
// [mqttsec.ReasonError] sentinel underneath so that [mqttsec.CodeOf] and
// [errors.Is] see through it.
type tlsError struct {
	msg  string
	base error
}

func (e *tlsError) Error() string { return e.msg }
func (e *tlsError) Unwrap() error { return e.base }

// Sentinel errors. Errors returned by this package wrap one of them with
// detail (the file, the certificate subject); test with [errors.Is].
var (
	// ErrConfig is an invalid Config field.
	ErrConfig error = &tlsError{"tlsconf: invalid configuration", mqttsec.ErrUnspecified}
	// ErrPEM is a file that is not the expected PEM (or DER) material.
	ErrPEM error = &tlsError{"tlsconf: bad PEM material", mqttsec.ErrUnspecified}
	// ErrWeakKey is an RSA key shorter than 2048 bits, an elliptic curve
	// smaller than P-256, or a key type this package does not accept.
	ErrWeakKey error = &tlsError{"tlsconf: weak key", mqttsec.ErrUnspecified}
	// ErrWeakSignature is a certificate signed with SHA-1 or MD5.
	ErrWeakSignature error = &tlsError{"tlsconf: weak signature algorithm", mqttsec.ErrUnspecified}
	// ErrKeyMismatch is a private key that does not belong to its certificate.
	ErrKeyMismatch error = &tlsError{"tlsconf: private key does not match certificate", mqttsec.ErrUnspecified}
	// ErrCertificateExpired is a certificate whose notAfter has passed.
	ErrCertificateExpired error = &tlsError{"tlsconf: certificate expired", mqttsec.ErrExpired}
	// ErrNotYetValid is a certificate whose notBefore is in the future.
	ErrNotYetValid error = &tlsError{"tlsconf: certificate not yet valid", mqttsec.ErrUnspecified}
	// ErrExpiresSoon is a warning, never a refusal: a certificate expires
	// within Config.ExpiryWarning.
	ErrExpiresSoon error = &tlsError{"tlsconf: certificate expires soon", mqttsec.ErrUnspecified}
	// ErrCRL is a revocation list that cannot be parsed, or that is not
	// signed by a certificate of the CA bundle.
	ErrCRL error = &tlsError{"tlsconf: bad certificate revocation list", mqttsec.ErrUnspecified}
	// ErrRevoked is a peer certificate listed in a revocation list.
	ErrRevoked error = &tlsError{"tlsconf: certificate revoked", mqttsec.ErrNotAuthorized}
	// ErrPinMismatch is a peer whose certificate chain has no public key
	// matching Config.PinnedSPKI.
	ErrPinMismatch error = &tlsError{"tlsconf: no pinned public key in peer chain", mqttsec.ErrNotAuthorized}
	// ErrNameNotAllowed is a peer certificate whose names match none of
	// Config.AllowedNames.
	ErrNameNotAllowed error = &tlsError{"tlsconf: peer certificate name not allowed", mqttsec.ErrNotAuthorized}
	// ErrUntrusted is a resumed session whose peer certificate no longer
	// chains to the current CA bundle (the bundle was reloaded).
	ErrUntrusted error = &tlsError{"tlsconf: peer certificate not trusted", mqttsec.ErrNotAuthorized}
)
