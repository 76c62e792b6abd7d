// Package config reads the YAML configuration of an mqttsec broker and
// builds from it the [mqttsec.Guard] that decides for the broker, the TLS
// configurations of its listeners, the watchers that keep both current,
// and (for mochi-mqtt) the broker itself. `mqttsec serve --config FILE`
// is this package; a Go program with its own broker builds the same
// Guard from the same file:
//
//	f, err := config.Load("mqttsec.yaml")
//	if err != nil {
//		return err // "mqttsec.yaml:7: listeners[0].address: plaintext listener on ..."
//	}
//	rt, err := f.Open(ctx, config.Options{})
//	if err != nil {
//		return err
//	}
//	defer rt.Close()
//	guard := rt.Guard()          // for any broker adapter
//	tlsCfg := rt.ServerTLS(0)    // listener 0's *tls.Config, following reloads
//	srv, err := rt.Server()      // or a complete mochi-mqtt broker
//
// # The file
//
//	listeners:
//	  - address: "127.0.0.1:1883"        # plaintext: loopback only unless insecure_plaintext: true
//	  - address: ":8883"
//	    tls:
//	      cert_file: server.pem
//	      key_file: server-key.pem       # not readable by others
//	      client_ca_file: ca.pem         # client certificates verified
//	      client_auth: optional          # none | optional | required (the default with a CA)
//	      crl_files: [ca.crl]
//	      min_version: "1.2"             # or "1.3"
//	  - address: ":8084"
//	    websocket: true                  # with tls: wss
//	    tls: { cert_file: server.pem, key_file: server-key.pem }
//	auth:
//	  anonymous: false
//	  password_file: passwd               # mosquitto_passwd or `mqttsec passwd`
//	  certificate: { username_from: cn }  # cn | san-dns | san-email | san-uri | fingerprint
//	  jwt:
//	    algorithms: [ES256]
//	    public_key_file: issuer.pub       # or hmac_secret_file, hmac_secret_env, jwks_url
//	    issuer: https://id.example.com
//	    audience: mqtt.example.com
//	acl:
//	  acl_file: aclfile                   # Mosquitto acl_file syntax
//	  casbin_policy: policy.csv           # acl.Model policy; either or both
//	  wildcard: { deny_root_wildcards: true, admins: [admin] }
//	  grants: narrow                      # how a token's acl claim combines: narrow | widen | ignore
//	clientid:
//	  takeover: owner                     # owner | deny | allow
//	  max_length: 128
//	  bind: ["{username}-*", "{cn}"]      # client IDs tied to identities
//	ratelimit:                            # on by default; these change the defaults
//	  connect_per_ip: { rate: 10, burst: 20 }     # per second
//	  publish: { rate: 100, burst: 200 }          # messages per second per connection
//	  bytes: { rate: 1048576, burst: 2097152 }    # payload bytes per second per connection
//	  max_payload: 262144
//	  auth_failures: { max: 5, ban: 5m }          # per address: slowed, then banned
//	  bans_file: bans                             # the administrator's bans, reloaded on SIGHUP
//	limits:                               # memory bounds; every one is on by default
//	  sessions_per_user: 100
//	  client_backlog: 8388608             # bytes queued for a client before it is cut off
//	  subscriptions: 100
//	broker:
//	  max_session_expiry: 24h
//	  max_clients: 10000
//	  connect_timeout: 10s
//	bridges:                              # bridge.Config; run inside the broker
//	  - name: cloud
//	    remote: "mqtts://cloud.example.com:8883"
//	    tls: { ca_file: cloud-ca.pem }
//	    username: site1
//	    password_file: site1.pass
//	    client_id: site1-bridge
//	    topics:
//	      - { pattern: "sensors/#", direction: out, qos: 1, remote_prefix: "site1/" }
//	redis: { address: "127.0.0.1:6379", prefix: "mqttsec:" }   # cluster-wide state
//	log: { level: info, format: json }
//	metrics: { address: "127.0.0.1:9100" }
//
// Every key is a field of [File] (its yaml tag); the field's comment says
// what it does and what its zero value means. Every default is the secure
// choice. Relative paths are taken from the folder of the file.
//
// # What is refused
//
// [Parse] decodes strictly: an unknown key (a typo), a key given twice, a
// value of the wrong type or out of range, keys that contradict each other
// and a second YAML document are errors, each an [*Error] that names the
// file, the line and the key:
//
//	mqttsec.yaml:3: listeners[0].tls_file: unknown key "tls_file"
//
// It also refuses, with [ErrInsecure] and the name of the switch that
// would accept it:
//
//   - a plaintext listener on an address that is not loopback
//     (insecure_plaintext: true on the listener);
//   - anonymous access together with such a listener
//     (auth.insecure_anonymous_plaintext: true);
//   - anonymous access together with a websocket listener: mochi's
//     websocket listener accepts any Origin, so any web page a user opens
//     could connect through the browser (insecure_any_origin: true on the
//     listener). Client certificates are not offered on websocket
//     listeners at all: the broker cannot see them there, and a browser
//     presents its certificate for any page's connection.
//
// [File.Check], which [File.Open] runs first, refuses missing files and
// files with unsafe permissions, the configuration file itself included:
// a file writable by its group or by others, or owned by a user other
// than root or the broker's, and a secret (a TLS key, the password file,
// an HMAC secret) readable by others (insecure_file_permissions: true
// accepts them). The switches
// that are set are logged at warn level on every start ([File.Insecure]).
//
// A redis section on a non-loopback address without TLS is refused too
// (redis.insecure_plaintext: true accepts it).
//
// # Authentication and authorization
//
// The authenticators form one auth.Chain, tried in this order: a client
// certificate (auth.X509 for the listener the client used, on listeners
// with a client_ca_file), a JWT (a password with the shape of a token), a
// user name and password (auth.Passwords), anonymous access. The first
// that applies decides; when none applies the CONNECT is refused (0x86).
// On the in-memory listener of the bridges, only the bridges authenticate.
// A ratelimit.Gate in front of the chain bounds the verifications that run
// at once.
//
// The acl_file and the Casbin policy are loaded into one policy of model
// acl.Model: a request is allowed when some allow rule of either file
// matches it and no deny rule of either does. Deny wins, and nothing is
// allowed that no rule allows. Policy lines with an unknown act or effect
// or an invalid topic filter are refused (Casbin would load them and never
// match them, so a misspelt deny would not deny). In front of the policy,
// an acl.WildcardPolicy refuses subscriptions that start with a wildcard
// ("#", "+/#") to everyone but the wildcard admins, and $SYS to everyone
// but its sys_subjects.
//
// Client IDs are checked before authentication by a clientid.Policy (the
// defaults when the clientid section is absent: 1 to 128 characters of
// clientid.DefaultChars), tied to identities by the section's bind
// templates, and held in a clientid.Registry that refuses (0x85) a
// takeover by another identity ("owner", the default), by anyone ("deny"),
// or lets anyone take over ("allow", insecure).
//
// Rates, caps and bans (package ratelimit) apply with or without the
// ratelimit section: a ratelimit.Limiter is the Guard's Limiter (CONNECT
// rates per address and overall, failed logins slowed and then banned per
// address and per user name, connections per address and per user,
// message, byte and subscription rates per connection, flooders
// disconnected with 0x96, flapping client IDs banned) and a
// ratelimit.Gate bounds the credential verifications that run at once. A
// ban, automatic or from the bans file, disconnects the sessions it
// covers.
//
// With a redis section (package redisstore), the brokers of a cluster that
// share it share their security state: the client-ID registry (a takeover
// across brokers is refused as on one), the ban list, the CONNECT and
// failed-login limits per address and per user name, and kicks. While
// Redis is unreachable, CONNECTs are refused with 0x88 unless
// redis.insecure_fail_open; rates fall back to each broker's memory unless
// redis.rate_fail_closed. The policy files stay each broker's own.
//
// Bridges (package bridge) run inside the broker when it is built with
// [Runtime.Server]: each connects to the local broker through an in-memory
// listener ([BridgeListener], no network port) with a password made at
// start, as the identity "bridge:NAME" ([MethodBridge]), which is allowed
// exactly what its mappings need (bridge.Config.LocalGrants) and nothing
// else, is exempt from the rates of a connection (it carries many devices'
// traffic) but not from the memory bounds, and whose local client ID is
// exempt from the clientid binding. A bridge's max_packet_size defaults to
// the payload limit, so that the remote never sends what this broker
// would refuse.
//
// # Reloads
//
// The password file, the policy files, the TLS material of every listener
// (certificates, keys, CA bundles, CRLs) and the JWT key files are watched
// and reloaded when they change, and all of them at once, the bans file
// too, by [Runtime.Reload] (serve calls it on SIGHUP). A file that fails to load
// keeps its previous content in force and is reported. Every watcher
// reports to the Guard, which revalidates live sessions after each reload:
// a user removed from the password file or given a new password, a client
// certificate revoked by a new CRL, a token whose key is gone are
// disconnected. The configuration file itself is read once: restart to
// change it.
//
// # Security events
//
// Every security event of the Guard and of the watchers is one log record
// ([EventLogger]) with the message "security event" and these attributes
// (absent when empty), a stable interface: event ([KeyEvent]: the kind,
// such as connect_denied), client_id, username, remote_addr, listener,
// topic, code ("0x87"), reason ("not authorized"), source, file and error.
// A client's per-message denials are written once per second per client
// and kind; the record of the event "suppressed" counts those left out
// (count), and the metrics count them all. With format json (the default)
// each is one JSON line:
//
//	{"time":"...","level":"WARN","msg":"security event","event":"publish_denied","client_id":"a1",
//	 "username":"alice","remote_addr":"127.0.0.1:34302","topic":"devices/bob/cmd","code":"0x87",
//	 "reason":"not authorized","error":"mqttsec: not authorized: acl"}
//
// No password or token is ever logged.
//
// # Metrics
//
// With a metrics section, an HTTP server on its address serves Prometheus
// metrics at /metrics: mqttsec_events_total{kind, code} counts every event
// by kind and reason code (connected, connect_denied with 0x86 or 0x87,
// publish_denied, ...), next to the Go runtime and process collectors.
//
// # Concurrency
//
// A [File] is a plain value, safe to share once parsed. A [Runtime] is
// safe for concurrent use and runs goroutines until [Runtime.Close]. A
// [Server] is a mochi-mqtt server; see its methods.
package config
