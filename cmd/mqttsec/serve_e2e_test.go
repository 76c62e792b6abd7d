package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// serveProcess is "mqttsec serve" running as a process.
type serveProcess struct {
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error // valid after done
}

// startServeProcess runs the built binary with args and waits until it
// logs that every listener listens. It is killed when the test ends.
func startServeProcess(t *testing.T, listeners int, args ...string) *serveProcess {
	t.Helper()
	p := &serveProcess{cmd: exec.Command(mqttsecBinary(t), args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	require.NoError(t, p.cmd.Start())
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("serve stdout:\n%s\nserve stderr:\n%s", p.stdout.String(), p.stderr.String())
		}
	})
	require.Eventually(t, func() bool {
		select {
		case <-p.done:
			t.Fatalf("serve exited at start: %v\n%s", p.err, p.stderr.String())
		default:
		}
		return len(p.addrs()) == listeners
	}, 30*time.Second, 20*time.Millisecond, "serve did not listen")
	return p
}

// logLines returns the JSON records serve wrote to stderr.
func (p *serveProcess) logLines() []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// addrs maps listener names to the addresses serve logged.
func (p *serveProcess) addrs() map[string]string {
	out := map[string]string{}
	for _, m := range p.logLines() {
		if m["msg"] == "listening" {
			out[m["listener"].(string)] = m["address"].(string)
		}
	}
	return out
}

// events returns the security events serve logged of a kind.
func (p *serveProcess) events(kind string) []map[string]any {
	var out []map[string]any
	for _, m := range p.logLines() {
		if m["msg"] == "security event" && m["event"] == kind {
			out = append(out, m)
		}
	}
	return out
}

// mosq runs a Mosquitto client and returns its output and exit code.
func mosq(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.Need(t, name), args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%s: %v", name, err)
	return "", -1
}

// bgClient is a Mosquitto client running in the background.
type bgClient struct {
	out  *syncBuffer
	done chan struct{}
}

func startMosq(t *testing.T, name string, args ...string) *bgClient {
	t.Helper()
	c := &bgClient{out: &syncBuffer{}, done: make(chan struct{})}
	cmd := exec.Command(testenv.Need(t, name), args...)
	cmd.Stdout, cmd.Stderr = c.out, c.out
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

func (c *bgClient) running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// TestServeProcessMosquittoClients is the end-to-end test of "mqttsec
// serve --config": the binary runs as a process with a YAML file, a
// password file made by mosquitto_passwd and an acl_file in Mosquitto
// syntax, and the real mosquitto_pub and mosquitto_sub talk to it over a
// plaintext loopback listener and over TLS with client certificates.
func TestServeProcessMosquittoClients(t *testing.T) {
	passwd := testenv.Need(t, "mosquitto_passwd")
	testenv.Need(t, "mosquitto_pub")
	testenv.Need(t, "mosquitto_sub")
	dir := t.TempDir()
	ca, err := tlsconf.CreateDevCA(filepath.Join(dir, "tls"))
	require.NoError(t, err)
	_, err = ca.IssueClient("alice")
	require.NoError(t, err)
	aliceCert, aliceKey := ca.ClientFiles("alice")

	pw := filepath.Join(dir, "passwd")
	for i, u := range []string{"alice", "bob", "admin"} {
		args := []string{"-b", pw, u, u + "-pass"}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		out, err := exec.Command(passwd, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "aclfile"), []byte(`# Mosquitto acl_file
user alice
topic readwrite devices/alice/#
topic read public/#

user bob
topic readwrite devices/bob/#
topic read devices/alice/status

user admin
topic readwrite #
`), 0o600))
	cfg := filepath.Join(dir, "mqttsec.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`listeners:
  - name: plain
    address: 127.0.0.1:0
  - name: mtls
    address: 127.0.0.1:0
    tls:
      cert_file: tls/server.pem
      key_file: tls/server.key
      client_ca_file: tls/ca.pem
      client_auth: optional
auth:
  password_file: passwd
  certificate: { username_from: cn }
acl:
  acl_file: aclfile
  wildcard: { deny_root_wildcards: true, admins: [admin] }
ratelimit:
  connect_per_ip: { rate: 100, burst: 100 }      # every client of this test comes from 127.0.0.1
  auth_failures: { slow_after: 20, max: 40 }
  publish: { rate: 5, burst: 10 }
log: { level: info, format: json }
`), 0o600))

	// mosquitto_passwd leaves the file readable by every user: refused,
	// with the key, the file and the fix.
	refused, err := exec.Command(mqttsecBinary(t), "serve", "--config", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(refused), cfg+":12: auth.password_file: "+pw+" is readable by every user (mode 0644); fix it (chmod 0640)")
	require.NoError(t, os.Chmod(pw, 0o600))

	p := startServeProcess(t, 2, "serve", "--config", cfg)
	plain := p.addrs()["plain"]
	host, port := "127.0.0.1", portOf(plain)
	tlsPort := portOf(p.addrs()["mtls"])
	as := func(user string) []string {
		return []string{"-h", host, "-p", port, "-V", "mqttv5", "-u", user, "-P", user + "-pass"}
	}

	// Anonymous and wrong passwords are refused.
	out, code := mosq(t, "mosquitto_pub", "-h", host, "-p", port, "-V", "mqttv5", "-t", "public/x", "-m", "hi")
	require.NotZero(t, code, out)
	require.Contains(t, strings.ToLower(out), "bad user name or password")
	out, code = mosq(t, "mosquitto_pub", "-h", host, "-p", port, "-u", "alice", "-P", "Tr0ub4dor-guess", "-t", "devices/alice/x", "-m", "hi")
	require.NotZero(t, code, out)
	require.Contains(t, strings.ToLower(out), "bad user name or password", "MQTT 3.1.1 CONNACK 0x04")

	// An admin may watch everything; nobody else may subscribe to "#".
	watcher := startMosq(t, "mosquitto_sub", append(as("admin"), "-i", "watcher", "-t", "#", "-v")...)
	out, _ = mosq(t, "mosquitto_sub", append(as("alice"), "-i", "greedy", "-t", "#", "-W", "3")...)
	require.Contains(t, out, "All subscription requests were denied")
	require.Eventually(t, func() bool {
		mosq(t, "mosquitto_pub", append(as("alice"), "-t", "devices/alice/hello", "-m", "ping")...)
		return strings.Contains(watcher.out.String(), "devices/alice/hello ping")
	}, 20*time.Second, 200*time.Millisecond, "the admin's watcher is not subscribed: %s", watcher.out.String())

	// The acl_file decides publishes and subscriptions.
	out, code = mosq(t, "mosquitto_pub", append(as("alice"), "-i", "a1", "-q", "1", "-t", "devices/bob/cmd", "-m", "stolen")...)
	require.Contains(t, out, "Not authorized", "PUBACK 0x87 (exit %d)", code)
	out, code = mosq(t, "mosquitto_pub", append(as("alice"), "-i", "a2", "-q", "1", "-t", "devices/alice/temp", "-m", "21")...)
	require.Zero(t, code, out)
	out, _ = mosq(t, "mosquitto_sub", append(as("bob"), "-i", "b1", "-t", "devices/alice/#", "-W", "3")...)
	require.Contains(t, out, "All subscription requests were denied")
	bobSub := startMosq(t, "mosquitto_sub", append(as("bob"), "-i", "bob-status", "-t", "devices/alice/status", "-v")...)

	// TLS: alice authenticates with her certificate (no password), bob with
	// his password (client certificates are optional on this listener).
	tlsArgs := []string{"-h", "localhost", "-p", tlsPort, "-V", "mqttv5", "--cafile", ca.CAFile()}
	out, code = mosq(t, "mosquitto_pub", append(tlsArgs, "--cert", aliceCert, "--key", aliceKey, "-i", "a-tls", "-q", "1",
		"-t", "devices/alice/status", "-m", "online")...)
	require.Zero(t, code, out)
	out, _ = mosq(t, "mosquitto_pub", append(tlsArgs, "--cert", aliceCert, "--key", aliceKey, "-i", "a-tls2", "-q", "1",
		"-t", "devices/bob/cmd", "-m", "stolen-tls")...)
	require.Contains(t, out, "Not authorized")
	out, code = mosq(t, "mosquitto_pub", append(tlsArgs, "-i", "anon-tls", "-t", "public/x", "-m", "x")...)
	require.NotZero(t, code, out)
	require.Contains(t, strings.ToLower(out), "bad user name or password", "anonymous over TLS without a certificate")
	out, code = mosq(t, "mosquitto_pub", append(tlsArgs, "-u", "bob", "-P", "Tr0ub4dor-tls", "-i", "b-wrong", "-t", "devices/bob/x", "-m", "x")...)
	require.NotZero(t, code, out)
	require.Contains(t, strings.ToLower(out), "bad user name or password", "a wrong password over TLS")
	out, code = mosq(t, "mosquitto_pub", append(tlsArgs, "-u", "bob", "-P", "bob-pass", "-i", "b-tls", "-q", "1",
		"-t", "devices/bob/state", "-m", "ok")...)
	require.Zero(t, code, out)
	require.Eventually(t, func() bool {
		w := watcher.out.String()
		return strings.Contains(w, "devices/alice/status online") && strings.Contains(w, "devices/bob/state ok") &&
			strings.Contains(bobSub.out.String(), "devices/alice/status online")
	}, 20*time.Second, 50*time.Millisecond, "watcher: %s\nbob: %s", watcher.out.String(), bobSub.out.String())
	require.NotContains(t, watcher.out.String(), "stolen", "a denied publish was delivered")

	// Takeover: bob may not take alice's client ID while she is connected.
	aliceSub := startMosq(t, "mosquitto_sub", append(as("alice"), "-i", "sensor-1", "-t", "devices/alice/cmd", "-v")...)
	require.Eventually(t, func() bool { return len(p.eventsFor("connected", "sensor-1")) == 1 }, 20*time.Second, 20*time.Millisecond)
	out, code = mosq(t, "mosquitto_pub", append(as("bob"), "-i", "sensor-1", "-t", "devices/bob/x", "-m", "x")...)
	require.NotZero(t, code, out)
	require.Contains(t, out, "Client Identifier not valid", "CONNACK 0x85")
	mosq(t, "mosquitto_pub", append(as("admin"), "-t", "devices/alice/cmd", "-m", "still-mine")...)
	require.Eventually(t, func() bool { return strings.Contains(aliceSub.out.String(), "devices/alice/cmd still-mine") }, 20*time.Second, 50*time.Millisecond,
		"alice's session was taken over: %s", aliceSub.out.String())
	require.True(t, aliceSub.running())

	// A publish flood is throttled: of 200 messages sent at once, the first
	// burst is delivered; the rest is refused (0x97 in the PUBACK) and the
	// flooder is disconnected (0x96) once it keeps going.
	flood := exec.Command(testenv.Need(t, "mosquitto_pub"), append(as("alice"), "-i", "flooder", "-q", "1", "-t", "devices/alice/flood", "-l")...)
	flood.Stdin = strings.NewReader(strings.Repeat("wave\n", 200))
	floodOut, _ := flood.CombinedOutput()
	require.Contains(t, string(floodOut), "Quota exceeded", "%s", floodOut)
	require.Eventually(t, func() bool { return len(p.eventsFor("publish_denied", "flooder")) > 0 }, 20*time.Second, 20*time.Millisecond)
	mosq(t, "mosquitto_pub", append(as("admin"), "-t", "devices/alice/after-flood", "-m", "marker")...)
	require.Eventually(t, func() bool { return strings.Contains(watcher.out.String(), "devices/alice/after-flood marker") }, 20*time.Second, 50*time.Millisecond)
	delivered := strings.Count(watcher.out.String(), "devices/alice/flood wave")
	t.Logf("flood: %d of 200 delivered; mosquitto_pub: %.300s", delivered, floodOut)
	require.GreaterOrEqual(t, delivered, 5, "the burst goes through")
	require.Less(t, delivered, 40, "the flood does not")
	codes := map[any]bool{}
	for _, e := range p.eventsFor("publish_denied", "flooder") {
		codes[e["code"]] = true
	}
	require.True(t, codes["0x96"], "refused as message rate too high: %v", codes)

	// Removing bob and sending SIGHUP disconnects his live session.
	out2, err := exec.Command(passwd, "-D", pw, "bob").CombinedOutput()
	require.NoError(t, err, "%s", out2)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return !bobSub.running() }, 20*time.Second, 50*time.Millisecond, "bob's subscriber is still connected")
	require.NotEmpty(t, p.eventsFor("revoked", "bob-status"))

	// The security events are JSON lines with the documented fields.
	denied := p.events("connect_denied")
	require.NotEmpty(t, denied)
	var sawWrongPassword bool
	for _, e := range denied {
		if e["username"] == "alice" && e["code"] == "0x86" && e["reason"] == "bad user name or password" && e["remote_addr"] != nil {
			sawWrongPassword = true
		}
	}
	require.True(t, sawWrongPassword, "%v", denied)
	var sawPublish bool
	for _, e := range p.events("publish_denied") {
		if e["topic"] == "devices/bob/cmd" && e["code"] == "0x87" && e["client_id"] == "a1" && e["username"] == "alice" {
			sawPublish = true
		}
	}
	require.True(t, sawPublish, "%v", p.events("publish_denied"))
	require.NotEmpty(t, p.eventsFor("subscribe_denied", "greedy"))
	require.NotContains(t, p.stderr.String(), "alice-pass", "a password reached the log")
	require.NotContains(t, p.stderr.String(), "Tr0ub4dor", "a password reached the log")

	// SIGTERM stops it cleanly.
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
		require.NoError(t, p.err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	require.Contains(t, p.stderr.String(), "shutting down")
}

// eventsFor returns the events of a kind for one client ID.
func (p *serveProcess) eventsFor(kind, clientID string) []map[string]any {
	var out []map[string]any
	for _, e := range p.events(kind) {
		if e["client_id"] == clientID {
			out = append(out, e)
		}
	}
	return out
}
