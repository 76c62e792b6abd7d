// Package auth verifies MQTT credentials: passwords, JSON Web Tokens and
// client certificates, each as an [mqttsec.Authenticator] that a [Chain]
// composes, plus the client-side credential providers for paho.
//
// # Decisions
//
// Each authenticator allows (an [mqttsec.Identity]), denies (an error
// wrapping [mqttsec.ErrBadCredentials], reason code 0x86) or abstains
// ([mqttsec.ErrAbstain]) when the credentials are not its kind: [JWT]
// abstains for a password that is not a token, [Passwords] for a CONNECT
// without a user name, [X509] for a connection without a client
// certificate. In a [Chain] the first authenticator that does not abstain
// decides; when all abstain the chain denies. Nothing is anonymous unless
// [Anonymous] is in the chain. A typical chain:
//
//	authn := auth.Chain(certs, tokens, passwords)
//
// Denials never contain a password or a token, and an unknown user and a
// wrong password get the same answer in the same time.
//
// # Passwords
//
// [ParseHash] reads bcrypt ("$2a$", "$2b$", "$2y$"), argon2id (PHC string)
// and Mosquitto's "$7$" (PBKDF2-SHA512) and "$6$" (salted SHA-512) hashes,
// so a [PasswordFile] written by mosquitto_passwd works unchanged.
// [HashPassword] creates bcrypt (default), argon2id or "$7$" hashes and
// refuses to truncate a bcrypt password longer than 72 bytes; [Policy]
// checks strength when a password is set. [Passwords] verifies under a
// concurrency bound with a cache of recent successes, and [Watcher] reloads
// its file on change. The `mqttsec passwd` command manages files.
//
// # Tokens
//
// [JWT] verifies tokens from the password field with an explicit algorithm
// allow-list, keys from an HMAC secret, PEM public keys or a JWKS URL, a
// required "exp", optional issuer and audience, a subject claim that must
// match the user name or client ID, and an optional EMQX 5.x "acl" claim
// ([ParseACLClaim]) that becomes [mqttsec.Identity.Grants].
//
// # Certificates
//
// [X509] names a client by a field of its verified certificate (CN, a
// SAN, or the SHA-256 fingerprint), optionally pinned, and expires the
// identity at the certificate's notAfter.
//
// # Clients
//
// [ConnectPacketBuilder] and [Configure] give an autopaho client fresh
// credentials on every connection attempt from a [CredentialProvider]:
// [StaticCredentials], or [JWTCredentials] with a [TokenSource] such as
// [JWTMinter].
//
// # Concurrency
//
// Every authenticator in this package is safe for concurrent use. [Watcher]
// and a [JWT] with a JWKS URL run a goroutine until Close.
package auth
