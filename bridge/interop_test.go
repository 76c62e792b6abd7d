package bridge_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// remoteMosquitto is a real Mosquitto with a TLS listener on a fixed port
// (so that it can be restarted at the same address), passwords from a
// file made by mosquitto_passwd, and persistence (so that sessions survive
// a restart). Test clients use the plaintext listener of testenv, which
// requires the same passwords.
type remoteMosquitto struct {
	t       *testing.T
	conf    []string
	dir     string
	tlsPort int
	m       *testenv.Mosquitto
}

func startRemoteMosquitto(t *testing.T, ca *tlsconf.DevCA, extra ...string) *remoteMosquitto {
	t.Helper()
	passwd := testenv.Need(t, "mosquitto_passwd")
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "passwd")
	for i, u := range []string{"bridge", "alice"} {
		args := []string{"-b", pwFile, u, users[u]}
		if i == 0 {
			args = append([]string{"-c"}, args...)
		}
		out, err := exec.Command(passwd, args...).CombinedOutput()
		require.NoError(t, err, "mosquitto_passwd: %s", out)
	}
	cert, key := ca.ServerFiles()
	r := &remoteMosquitto{t: t, dir: dir, tlsPort: testenv.FreePort(t)}
	r.conf = append([]string{
		"allow_anonymous false",
		"password_file " + pwFile,
		"persistence true",
		"persistence_location " + dir + "/",
		"pid_file " + filepath.Join(dir, "mosquitto.pid"),
		"max_queued_messages 5000",
	}, extra...)
	r.conf = append(r.conf,
		fmt.Sprintf("listener %d 127.0.0.1", r.tlsPort),
		"cafile "+ca.CAFile(),
		"certfile "+cert,
		"keyfile "+key,
	)
	r.start()
	return r
}

func (r *remoteMosquitto) start() {
	r.t.Helper()
	r.m = testenv.StartMosquitto(r.t, r.conf...)
	addr := fmt.Sprintf("127.0.0.1:%d", r.tlsPort)
	require.Eventually(r.t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, wait, 20*time.Millisecond, "TLS listener")
}

// stop ends Mosquitto with SIGTERM, so that it saves its sessions.
func (r *remoteMosquitto) stop() {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join(r.dir, "mosquitto.pid"))
	require.NoError(r.t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	require.NoError(r.t, err)
	require.NoError(r.t, syscall.Kill(pid, syscall.SIGTERM))
	require.Eventually(r.t, func() bool { return syscall.Kill(pid, 0) != nil }, wait, 20*time.Millisecond, "mosquitto did not stop")
}

func (r *remoteMosquitto) url() string { return fmt.Sprintf("mqtts://localhost:%d", r.tlsPort) }

// dial connects alice to the plaintext listener with a session kept for
// an hour.
func (r *remoteMosquitto) dial(id string, resume bool) *testbroker.Conn {
	r.t.Helper()
	c, _, err := testbroker.Dial(r.t, r.m.Addr, testbroker.ClientOptions{ClientID: id, Username: "alice", Password: []byte("alice-pw"),
		SessionExpiry: 3600, Resume: resume})
	require.NoError(r.t, err)
	return c
}

func mosquittoConfig(t *testing.T, r *remoteMosquitto, ca *tlsconf.DevCA, topics ...bridge.Mapping) bridge.Config {
	return bridge.Config{
		Name:         "cloud",
		Remote:       r.url(),
		TLS:          tlsconf.Config{CAFile: ca.CAFile()},
		Username:     "bridge",
		PasswordFile: passwordFile(t, "bridge-pw"),
		ClientID:     "site1-bridge",
		ReconnectMin: 100 * time.Millisecond,
		ReconnectMax: time.Second,
		Topics:       topics,
	}
}

// TestMosquittoRemote bridges an in-process broker to a real Mosquitto over
// TLS with a password: messages flow both ways with the prefixes applied,
// and QoS 1 messages published while Mosquitto restarts all arrive.
func TestMosquittoRemote(t *testing.T) {
	ca := devCA(t)
	r := startRemoteMosquitto(t, ca)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	// The bridge reaches Mosquitto through a relay, which holds it off
	// after the restart until the test's subscriber is back.
	px := startProxy(t, fmt.Sprintf("127.0.0.1:%d", r.tlsPort))
	cfg := mosquittoConfig(t, r, ca,
		bridge.Mapping{Pattern: "sensors/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "site1/"},
		bridge.Mapping{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, LocalPrefix: "cloud/", RemotePrefix: "site1/"},
	)
	_, port, _ := net.SplitHostPort(px.addr())
	cfg.Remote = "mqtts://localhost:" + port
	ev := &events{}
	b := start(t, cfg, localOf(local), ev)
	waitReady(t, b)

	rsub := r.dial("rsub", false)
	require.Equal(t, byte(1), rsub.Sub(t, "site1/#", 1))
	lsub := dial(t, local.Addr, "lsub", nil)
	require.Equal(t, byte(1), lsub.Sub(t, "cloud/#", 1))
	lpub := dial(t, local.Addr, "lpub", nil)

	t.Run("both ways with prefixes", func(t *testing.T) {
		_, err := lpub.Pub(t, "sensors/a/temp", []byte("21"), 1)
		require.NoError(t, err)
		m := rsub.ExpectMessage(t, "site1/sensors/a/temp", wait)
		require.Equal(t, "21", string(m.Payload))
		rpub := r.dial("rpub", false)
		_, err = rpub.Pub(t, "site1/cmd/reboot", []byte("now"), 1)
		require.NoError(t, err)
		m = lsub.ExpectMessage(t, "cloud/cmd/reboot", wait)
		require.Equal(t, "now", string(m.Payload))
	})

	t.Run("QoS 1 across a restart", func(t *testing.T) {
		const before, during, after = 50, 100, 50
		got := map[int]int{}
		collect := func(c *testbroker.Conn, until func() bool) {
			deadline := time.After(2 * wait)
			for !until() {
				select {
				case m := <-c.Messages():
					if m.Topic == "site1/sensors/seq" {
						i, err := strconv.Atoi(string(m.Payload))
						require.NoError(t, err)
						got[i]++
					}
				case <-deadline:
					t.Fatalf("collected %d of %d messages", len(got), before+during+after)
				}
			}
		}
		publish := func(from, to int) {
			for i := from; i < to; i++ {
				code, err := lpub.Pub(t, "sensors/seq", []byte(strconv.Itoa(i)), 1)
				require.NoError(t, err)
				require.Equal(t, byte(0), code)
			}
		}
		publish(0, before)
		collect(rsub, func() bool { return len(got) == before })

		r.stop()
		px.setDown(true)
		require.Eventually(t, func() bool { return !b.Stats().Remote.Connected }, wait, 10*time.Millisecond)
		publish(before, before+during) // held by the bridge, unacknowledged locally
		require.Eventually(t, func() bool { return b.Stats().Out.Held == during }, wait, 10*time.Millisecond)

		r.start()
		rsub2 := r.dial("rsub2", false)
		require.Equal(t, byte(1), rsub2.Sub(t, "site1/#", 1))
		px.setDown(false)
		publish(before+during, before+during+after)
		collect(rsub2, func() bool { return len(got) == before+during+after })

		dups := 0
		for i := range before + during + after {
			require.NotZero(t, got[i], "message %d lost", i)
			dups += got[i] - 1
		}
		require.Eventually(t, func() bool { return b.Stats().Out.Held == 0 }, wait, 10*time.Millisecond)
		s := b.Stats()
		t.Logf("%d messages across a Mosquitto restart: %d duplicates; bridge %+v, remote connections %d",
			before+during+after, dups, s.Out, s.Remote.Connections)
		require.LessOrEqual(t, uint64(dups), s.Out.Retried+s.Out.Redelivered)
		require.GreaterOrEqual(t, s.Remote.Connections, uint64(2))
	})
}

// TestMosquittoNoLoopBothHash maps "#" both ways between the in-process
// broker and Mosquitto: every message crosses exactly once.
func TestMosquittoNoLoopBothHash(t *testing.T) {
	ca := devCA(t)
	r := startRemoteMosquitto(t, ca)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	b := start(t, mosquittoConfig(t, r, ca, bridge.Mapping{Pattern: "#", Direction: bridge.Both, QoS: 1}), localOf(local), nil)
	waitReady(t, b)
	rsub := r.dial("rsub", false)
	require.Equal(t, byte(1), rsub.Sub(t, "#", 1))
	lsub := dial(t, local.Addr, "lsub", nil)
	require.Equal(t, byte(1), lsub.Sub(t, "#", 1))
	lpub := dial(t, local.Addr, "lpub", nil)
	rpub := r.dial("rpub", false)
	const n = 10
	for i := range n {
		_, err := lpub.Pub(t, fmt.Sprintf("l/%d", i), nil, 1)
		require.NoError(t, err)
		_, err = rpub.Pub(t, fmt.Sprintf("r/%d", i), nil, 1)
		require.NoError(t, err)
	}
	_, err := lpub.Pub(t, "end/l", nil, 1)
	require.NoError(t, err)
	_, err = rpub.Pub(t, "end/r", nil, 1)
	require.NoError(t, err)
	for _, c := range []*testbroker.Conn{lsub, rsub} {
		got := map[string]int{}
		deadline := time.After(wait)
		for got["end/l"] == 0 || got["end/r"] == 0 {
			select {
			case m := <-c.Messages():
				got[m.Topic]++
			case <-deadline:
				t.Fatalf("sentinels missing: %v", got)
			}
		}
		require.Len(t, got, 2*n+2)
		for topic, k := range got {
			require.Equal(t, 1, k, "%q seen %d times", topic, k)
		}
	}
	require.Eventually(t, func() bool {
		s := b.Stats()
		return s.Out.Forwarded == n+1 && s.In.Forwarded == n+1
	}, wait, 10*time.Millisecond, "%+v", b.Stats())
	lsub.NoMessage(t, 300*time.Millisecond)
}

// TestMosquittoBackpressure: with the local broker unreachable, QoS 1
// messages from Mosquitto beyond the buffer stay in Mosquitto (the bridge
// announced its buffer as Receive Maximum), and all arrive once the local
// broker is back.
func TestMosquittoBackpressure(t *testing.T) {
	ca := devCA(t)
	r := startRemoteMosquitto(t, ca)
	local := testbroker.Start(t, guard(users), testbroker.Options{})
	px := startProxy(t, local.Addr)
	cfg := mosquittoConfig(t, r, ca, bridge.Mapping{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, RemotePrefix: "site1/"})
	cfg.Buffer = 8
	lb := localOf(local)
	lb.URL = "mqtt://" + px.addr()
	b := start(t, cfg, lb, nil)
	waitReady(t, b)
	lsub := dial(t, local.Addr, "lsub", nil)
	require.Equal(t, byte(1), lsub.Sub(t, "cmd/#", 1))

	px.setDown(true)
	require.Eventually(t, func() bool { return !b.Stats().Local.Connected }, wait, 10*time.Millisecond)
	rpub := r.dial("rpub", false)
	const n = 100
	for i := range n {
		_, err := rpub.Pub(t, "site1/cmd/x", []byte(strconv.Itoa(i)), 1)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return b.Stats().In.Held == cfg.Buffer }, wait, 10*time.Millisecond)
	require.Never(t, func() bool { return b.Stats().In.Held > cfg.Buffer }, 300*time.Millisecond, 10*time.Millisecond)

	px.setDown(false)
	got := map[string]int{}
	deadline := time.After(wait)
	for len(got) < n {
		select {
		case m := <-lsub.Messages():
			got[string(m.Payload)]++
		case <-deadline:
			t.Fatalf("received %d of %d", len(got), n)
		}
	}
	t.Logf("stats after the outage: %+v", b.Stats().In)
}
