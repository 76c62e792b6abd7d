// Package integrity signs, and optionally encrypts, MQTT payloads end to
// end with COSE (RFC 9052, through github.com/veraison/go-cose), so that a
// bridge, a compromised broker or a misconfigured ACL can neither alter nor
// forge a message, replay it, or move it to another topic. TLS protects one
// hop; a signature protects the message from its sender to every receiver.
//
// # What is signed
//
// A [Signer] makes a COSE_Sign1 with EdDSA (Ed25519) or ES256 (ECDSA P-256).
// Its protected header holds the algorithm, the key ID, the sender's run
// ([HeaderLabelEpoch]: when the Signer was created), a sequence number
// ([HeaderLabelSequence]) and the signing time ([HeaderLabelTime]), the
// last three listed as critical. The topic name is the external additional
// data, so a message signed for one topic does not verify on another.
//
// # Carriers
//
// [Envelope] replaces the payload with the COSE_Sign1 that embeds it: it
// works with MQTT 3.1.1 and 5, and [Protect] checks it at the broker.
// [Detached] leaves the payload byte for byte as it is and carries the
// COSE_Sign1 without payload in the MQTT v5 user property [PropertyName]
// (base64url): consumers that do not verify see nothing new.
//
// # Keys
//
// Keys are JWKs (RFC 7517): OKP Ed25519 and EC P-256 keys for signatures,
// "oct" keys for content encryption. A verification key carries a "sub"
// member: the subject (Identity.Subject) of the only client allowed to
// publish with it. A [KeySource] finds keys by ID: a [Keyring] (a JWK Set
// file, [LoadKeyring]), a [JWKS] URL (https only, refreshed, re-fetched for
// an unknown key ID at most every MinRefresh), or several of them
// ([Sources]). Keys rotate by key ID: publish the new key, let the device
// sign with it, withdraw the old one. The `mqttsec keys` command generates
// key pairs and edits keyring files.
//
// # Verification
//
// A [Verifier] refuses a message at the first check it fails, cheapest
// first: the envelope's shape (bounded sizes, parsed before any
// allocation-heavy decoding), the protected header, the timestamp (at most
// MaxAge old, at most Skew ahead), the key (known, of the message's
// algorithm), the key's binding (at the broker: to the publishing client;
// everywhere: to the [Rule]'s signers and "%u" level), the topic's
// encryption requirement, the signature, and last the replay window. Each
// failure wraps its own sentinel ([ErrUnsigned], [ErrMalformed],
// [ErrUnknownKey], [ErrAlgorithm], [ErrKeyNotBound], [ErrSignerNotAllowed],
// [ErrNotEncrypted], [ErrBadSignature], [ErrReplay], [ErrExpired],
// [ErrFuture], [ErrDecrypt]), tested with [errors.Is].
//
// # Replay protection
//
// A verifier keeps, per key ID, the sender's run, the highest sequence
// number seen and a bitmap of the [WindowSize] (128) numbers below it: a
// number is accepted once, in any order within the window. The state costs
// about 120 bytes plus the key ID per sender (138 bytes measured with
// 16-byte key IDs); at most MaxSenders senders are kept (default
// [DefaultMaxSenders], about 1.4 MB), the least recently seen is evicted.
// State exists only for keys the key source knows and whose signature
// verified, so made-up key IDs cost nothing. A message from a sender whose
// state was evicted is accepted only if it was signed after every message
// of the evicted senders: what was forgotten cannot be replayed. Set
// MaxSenders at least to the number of signing keys.
//
// A restarted sender (a new Signer) has a later epoch: the verifier accepts
// its first message and from then on refuses every message of the earlier
// run. Nothing is stored across restarts; the sender's clock must not go
// back, and two processes must not sign with one key at once.
//
// The state is in memory: a restarted verifier accepts, once more, a
// message it had accepted less than MaxAge before. Keep MaxAge as short as
// the delivery delays allow. A retained message is delivered again to
// every new subscription: a receiver accepts it once while it is younger
// than MaxAge, and refuses it after.
//
// # Brokers
//
// [Protect] wraps the broker's authorizer (acl.Casbin, say) for a
// [mqttsec.Guard]: on the topics a [Policy] protects, a PUBLISH must be an
// envelope signed with a key bound to the publisher's authenticated
// subject; otherwise it is refused with reason code 0x99 (payload format
// invalid: unsigned, malformed, or plaintext where encryption is required)
// or 0x87 (not authorized: every other failure), see [Code]. MQTT 3.1.1
// publishers' refused messages are dropped and reported as events. The
// check costs one signature verification. The broker needs only public
// keys, never content keys.
//
// Both carriers are checked at the broker: the mochi adapter passes a
// PUBLISH's MQTT v5 user properties to the Guard (mqttsec.Message), where
// the detached signature is found. A will message on a protected topic is
// checked at CONNECT and again when it is sent, for its signature and its
// key's binding; its freshness and replay are left to its receivers (the
// broker may send it long after the client connected).
//
// # Clients
//
// [Sender] signs what a paho.golang (autopaho) client publishes; a
// [Receiver] is its OnPublishReceived handler and hands the application
// only the messages that verify, decrypted (or, with DeliverRefused, the
// others too, flagged with the reason).
//
// # Confidentiality
//
// A [Rule] with an EncryptionKey makes the Sender encrypt the payload as a
// COSE_Encrypt0 with AES-256-GCM under that content key, bound to the
// topic, and sign the ciphertext: a bridge or a cloud broker in the middle
// checks the signature without seeing the plaintext. Receivers decrypt
// with the key the message names ([Verifier.Open]).
//
// # Concurrency
//
// Every type of the package is safe for concurrent use. A [JWKS] runs a
// goroutine until Close.
package integrity
