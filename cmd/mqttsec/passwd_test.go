package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

func runPasswd(t *testing.T, stdin string, args ...string) error {
	t.Helper()
	_, err := execute(newPasswdCmd(), stdin, append([]string{"--cost", "4"}, args...)...)
	return err
}

func verifyUser(t *testing.T, file, user, pw string) bool {
	t.Helper()
	f, err := auth.LoadPasswordFile(file)
	require.NoError(t, err)
	h, ok := f.Lookup(user)
	return ok && h.Verify([]byte(pw))
}

func TestPasswdCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "passwd")

	require.Equal(t, 1, exitCode(runPasswd(t, "", "-b", file, "alice", "correct horse battery")), "no -c on a missing file")
	require.NoError(t, runPasswd(t, "", "-c", "-b", file, "alice", "correct horse battery"))
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Regexp(t, `^alice:\$2a\$04\$[./A-Za-z0-9]{53}\n$`, string(b))
	require.True(t, verifyUser(t, file, "alice", "correct horse battery"))

	// Two lines on standard input (not a terminal).
	require.NoError(t, runPasswd(t, "bob's long password\nbob's long password\n", file, "bob"))
	require.True(t, verifyUser(t, file, "bob", "bob's long password"))
	require.True(t, verifyUser(t, file, "alice", "correct horse battery"))

	before, _ := os.ReadFile(file)
	for name, tc := range map[string]struct {
		stdin string
		args  []string
		code  int
	}{
		"mismatch":          {"first password!!\nsecond password!\n", []string{file, "carol"}, 1},
		"one line":          {"only one line here\n", []string{file, "carol"}, 1},
		"too short":         {"", []string{"-b", file, "carol", "short"}, 1},
		"common":            {"", []string{"-b", file, "carol", "passwordpassword"}, 1},
		"equals user":       {"", []string{"-b", file, "carol-the-user", "carol-the-user"}, 1},
		"bcrypt 72 bytes":   {"", []string{"-b", file, "carol", strings.Repeat("long ", 15)}, 1},
		"bad user":          {"", []string{"-b", file, "ca:rol", "correct horse battery"}, 1},
		"comment user":      {"", []string{"-b", file, "#carol", "correct horse battery"}, 1},
		"blank-edged user":  {"", []string{"-b", file, "carol ", "correct horse battery"}, 1},
		"comment, prompted": {"correct horse battery\ncorrect horse battery\n", []string{file, "#carol"}, 1},
		"delete unknown":    {"", []string{"-D", file, "carol"}, 1},
		"missing args":      {"", []string{file}, 2},
		"batch missing pw":  {"", []string{"-b", file, "carol"}, 2},
		"create and delete": {"", []string{"-c", "-D", file, "alice"}, 2},
		"bad scheme":        {"", []string{"--scheme", "md5", "-b", file, "carol", "correct horse battery"}, 2},
		"bad cost":          {"", []string{"--cost", "40", "-b", file, "carol", "correct horse battery"}, 2},
		"sha512 refused":    {"", []string{"-H", "sha512", "-b", file, "carol", "correct horse battery"}, 2},
	} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, tc.code, exitCode(runPasswd(t, tc.stdin, tc.args...)))
			after, _ := os.ReadFile(file)
			require.Equal(t, before, after, "a failed command leaves the file alone")
		})
	}

	// A password that starts with '-' is a password, not flags to parse
	// (and to quote back in an error message).
	err = runPasswd(t, "", "-b", file, "frank", "-sixteen-chars-pw")
	if err != nil {
		require.NotContains(t, err.Error(), "sixteen", "an error quotes the password")
	}
	require.NoError(t, err)
	require.True(t, verifyUser(t, file, "frank", "-sixteen-chars-pw"))
	require.NoError(t, runPasswd(t, "", "-D", file, "frank"))

	require.NoError(t, runPasswd(t, "", "--allow-weak-password", "-b", file, "carol", "weak"))
	require.True(t, verifyUser(t, file, "carol", "weak"))
	require.NoError(t, runPasswd(t, "", "--scheme", "argon2id", "-b", file, "dave", "dave's argon2 password"))
	require.True(t, verifyUser(t, file, "dave", "dave's argon2 password"))

	require.NoError(t, runPasswd(t, "", "-D", file, "bob"))
	f, err := auth.LoadPasswordFile(file)
	require.NoError(t, err)
	require.Equal(t, []string{"alice", "carol", "dave"}, f.Users())

	// -c overwrites.
	require.NoError(t, runPasswd(t, "", "-c", "-b", file, "erin", "erin's new password"))
	f, err = auth.LoadPasswordFile(file)
	require.NoError(t, err)
	require.Equal(t, []string{"erin"}, f.Users())
}

// TestPasswdMosquittoFile edits a file written by the real mosquitto_passwd:
// its entries keep working, and a "$7$" entry we write is accepted by
// mosquitto_passwd in turn.
func TestPasswdMosquittoFile(t *testing.T) {
	bin := testenv.Need(t, "mosquitto_passwd")
	file := filepath.Join(t.TempDir(), "passwd")
	out, err := exec.Command(bin, "-c", "-b", file, "alice", "alice-pw").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(bin, "-H", "sha512", "-b", file, "bob", "bob-pw").CombinedOutput()
	require.NoError(t, err, "%s", out)
	orig, err := os.ReadFile(file)
	require.NoError(t, err)

	require.NoError(t, runPasswd(t, "", "--scheme", "pbkdf2", "-b", file, "carol", "carol's password"))
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(b), string(orig)), "existing lines are kept byte for byte")
	require.True(t, verifyUser(t, file, "alice", "alice-pw"))
	require.True(t, verifyUser(t, file, "bob", "bob-pw"))
	require.True(t, verifyUser(t, file, "carol", "carol's password"))

	// mosquitto_passwd reads our file and rewrites it (deleting alice).
	out, err = exec.Command(bin, "-D", file, "alice").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.False(t, verifyUser(t, file, "alice", "alice-pw"))
	require.True(t, verifyUser(t, file, "carol", "carol's password"))
}

// TestPasswdBinary builds the command and checks exit codes through main.
func TestPasswdBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mqttsec")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	file := filepath.Join(dir, "passwd")
	run := func(stdin string, args ...string) int {
		cmd := exec.Command(bin, append([]string{"passwd", "--cost", "4"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		require.NoError(t, err)
		return 0
	}
	require.Equal(t, 0, run("", "-c", "-b", file, "alice", "correct horse battery"))
	require.Equal(t, 0, run("frank's password\nfrank's password\n", file, "frank"))
	require.Equal(t, 1, run("", "-b", file, "bob", "short"))
	require.Equal(t, 2, run("", file))
	st, err := os.Stat(file)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	require.True(t, verifyUser(t, file, "frank", "frank's password"))

	t.Run("terminal", func(t *testing.T) {
		// script(1) runs the command on a pseudo-terminal: the password is
		// asked twice and never echoed.
		scriptBin := testenv.Need(t, "script")
		cmd := exec.Command(scriptBin, "-q", "-e", "-c", bin+" passwd --cost 4 "+file+" grace", "/dev/null")
		stdin, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		// Its own process group, so that a stuck run is killed with the
		// command under script(1), which would otherwise keep stdout open.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start())
		stop := time.AfterFunc(30*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		defer stop.Stop()
		var seen strings.Builder
		waitPrompt := func(prompt string) {
			buf := make([]byte, 256)
			for !strings.HasSuffix(strings.TrimSpace(seen.String()), prompt) {
				n, err := stdout.Read(buf)
				seen.Write(buf[:n])
				require.NoError(t, err, "output so far: %q", seen.String())
			}
		}
		waitPrompt("Password:")
		// The prompt is written just before echo is switched off: give the
		// command a moment, or the terminal itself may echo early input.
		time.Sleep(300 * time.Millisecond)
		_, err = stdin.Write([]byte("grace's secret password\n"))
		require.NoError(t, err)
		waitPrompt("Reenter password:")
		time.Sleep(300 * time.Millisecond)
		_, err = stdin.Write([]byte("grace's secret password\n"))
		require.NoError(t, err)
		rest, _ := io.ReadAll(stdout)
		seen.Write(rest)
		require.NoError(t, cmd.Wait(), "output: %q", seen.String())
		require.NotContains(t, seen.String(), "secret", "the password must not be echoed")
		require.True(t, verifyUser(t, file, "grace", "grace's secret password"))
	})
}

// The help says what Mosquitto 2.0 makes of our hashes; this checks it
// against a real Mosquitto: a "$7$" line written with -H sha512-pbkdf2 (and
// an iteration count of ours, not mosquitto_passwd's 101) logs in, a bcrypt
// line (the default) does not.
func TestPasswdMosquittoReadsPBKDF2(t *testing.T) {
	pub := testenv.Need(t, "mosquitto_pub")
	file := filepath.Join(t.TempDir(), "passwd")
	require.NoError(t, runPasswd(t, "", "-c", "-H", "sha512-pbkdf2", "--iterations", "20000", "-b", file, "alice", "alice's long password"))
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Regexp(t, `^alice:\$7\$20000\$`, string(b))
	require.NoError(t, runPasswd(t, "", "-b", file, "bob", "bob's long password")) // bcrypt
	m := testenv.StartMosquitto(t, "allow_anonymous false", "password_file "+file)
	publish := func(user, pw string) error {
		out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", strconv.Itoa(m.Port), "-u", user, "-P", pw,
			"-t", "t", "-m", "x", "-q", "1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	require.NoError(t, publish("alice", "alice's long password"))
	require.Error(t, publish("alice", "wrong password"))
	require.Error(t, publish("bob", "bob's long password"), "Mosquitto 2.0 cannot read a bcrypt line")
}

// The help tells a Mosquitto user which scheme to pick.
func TestPasswdHelpNamesMosquittoScheme(t *testing.T) {
	help, err := execute(newPasswdCmd(), "", "--help")
	require.NoError(t, err)
	require.Contains(t, help, "Mosquitto 2.0 does not")
	require.Contains(t, help, "-H sha512-pbkdf2")
	require.Contains(t, help, "-H, --scheme")
}
