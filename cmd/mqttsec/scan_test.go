package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/scan"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// startServe runs "mqttsec serve" in-process with users dev and dev2 (cheap
// bcrypt hashes) and returns its TLS address and state folder. It is the
// development default as a file, with the scanner's address allowed the
// connections and failed logins a scan makes (as an operator would allow
// a scanner): with the default rate limits, the weak-login checks slow the
// address down and every later check is refused with 0x9F.
func startServe(t *testing.T) (addr, dir string) {
	t.Helper()
	dir = t.TempDir()
	pf := auth.NewPasswordFile()
	for _, u := range []string{"dev", "dev2"} {
		h, err := auth.HashPassword([]byte(u+"-password-long"), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.NoError(t, pf.Set(u, h))
		require.NoError(t, os.WriteFile(filepath.Join(dir, u+".pw"), []byte(u+"-password-long\n"), 0o600))
	}
	require.NoError(t, pf.WriteFile(filepath.Join(dir, "passwd")))
	ca, err := tlsconf.EnsureDevCA(filepath.Join(dir, "tls"))
	require.NoError(t, err)
	require.NoError(t, ensureDevPolicy(filepath.Join(dir, "acl.csv")))
	cert, key := ca.ServerFiles()
	cfg := filepath.Join(dir, "mqttsec.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`listeners:
  - address: 127.0.0.1:0
    tls: { cert_file: `+cert+`, key_file: `+key+` }
auth: { password_file: passwd }
acl: { casbin_policy: acl.csv }
broker: { connect_timeout: 3s }
ratelimit:
  connect_per_ip: { rate: 1000, burst: 1000 }
  auth_failures: { slow_after: 1000, max: 2000 }
log: { level: error }
`), 0o600))
	srv, _ := startServeOpts(t, &serveOptions{config: cfg})
	return srv.Addr(0), dir
}

// TestScanServe scans the hardened broker of "mqttsec serve" as it ships,
// through the CLI, with two users: no check of medium severity or more
// fails. The low ones that do fail are real and listed in the report to the
// maintainers: serve does not require client certificates by default, and
// mochi answers some MQTT 3.1.1 CONNECTs with MQTT 5 codes.
func TestScanServe(t *testing.T) {
	t.Parallel()
	addr, dir := startServe(t)
	out, err := execute(newScanCmd(), "", "mqtts://"+addr,
		"--cafile", filepath.Join(dir, "tls", "ca.pem"),
		"--username", "dev", "--password-file", filepath.Join(dir, "dev.pw"),
		"--username2", "dev2", "--password-file2", filepath.Join(dir, "dev2.pw"),
		"--topic-prefix", "devices/dev/",
		"--plaintext-addr", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)),
		"--format", "json", "--fail-on", "medium")
	var rep scan.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	for _, f := range rep.Findings {
		t.Logf("%s %s %s: %s", f.Status, f.Severity, f.ID, f.Evidence)
		require.NotContains(t, f.Evidence, "password-long", "%s leaks a password", f.ID)
	}
	require.Equal(t, 0, exitCode(err), "a check of medium severity or more failed: %v", err)
	require.Empty(t, rep.Failed(scan.Medium))

	status := map[string]scan.Status{}
	for _, f := range rep.Findings {
		status[f.ID] = f.Status
	}
	// The checks that matter ran and passed, rather than being skipped.
	for _, id := range []string{"plaintext-listener", "tls-version", "tls-cipher", "tls-certificate", "anonymous-connect", "empty-password",
		"any-credentials", "wildcard-subscribe", "sys-readable", "publish-any-topic", "publish-invalid-topic",
		"retained-poisoning", "will-acl-bypass", "clientid-takeover", "clientid-oversized", "payload-oversized", "idle-connection"} {
		require.Equal(t, scan.Pass, status[id], id)
	}
}

// TestScanWeakMosquittoCLI scans a weak Mosquitto through the CLI in each
// output format, and checks the exit codes of --fail-on.
func TestScanWeakMosquittoCLI(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, "allow_anonymous true")
	target := "mqtt://" + m.Addr
	quick := []string{"--checks", "plaintext-listener,anonymous-connect,wildcard-subscribe,sys-readable,sys-publish"}

	out, err := execute(newScanCmd(), "", append([]string{target, "--format", "sarif"}, quick...)...)
	require.Equal(t, 1, exitCode(err), out)
	results := requireSARIF(t, []byte(out), "scan")
	require.Len(t, results, 4, "the failed checks only")
	for _, r := range results {
		require.Equal(t, target, r.uri)
		require.Zero(t, r.line)
	}

	out, err = execute(newScanCmd(), "", append([]string{target, "--format", "text"}, quick...)...)
	require.Equal(t, 1, exitCode(err), out)
	require.Contains(t, out, "FAIL  high    anonymous-connect")
	require.Contains(t, out, "fix: Require authentication")
	require.Contains(t, out, "PASS  medium  sys-publish")
	require.Contains(t, out, "(mosquitto version 2.")
	require.Contains(t, out, "4 failed (3 high, 1 medium, 0 low), 1 passed")

	out, err = execute(newScanCmd(), "", append([]string{target, "--format", "json", "--fail-on", "none"}, quick...)...)
	require.Equal(t, 0, exitCode(err), out)
	var generic map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &generic))
	require.Equal(t, target, generic["target"])
	findings := generic["findings"].([]any)
	require.Len(t, findings, len(scan.Checks()), "one entry per check, selected or not")
	for _, f := range findings {
		for _, k := range []string{"id", "title", "severity", "status", "evidence", "remediation"} {
			require.IsType(t, "", f.(map[string]any)[k], k)
		}
	}

	for _, bad := range [][]string{
		{target, "--format", "xml"},
		{target, "--fail-on", "critical"},
		{"http://" + m.Addr},
		{target, "--cert", "x.pem"},
		{target, "--password-file", filepath.Join(t.TempDir(), "missing")},
		{"mqtt://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))},
	} {
		out, err := execute(newScanCmd(), "", bad...)
		require.Equal(t, 2, exitCode(err), "%v: %s %v", bad, out, err)
	}
}
