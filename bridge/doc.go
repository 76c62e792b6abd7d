// Package bridge connects a local MQTT broker to a remote one and forwards
// messages between them, secure by construction: the configuration is
// checked before anything connects, the remote is reached over TLS with a
// verified name, passwords come from a file or the environment, and loops,
// floods and oversized packets are stopped at the bridge.
//
// # Configuration
//
// A [Config] is one bridge: the remote URL ("mqtts://host:8883" or
// "wss://host/path"), its [tlsconf.Config] (CA bundle, client certificate,
// pinned keys; reloaded when the files change), the username and password
// source (PasswordFile or PasswordEnv; an inline password needs the loudly
// named InsecurePassword), a unique client ID, the session (clean start,
// expiry) and the topic [Mapping]s with Mosquitto's semantics: pattern,
// direction (in, out, both), QoS, local and remote prefixes.
//
//	bridges:
//	  - name: cloud
//	    remote: "mqtts://broker.example.com:8883"
//	    tls: { ca_file: ca.pem, cert_file: site.pem, key_file: site-key.pem }
//	    username: site1
//	    password_file: bridge.pass        # or password_env: BRIDGE_PASSWORD
//	    client_id: site1-bridge
//	    topics:
//	      - { pattern: "sensors/#", direction: out, qos: 1, local_prefix: "", remote_prefix: "site1/" }
//	      - { pattern: "cmd/#", direction: in, qos: 1, remote_prefix: "site1/" }
//
// [ParseConfigs] decodes such a document strictly (unknown keys are errors
// naming the bridge and the line) and validates it with [ValidateAll];
// [Config.UnmarshalYAML] makes any YAML decoder just as strict, so a larger
// file with a "bridges:" section decodes into []Config directly.
// [Config.Validate] refuses, with a precise error each, a plaintext remote
// without InsecurePlaintext, credentials in the URL, a mapping of "#" both
// ways with loop prevention off, invalid patterns, prefixes with wildcards,
// a missing CA when DisableSystemRoots is set; ValidateAll adds duplicate
// names and client IDs.
//
// # Mosquitto import and findings
//
// [ParseMosquitto] reads the bridge sections of a mosquitto.conf into
// Configs and reports each weakness as a [Finding] with a stable ID
// ([FindingInsecure] "bridge-insecure", [FindingPlaintextPassword]
// "bridge-plaintext-password", [FindingPlaintext] "bridge-plaintext",
// [FindingNoCA] "bridge-no-ca", ...) and its line; [ParseMosquittoLines]
// does the same for lines the caller gathered (several files, or one
// section), with each line's file. It never copies a password and never
// turns on an insecure switch by itself.
// [Config.Findings] reports the insecure switches a valid Config carries.
//
// # Running
//
// [Start] validates, reads the password and TLS files, and runs the bridge
// on two paho autopaho connections (MQTT v5 on both sides), one to the
// remote broker and one to the local broker described by [Local] (a URL,
// or a Dial function; [Pipe] connects an in-process broker without a
// network port):
//
//   - Each mapping subscribes on its source side with no-local (the bridge
//     never receives its own messages back) and retain-as-published, and
//     every forwarded message carries a [LoopKey] user property with the
//     bridge's LoopID: a message that comes back with it, or after MaxHops
//     bridges, is dropped.
//   - Topic, payload, QoS (capped by the mapping and the destination),
//     retain flag and properties (user properties, content type,
//     correlation data, payload format, response topic, message expiry
//     minus the time spent in the bridge) are copied.
//   - At least once for QoS 1 and 2: a message is acknowledged to its
//     source only after the destination acknowledged it. Until then the
//     source keeps it in the bridge's session and redelivers it after a
//     reconnection or restart; duplicates are possible and counted
//     ([Stats]), losses are not.
//   - Order is kept: messages are published in the order received, up to
//     MaxInflight at a time; a publish starts only after the previous one
//     is on the wire. After a lost connection, messages are sent again
//     before newer ones.
//   - Bounded memory: Buffer messages and BufferBytes per direction, and a
//     Maximum Packet Size enforced on the byte stream before a packet is
//     read. Overflow policy: QoS 0 messages beyond the buffer are dropped
//     (counted); for QoS 1 and 2 the bridge stops reading from the source
//     until there is room (backpressure: the source broker keeps them in
//     the bridge's session), and it announces Buffer as its Receive
//     Maximum, so a conforming source never sends more unacknowledged
//     messages than that.
//   - Reconnection with jittered exponential backoff (ReconnectMin to
//     ReconnectMax); a connection that ends quickly (a session taken over
//     by a duplicate client ID) counts as a failure, so two bridges cannot
//     steal a session from each other in a tight loop.
//   - Connection state goes to an [mqttsec.EventSink] (EventConnected,
//     EventDisconnected with the reason, EventError for failed attempts)
//     and, when StatusTopic is set, to a retained "1"/"0" status topic.
//
// [Bridge.Close], or the end of the context given to Start, stops every
// goroutine the bridge started.
//
// # Inside a broker
//
// A broker that runs bridges in its own process (as "mqttsec serve" does)
// serves a [Pipe] as one more listener and starts each bridge with
// Local{Dial: pipe.DialContext}: the bridge is an ordinary client of the
// broker, authenticated and authorized by its Guard, and
// [Config.LocalGrants] lists exactly the permissions to give it
// ([Config.RemoteGrants] those the remote broker must give). Close the
// bridges before the broker.
//
// # Concurrency
//
// A [Bridge] and a [Pipe] are safe for concurrent use. Config, Mapping and Local are
// plain values; Start copies them. ParseConfigs, ParseMosquitto and
// ValidateAll are safe for concurrent use.
package bridge
