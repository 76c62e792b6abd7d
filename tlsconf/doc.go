// Package tlsconf builds TLS configurations for MQTT brokers, clients and
// bridges where the secure choice is the default and the insecure one is
// loud.
//
// A [Config] (loaded from YAML with [ParseConfig], or filled in code) names
// the certificate, key, CA bundle and revocation lists. [Config.Server] and
// [Config.Client] turn it into a *tls.Config once; [NewReloader] returns a
// [Reloader] whose *tls.Config values follow the files as they change.
//
// # Defaults
//
//   - TLS 1.2 at least, TLS 1.3 preferred. MinVersion "1.3" raises the
//     floor; "1.1" needs the loudly named InsecureAllowTLS11. TLS 1.0 and
//     SSL are never offered.
//   - TLS 1.2 cipher suites: ECDHE with AES-GCM or ChaCha20-Poly1305 only
//     ([CipherSuites]); no CBC, no RSA key exchange, no 3DES or RC4.
//   - Key exchange: X25519MLKEM768, X25519, P-256 and P-384.
//   - ALPN "mqtt" offered; clients that offer no ALPN (mosquitto_pub, most
//     devices) are still accepted.
//   - Clients always verify the server's name: there is no switch to skip
//     verification. Pinning ([Config.PinnedSPKI]) adds to it, never
//     replaces it.
//   - Session tickets on, with keys rotated by crypto/tls; every resumed
//     session is checked again (below), so resumption cannot bypass a
//     revocation or a reloaded CA bundle.
//
// # Client certificates (mTLS)
//
// A server with CAFile requires client certificates unless ClientAuth says
// "verify-if-given" or "none". After crypto/tls has verified the chain,
// VerifyConnection — which crypto/tls also runs on resumed sessions —
// re-verifies a resumed chain against the current CA bundle, refuses a
// chain containing a certificate listed in CRLFiles ([ErrRevoked]), a leaf
// whose names match none of AllowedNames ([ErrNameNotAllowed]), a chain
// without a pinned key ([ErrPinMismatch]), and finally calls VerifyPeer.
// Refusals are reported through Config.Events as
// [mqttsec.EventConnectDenied].
// [Reloader.VerifyClientCertificate] runs the same checks on demand, for
// a connection that is already up.
//
// # Weak material
//
// Loading refuses, with an error naming the file and certificate: RSA keys
// under 2048 bits and curves under P-256 ([ErrWeakKey]), SHA-1 or MD5
// signatures ([ErrWeakSignature]), expired or not-yet-valid certificates
// ([ErrCertificateExpired], [ErrNotYetValid]), a key that does not belong
// to its certificate ([ErrKeyMismatch]), and revocation lists not signed by
// the CA bundle or signed with SHA-1 or MD5 ([ErrCRL]). Certificates expiring within ExpiryWarning (30
// days by default) are warnings: [Config.Check] and [Reloader.Warnings]
// return them, and Config.Events receives them as [mqttsec.EventWarning]
// wrapping [ErrExpiresSoon].
//
// # Hot reload
//
// A [Reloader] watches the folders of its files with fsnotify and also
// polls (every 10 s by default; Watch "poll" polls only), and re-reads the
// files when their content changes; [Reloader.Reload] does it on demand
// (SIGHUP). Servers get the new material through GetConfigForClient, so the
// next handshake uses it and handshakes in progress finish with the old
// one. Every watcher of this module reports the same way to an
// [mqttsec.EventSink] (Config.Events): a successful reload is an
// [mqttsec.EventReload] per changed file, a file that fails to load keeps
// the previous material and is reported once as
// [mqttsec.EventReloadFailed], each with Source "tls" and File. Give the
// [mqttsec.Guard] as Config.Events and an auth.X509 that verifies with the
// Reloader ([Reloader.VerifyClientCertificate]): a client whose
// certificate a reloaded CRL revokes, or that no longer chains to a
// reloaded CA bundle, is disconnected.
//
// # Development CA
//
// [CreateDevCA], [OpenDevCA] and [EnsureDevCA] manage a small ECDSA P-256
// CA in a folder: a server certificate for localhost, 127.0.0.1 and ::1,
// client certificates with CN=NAME, and DNS name NAME when NAME is a host
// name ([DevCA.IssueClient]), revocation lists
// ([DevCA.WriteCRL]). Keys are written with mode 0600. The command
// "mqttsec certs init --dir DIR" and "mqttsec certs client --dir DIR NAME"
// use it.
//
// # Errors
//
// Every error wraps one of the package's sentinels, which wrap the root
// package's [mqttsec.ReasonError] sentinels: peer refusals are
// [mqttsec.ErrNotAuthorized], an expired certificate is [mqttsec.ErrExpired].
// Errors never contain key material.
//
// # Concurrency
//
// [Reloader] is safe for concurrent use and must be closed. A [Config] is a
// value; the *tls.Config values returned must not be modified after use.
// [DevCA] is not safe for concurrent use.
package tlsconf
