package minibroker_test

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/internal/minibroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

// mosquitto runs a Mosquitto command-line client against the broker and
// returns its combined output and whether it exited 0.
func (f *fixture) mosquitto(t *testing.T, tool string, args ...string) (string, bool) {
	t.Helper()
	bin := testenv.Need(t, tool)
	host, port, err := net.SplitHostPort(f.addr)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	require.NoError(t, ctx.Err(), "%s did not finish: %s", tool, out)
	return string(out), err == nil
}

// TestMosquittoClientsKeptSession replays, with the real Mosquitto clients,
// the way a kept session used to be destroyed by another identity: alice's
// persistent session survives bob's attempts with her client ID (refused,
// "client identifier not valid"), and she gets her queued messages.
func TestMosquittoClientsKeptSession(t *testing.T) {
	for _, version := range []string{"5", "311"} {
		t.Run("mqttv"+version, func(t *testing.T) {
			f := start(t, minibroker.Options{})
			proto := []string{"-V", "mqttv" + version}
			persistent := append(proto, "-c", "-q", "1")
			if version == "5" {
				persistent = append(persistent, "-x", "300")
			}
			sub := func(user string, more ...string) (string, bool) {
				args := append(append([]string{}, persistent...), "-i", "device-1", "-u", user, "-P", "pw", "-t", "q/#")
				return f.mosquitto(t, "mosquitto_sub", append(args, more...)...)
			}
			out, ok := sub("alice", "-E")
			require.True(t, ok, out)
			f.waitEnded(t, "device-1", 1)

			for _, m := range []string{"one", "two", "three"} {
				out, ok := f.mosquitto(t, "mosquitto_pub", append(proto, "-i", "pub", "-u", "carol", "-P", "pw",
					"-q", "1", "-t", "q/"+m, "-m", m)...)
				require.True(t, ok, out)
			}

			out, ok = sub("bob", "-E")
			require.False(t, ok, "bob resumed alice's session: %s", out)
			require.Contains(t, strings.ToLower(out), "identifier", out)
			// Without -c (a clean start) bob is refused as well: he may not
			// discard alice's session either.
			out, ok = f.mosquitto(t, "mosquitto_sub", append(proto, "-i", "device-1", "-u", "bob", "-P", "pw", "-t", "q/#", "-E")...)
			require.False(t, ok, "bob discarded alice's session: %s", out)

			out, ok = sub("alice", "-C", "3", "-W", "10", "-v")
			require.True(t, ok, out)
			require.Equal(t, "q/one one\nq/two two\nq/three three\n", out)
		})
	}
}
