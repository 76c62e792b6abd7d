// Package testenv finds and starts the real peers tests talk to: a
// Mosquitto broker with its own configuration on a free loopback port, and
// the Mosquitto command-line clients.
//
// A test that needs a peer that is missing is skipped with a clear message,
// except under CI=true, where it fails: CI installs every peer.
package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CI reports whether the tests run under CI (CI=true), where missing peers
// are failures, not skips.
func CI() bool { return os.Getenv("CI") == "true" }

// Need returns the path of an executable, or skips the test (fails it under
// CI) when it is not installed.
func Need(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		c := filepath.Join(dir, name)
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	msg := fmt.Sprintf("%s is not installed (on Debian: apt-get install mosquitto mosquitto-clients redis-server)", name)
	if CI() {
		t.Fatal(msg + "; CI=true requires it")
	}
	t.Skip(msg)
	return ""
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Mosquitto is a running Mosquitto broker started by a test.
type Mosquitto struct {
	// Addr is "127.0.0.1:PORT" of its listener.
	Addr string
	// Port is the listener port.
	Port int
	// Dir is the folder with its configuration and log.
	Dir string
}

// StartMosquitto starts Mosquitto on a free loopback port with a generated
// configuration: "listener PORT 127.0.0.1", "user root" (Mosquitto started
// as root otherwise drops to a user that cannot read the test's files), and
// then the given lines (allow_anonymous, password_file, cafile, ...).
// The broker is stopped when the test ends.
func StartMosquitto(t testing.TB, conf ...string) *Mosquitto {
	t.Helper()
	bin := Need(t, "mosquitto")
	dir := t.TempDir()
	port := FreePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "listener %d 127.0.0.1\n", port)
	b.WriteString("user root\npersistence false\nlog_dest stderr\nlog_type all\n")
	for _, l := range conf {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	cfg := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = logf.Close()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", readTail(filepath.Join(dir, "mosquitto.log")))
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("mosquitto exited at start; log:\n%s", readTail(filepath.Join(dir, "mosquitto.log")))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s; log:\n%s", addr, readTail(filepath.Join(dir, "mosquitto.log")))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Mosquitto{Addr: addr, Port: port, Dir: dir}
}

func readTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 60 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// SharedDir returns the path of the shared conformance folder (../shared
// from the module root) or "" when it is absent.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(filepath.Dir(dir), "shared")
			if st, err := os.Stat(s); err == nil && st.IsDir() {
				return s
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
