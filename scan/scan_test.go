package scan_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/scan"
)

// byID indexes a report's findings.
func byID(t *testing.T, rep scan.Report) map[string]scan.Finding {
	t.Helper()
	m := map[string]scan.Finding{}
	for _, f := range rep.Findings {
		_, dup := m[f.ID]
		require.False(t, dup, "two findings for %s", f.ID)
		m[f.ID] = f
	}
	require.Len(t, m, len(scan.Checks()), "one finding per check")
	return m
}

// requireStatus asserts the status of each listed check, printing the
// whole report when one differs.
func requireStatus(t *testing.T, rep scan.Report, want map[string]scan.Status) {
	t.Helper()
	got := byID(t, rep)
	for id, st := range want {
		f, ok := got[id]
		require.True(t, ok, "no finding %s", id)
		if f.Status != st {
			b, _ := json.MarshalIndent(rep, "", "  ")
			t.Fatalf("%s: status %s, want %s: %s\nreport:\n%s", id, f.Status, st, f.Evidence, b)
		}
	}
}

// mosquittoPasswd writes a Mosquitto password file ("$7$", cheap
// iterations: the tests verify many logins) and returns its path.
func mosquittoPasswd(t *testing.T, dir string, users map[string]string) string {
	t.Helper()
	pf := auth.NewPasswordFile()
	for u, p := range users {
		h, err := auth.HashPassword([]byte(p), auth.HashOptions{Scheme: auth.MosquittoPBKDF2, PBKDF2Iterations: 1000})
		require.NoError(t, err)
		require.NoError(t, pf.Set(u, h))
	}
	path := filepath.Join(dir, "passwd")
	require.NoError(t, pf.WriteFile(path))
	return path
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

// TestWeakMosquitto scans a deliberately weak real Mosquitto (anonymous,
// plaintext, no ACL) with the default options and expects the scanner to
// name each weakness, within 30 seconds.
func TestWeakMosquitto(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, "allow_anonymous true")
	start := time.Now()
	rep, err := scan.Run(context.Background(), "mqtt://"+m.Addr, scan.Options{})
	elapsed := time.Since(start)
	require.NoError(t, err)
	require.Less(t, elapsed, 30*time.Second, "a non-intrusive scan of a weak broker")
	t.Logf("scan took %s", elapsed.Round(time.Millisecond))
	require.InDelta(t, elapsed.Milliseconds(), rep.ElapsedMS, 1000)

	requireStatus(t, rep, map[string]scan.Status{
		"plaintext-listener":    scan.Fail,
		"anonymous-connect":     scan.Fail,
		"empty-password":        scan.Fail,
		"any-credentials":       scan.Fail,
		"wildcard-subscribe":    scan.Fail,
		"sys-readable":          scan.Fail,
		"publish-any-topic":     scan.Fail,
		"clientid-takeover":     scan.Fail,
		"clientid-oversized":    scan.Fail,
		"payload-oversized":     scan.Fail,
		"idle-connection":       scan.Fail,
		"sys-publish":           scan.Pass, // Mosquitto refuses client publishes to $SYS
		"publish-invalid-topic": scan.Pass,
		"clientid-empty":        scan.Pass,
		"v3-return-code":        scan.Pass,
		"tls-version":           scan.Skip, // plaintext target
		"tls-certificate":       scan.Skip,
		"default-credentials":   scan.Skip, // intrusive
		"connect-rate":          scan.Skip,
		"retained-poisoning":    scan.Skip, // one principal: anonymous
		"will-acl-bypass":       scan.Skip,
	})
	require.Contains(t, rep.Broker, "mosquitto version 2.")
	f := byID(t, rep)
	require.Contains(t, f["anonymous-connect"].Evidence, "MQTT 5 CONNACK 0x00")
	require.Contains(t, f["anonymous-connect"].Evidence, "MQTT 3.1.1 return code 0")
	require.Contains(t, f["wildcard-subscribe"].Evidence, "received")
	require.Equal(t, scan.High, f["anonymous-connect"].Severity)
	require.Len(t, rep.Failed(scan.High), 7)

	// Nothing the scan published is left behind: a fresh subscriber to
	// everything receives no retained probe.
	leftovers := retainedUnder(t, m.Addr, "#")
	require.Empty(t, leftovers)
}

// TestMosquittoWithACL scans a Mosquitto with passwords and an ACL as
// alice, with bob as the second principal: the ACL holds, Mosquitto's
// grants of "#" are seen to deliver nothing, and client-ID takeover is
// reported (Mosquitto lets any user take over any client ID).
func TestMosquittoWithACL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	passwd := mosquittoPasswd(t, dir, map[string]string{"alice": "alice-secret-pw", "bob": "bob-secret-pw"})
	aclFile := writeFile(t, dir, "acl", "user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite bob/#\n")
	m := testenv.StartMosquitto(t, "allow_anonymous false", "password_file "+passwd, "acl_file "+aclFile, "message_size_limit 65536")
	rep, err := scan.Run(context.Background(), "mqtt://"+m.Addr, scan.Options{
		Principal:   scan.Credentials{Username: "alice", Password: []byte("alice-secret-pw")},
		Second:      &scan.Credentials{Username: "bob", Password: []byte("bob-secret-pw")},
		TopicPrefix: "alice/",
		IdleWait:    time.Second,
	})
	require.NoError(t, err)
	requireStatus(t, rep, map[string]scan.Status{
		"plaintext-listener": scan.Fail,
		"anonymous-connect":  scan.Pass,
		"empty-password":     scan.Pass,
		"any-credentials":    scan.Pass,
		"wildcard-subscribe": scan.Pass, // granted, then filtered
		"publish-any-topic":  scan.Pass,
		"retained-poisoning": scan.Pass,
		"will-acl-bypass":    scan.Pass,
		"clientid-takeover":  scan.Fail,
		"payload-oversized":  scan.Pass,
	})
	f := byID(t, rep)
	require.Contains(t, f["wildcard-subscribe"].Evidence, "deliveries are filtered")
	require.Contains(t, f["clientid-takeover"].Evidence, `user "bob"`)
	for _, fd := range rep.Findings {
		require.NotContains(t, fd.Evidence, "secret-pw", "%s leaks a password", fd.ID)
	}
	require.Empty(t, retainedUnder(t, m.Addr, "alice/#", "alice", "alice-secret-pw"))
}

// TestMosquittoWildcardLeak: with an ACL that lets bob read everything,
// bob's "#" receives what alice publishes under her own prefix.
func TestMosquittoWildcardLeak(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	passwd := mosquittoPasswd(t, dir, map[string]string{"alice": "alice-secret-pw", "bob": "bob-secret-pw"})
	aclFile := writeFile(t, dir, "acl", "user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite #\n")
	m := testenv.StartMosquitto(t, "allow_anonymous false", "password_file "+passwd, "acl_file "+aclFile)
	rep, err := scan.Run(context.Background(), "mqtt://"+m.Addr, scan.Options{
		Principal:   scan.Credentials{Username: "alice", Password: []byte("alice-secret-pw")},
		Second:      &scan.Credentials{Username: "bob", Password: []byte("bob-secret-pw")},
		TopicPrefix: "alice/",
		Checks:      []string{"wildcard-subscribe"},
	})
	require.NoError(t, err)
	requireStatus(t, rep, map[string]scan.Status{"wildcard-subscribe": scan.Fail})
	require.Contains(t, byID(t, rep)["wildcard-subscribe"].Evidence, `user "bob" subscribed to "#" too and received 1 message(s) on 1 topic(s), e.g. "alice/mqttsec-scan-`)
}

// TestIntrusive finds a default account and the missing CONNECT rate
// limit, and stops guessing at the first hit.
func TestIntrusive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	passwd := mosquittoPasswd(t, dir, map[string]string{"guest": "guest", "alice": "alice-secret-pw"})
	m := testenv.StartMosquitto(t, "allow_anonymous false", "password_file "+passwd)
	rep, err := scan.Run(context.Background(), "mqtt://"+m.Addr, scan.Options{
		Principal:          scan.Credentials{Username: "alice", Password: []byte("alice-secret-pw")},
		Intrusive:          true,
		Checks:             []string{"any-credentials", "default-credentials", "connect-rate"},
		CredentialInterval: 10 * time.Millisecond,
		ConnectAttempts:    20,
	})
	require.NoError(t, err)
	requireStatus(t, rep, map[string]scan.Status{
		"any-credentials":     scan.Pass,
		"default-credentials": scan.Fail,
		"connect-rate":        scan.Fail,
		"anonymous-connect":   scan.Skip, // not selected
	})
	f := byID(t, rep)
	require.Contains(t, f["default-credentials"].Evidence, `user "guest"`)
	require.NotContains(t, f["default-credentials"].Evidence, `"guest" with "guest"`)
	require.Contains(t, f["connect-rate"].Evidence, "all 20 CONNECTs")

	// Stopped at the first hit: no user after guest in the list was tried.
	log, err := os.ReadFile(filepath.Join(m.Dir, "mosquitto.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), "u'guest'")
	before, after := map[string]bool{}, map[string]bool{}
	hit := false
	for _, c := range scan.DefaultCredentialList() {
		switch {
		case c.Username == "guest":
			hit = true
		case hit:
			after[c.Username] = true
		default:
			before[c.Username] = true
		}
	}
	require.NotEmpty(t, after)
	for u := range after {
		if !before[u] {
			require.NotContains(t, string(log), "u'"+u+"'", "tried %q after the hit", u)
		}
	}
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, target := range []string{"http://x", "mqtt://", "mqtt://u:p@host", "mqtt://h:99999", "mqtt://h/path", "ws://h"} {
		_, err := scan.Run(ctx, target, scan.Options{})
		require.ErrorIs(t, err, scan.ErrTarget, target)
	}
	_, err := scan.Run(ctx, "mqtt://127.0.0.1:1", scan.Options{Checks: []string{"no-such-check"}})
	require.ErrorIs(t, err, scan.ErrTarget)

	port := testenv.FreePort(t) // nothing listens there
	rep, err := scan.Run(ctx, "mqtt://127.0.0.1:"+itoa(port), scan.Options{CheckTimeout: 2 * time.Second})
	require.ErrorIs(t, err, scan.ErrUnreachable)
	require.Empty(t, rep.Findings)

	// A cancelled scan reports the remaining checks as skipped.
	m := testenv.StartMosquitto(t, "allow_anonymous true")
	cctx, cancel := context.WithCancel(ctx)
	n := 0
	rep, err = scan.Run(cctx, "mqtt://"+m.Addr, scan.Options{Progress: func(scan.Finding) {
		if n++; n == 7 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, rep.Findings, len(scan.Checks()))
	last := rep.Findings[len(rep.Findings)-1]
	require.Equal(t, scan.Skip, last.Status)
	require.Equal(t, "the scan was cancelled", last.Evidence)
}

func TestChecksStable(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range scan.Checks() {
		require.False(t, seen[c.ID], "duplicate %s", c.ID)
		seen[c.ID] = true
		require.NotEmpty(t, c.Title, c.ID)
		require.NotEmpty(t, c.Remediation, c.ID)
	}
	// The IDs the JSON contract promises.
	for _, id := range []string{"plaintext-listener", "anonymous-connect", "empty-password", "wildcard-subscribe",
		"sys-readable", "publish-any-topic", "clientid-takeover", "tls-version", "tls-certificate"} {
		require.True(t, seen[id], id)
	}
}

func TestReportJSON(t *testing.T) {
	t.Parallel()
	rep := scan.Report{Target: "mqtt://h:1883", Findings: []scan.Finding{{ID: "a", Title: "A", Severity: scan.Medium, Status: scan.Fail, Evidence: "e", Remediation: "r"}}}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var generic struct {
		Target   string           `json:"target"`
		Findings []map[string]any `json:"findings"`
	}
	require.NoError(t, json.Unmarshal(b, &generic))
	require.Equal(t, "mqtt://h:1883", generic.Target)
	f := generic.Findings[0]
	for k, v := range map[string]string{"id": "a", "title": "A", "severity": "medium", "status": "fail", "evidence": "e", "remediation": "r"} {
		require.Equal(t, v, f[k], k)
	}
	var back scan.Report
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, scan.Medium, back.Findings[0].Severity)

	for _, s := range []scan.Severity{scan.Info, scan.Low, scan.Medium, scan.High} {
		p, err := scan.ParseSeverity(s.String())
		require.NoError(t, err)
		require.Equal(t, s, p)
	}
	_, err = scan.ParseSeverity("critical")
	require.Error(t, err)
	_, err = scan.Severity(9).MarshalText()
	require.Error(t, err)
}

func itoa(n int) string { return strconv.Itoa(n) }

// retainedUnder returns the topics of retained messages matching filter,
// read by a fresh MQTT 3.1.1 subscriber (with the given user name and
// password, if any).
func retainedUnder(t *testing.T, addr, filter string, userPass ...string) []string {
	t.Helper()
	user, pass := "", ""
	if len(userPass) == 2 {
		user, pass = userPass[0], userPass[1]
	}
	code, c, err := testbroker.DialV3(t, addr, "leftover-check", user, pass)
	require.NoError(t, err)
	require.Zero(t, code)
	defer c.Disconnect()
	granted, err := c.Subscribe(filter, 0)
	require.NoError(t, err)
	require.Less(t, granted, byte(0x80))
	var topics []string
	for {
		topic, _, err := c.ReadPublish(time.Second)
		if err != nil {
			return topics
		}
		topics = append(topics, topic)
	}
}
