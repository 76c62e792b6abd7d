// Package scan checks a live MQTT broker for security weaknesses, from the
// outside, as a client would: the library behind `mqttsec scan`, usable from
// a Go test against a broker under test.
//
//	rep, err := scan.Run(ctx, "mqtts://broker.example.com:8883", scan.Options{
//		Principal: scan.Credentials{Username: "alice", Password: pw},
//		TLS:       &tls.Config{RootCAs: pool},
//	})
//	if err != nil {
//		return err
//	}
//	for _, f := range rep.Failed(scan.Medium) {
//		fmt.Println(f.ID, f.Evidence)
//	}
//
// # Checks
//
// [Checks] lists every check with its stable ID, title, severity and
// remediation. [Run] runs them one at a time, each bounded by
// Options.CheckTimeout, and reports one [Finding] per check: fail (the
// weakness is there), pass (the broker resisted) or skip (the check could not
// run or decide; the evidence says why). The checks cover:
//
//   - TLS: versions below 1.2 (a handshake with MaxVersion 1.1), weak TLS 1.2
//     cipher suites (each offered alone), the server certificate (chain,
//     host name, validity, key and signature; expiry within 30 days) and
//     whether a client certificate is required;
//   - listeners: plaintext MQTT on the target or, for a TLS target, on port
//     1883 of the same host;
//   - authentication: anonymous CONNECT (MQTT 3.1.1 and 5), an empty
//     password, made-up credentials, and, only with Options.Intrusive, a
//     short list of default credentials (throttled, stopping at the first
//     hit);
//   - authorization: SUBSCRIBE to "#", "+/#" and "$SYS/#" (the broker version
//     is read from $SYS), PUBLISH to an arbitrary topic and to $SYS, and
//     PUBLISH with a wildcard or empty topic name;
//   - between two principals: retained-message poisoning, will-message ACL
//     bypass, client-ID takeover of a live session;
//   - limits: empty and 64 KiB client IDs, an oversized payload, the CONNECT
//     rate (only with Options.Intrusive; bounded by Options.ConnectAttempts)
//     and a socket that never sends CONNECT.
//
// A publish is judged by what a second connection receives, since an MQTT
// 3.1.1 PUBACK cannot say "denied"; the MQTT 5 reason code decides only when
// no subscriber is allowed. A SUBSCRIBE grant is confirmed with a probe
// message, since some brokers (Mosquitto) grant and then filter deliveries.
//
// # Probes and cleanup
//
// Probe topics live under a random level, "mqttsec-scan-<random>", below
// Options.TopicPrefix; client IDs start with "mqttsec-". Retained probe
// messages are removed and every connection is closed before Run returns.
// The MQTT 5 client is paho.golang; the MQTT 3.1.1 client is this package's
// own, so that it can send what a library refuses to. Every packet read is
// bounded by Options.MaxPacketSize, whatever size the broker claims.
//
// # Secrets
//
// Passwords never appear in a finding. Connections that carry credentials
// over TLS require a verified server certificate (unless
// Options.TLS.InsecureSkipVerify is set); probes that send nothing secret do
// not verify, so that a broker with an untrusted certificate can still be
// scanned for what an anonymous attacker sees.
//
// # JSON
//
// A [Report] marshals to the documented contract of `mqttsec scan --format
// json`:
//
//	{"target": "mqtt://127.0.0.1:1883", "broker": "mosquitto version 2.0.11",
//	 "started": "2026-...", "elapsed_ms": 9120,
//	 "findings": [{"id": "anonymous-connect", "title": "...",
//	   "severity": "high|medium|low|info", "status": "fail|pass|skip",
//	   "evidence": "...", "remediation": "...", "elapsed_ms": 12}]}
//
// with one entry per check, in the order of [Checks]. IDs are stable.
//
// # Concurrency
//
// Run may be called from several goroutines at once; each call has its own
// state. The Options.Progress callback is called from the goroutine that
// called Run. [Check] values are immutable.
package scan
