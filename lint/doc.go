// Package lint reports security findings in broker configuration files,
// with the file and line of each: the library behind `mqttsec lint`.
//
//	rep, err := lint.Files([]string{"/etc/mosquitto/mosquitto.conf"}, lint.Options{})
//	if err != nil {
//		return err
//	}
//	for _, f := range rep.Failed(lint.Medium) {
//		fmt.Printf("%s:%d: %s: %s\n", f.File, f.Line, f.ID, f.Evidence)
//	}
//
// # Files
//
// [Files] reads each file it is given, detects its format (or takes
// Options.Format, one of [Formats]) and lints it:
//
//   - a Mosquitto 2.0 mosquitto.conf, with the ".conf" files of its
//     include_dir folders and the password_file, acl_file and key files it
//     references (relative paths are taken from the referencing file's
//     folder). Listeners are modelled as Mosquitto does, with
//     per_listener_settings; bridge sections are checked on their own;
//   - a Mosquitto (or mqttsec) password file;
//   - a Mosquitto acl_file, read by acl.ParseMosquitto;
//   - a Casbin policy for acl.Model, read by acl.ParsePolicy.
//
// ACL files are also run through acl.Lint, whose findings appear with
// their own rule IDs (acl-shadowed, pattern-without-placeholder,
// acl-invalid-rule; kinds this package does not know yet as acl-finding).
// The YAML configuration of mqttsec is not read yet: it will be one more
// format.
//
// # Findings
//
// Each [Finding] has a stable ID, described by [Rules]: the configuration
// (allow-anonymous, plaintext-listener, tls-version, tls-ciphers,
// identity-without-certificate, no-acl, retain-source-unchecked,
// clientid-pattern-unbound), limits (no-message-size-limit,
// no-keepalive-limit, no-connection-limit, no-queue-limit; reported only
// when a listener is reachable from the network), files
// (world-readable-file, file-error), password files (weak-password-hash,
// password-not-hashed), ACLs (anonymous-wildcard-acl and acl.Lint's) and
// bridges, read by package bridge's importer (bridge-insecure,
// bridge-plaintext-password, bridge-no-ca, bridge-plaintext, bridge-loop,
// bridge-invalid). Evidence never contains a password or a hash.
//
// A finding's JSON form is that of package scan's findings plus "file" and
// "line" (0 for the file as a whole):
//
//	{"files": ["mosquitto.conf", "passwd"],
//	 "findings": [{"id": "allow-anonymous", "title": "Anonymous clients allowed",
//	   "severity": "high", "status": "fail", "evidence": "allow_anonymous true: ...",
//	   "remediation": "...", "file": "mosquitto.conf", "line": 3}]}
//
// # Concurrency
//
// Files may be called from several goroutines at once. Reports, findings
// and rules are plain values.
package lint
