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
// # Names
//
// [mqttsec.Identity.Subject] is the principal every later decision keys
// on: policies, client-ID binding, %u placeholders. The authenticators of
// one Chain share that namespace: a password-file user "alice", a token
// with subject "alice" and a certificate named "alice" are one principal,
// so make sure a name means one principal across the sources you chain. A
// token's subject belongs to its issuer: a [JWT] accepts one issuer
// (JWTConfig.Issuer, required with public keys or a JWK Set), so "alice" of
// another identity provider is refused rather than taken for this one's;
// JWTConfig.InsecureAnyIssuer waives it and merges every issuer's names.
//
// # Passwords
//
// [ParseHash] reads bcrypt ("$2a$", "$2b$", "$2y$"), argon2id (PHC string)
// and Mosquitto's "$7$" (PBKDF2-SHA512) and "$6$" (salted SHA-512) hashes,
// so a [PasswordFile] written by mosquitto_passwd works unchanged; blanks
// around a name are ignored as Mosquitto does, and [PasswordFile.Set]
// refuses a name the file cannot carry back ([ValidateUsername]).
// [HashPassword] creates bcrypt (default), argon2id or "$7$" hashes (only
// "$7$" is read by Mosquitto 2.0) and refuses to truncate a bcrypt
// password longer than 72 bytes; [Policy] checks strength when a password
// is set. [Passwords] verifies under a concurrency bound with a cache of
// recent successes, and [Watcher] reloads its file on change. The `mqttsec
// passwd` command manages files.
//
// # Tokens
//
// [JWT] verifies tokens from the password field with an explicit algorithm
// allow-list, keys from an HMAC secret, PEM public keys or a JWKS URL
// (https, or http to loopback only), a required "exp" (valid until exp +
// Leeway, which is also the Identity's expiry), a required audience and,
// with public keys, a required issuer (RFC 8725; waivers are named
// Insecure...), a subject claim that must match the user name or client
// ID, and an optional EMQX 5.x "acl" claim ([ParseACLClaim]) that becomes
// [mqttsec.Identity.Grants].
//
// # Certificates
//
// [X509] names a client by a field of its verified certificate (CN, a
// SAN, or the SHA-256 fingerprint), optionally pinned, and expires the
// identity at the certificate's notAfter. With X509Config.Verifier (a
// tlsconf.Reloader) it checks connected clients again after a reload.
//
// # Revocation
//
// Credentials can be withdrawn while a client is connected. [Passwords],
// [JWT], [X509] and [Chain] each implement [mqttsec.Revalidator]: asked
// about a live or kept session, they answer nil when they issued its identity and still
// stand by it, a denial when the credentials no longer hold, and
// [mqttsec.ErrAbstain] when the identity is not theirs:
//
//   - Passwords denies a user removed from the file or whose hash line
//     changed (a new password), as Mosquitto does on reload.
//   - JWT denies a token whose verifying key left the configured keys or
//     the JWK Set, or whose issuer, audience or algorithm is no longer
//     accepted (it judges by facts the Identity records: [AttrKey], ...).
//   - X509 denies a certificate no longer pinned, named otherwise, or
//     refused by its Verifier: revoked by a reloaded CRL, or no longer
//     chaining to the current CA bundle.
//   - A Chain vouches when any element does, keeps the session when an
//     element cannot decide, denies when an element denies, and abstains
//     otherwise.
//
// The [mqttsec.Guard] asks after every reload it hears of and ends the
// sessions denied (v5 DISCONNECT 0x87), so give the Guard as the event
// sink of every watcher.
//
// # Events
//
// Every watcher of this module reports the same way, to an
// [mqttsec.EventSink]: an [mqttsec.EventReload] when new content was
// loaded, an [mqttsec.EventReloadFailed] with the error when it was not
// (the previous state stays in force), each with a Source and the File.
// [Watcher] reports with Source "passwords" (WatchOptions.Events), a [JWT]
// with Source "jwks" and its URL (JWTConfig.Events), tlsconf.Reloader with
// Source "tls". A nil sink means mqttsec.SlogSink(nil): a failed reload is
// never silent.
//
// # Clients
//
// [ConnectPacketBuilder] and [Configure] give an autopaho client fresh
// credentials on every connection attempt from a [CredentialProvider]:
// [StaticCredentials], or [JWTCredentials] with a [TokenSource] such as
// [JWTMinter]. Configure also installs [NoEnhancedAuth], without which
// paho crashes on a CONNACK that names an authentication method.
//
// # Concurrency
//
// Every authenticator in this package is safe for concurrent use. [Watcher]
// and a [JWT] with a JWKS URL run a goroutine until Close.
package auth
