package acl_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

// lockedBuffer is a bytes.Buffer a process writes to while a test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	if l == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestE2EJWTRoles: a token's "roles" claim gives that role's rules, as a
// g line would, to real mosquitto_sub clients (MQTT 5 and 3.1.1); the
// same user without the claim gets nothing beyond its own rules.
func TestE2EJWTRoles(t *testing.T) {
	subBin := testenv.Need(t, "mosquitto_sub")
	secret := bytes.Repeat([]byte("k"), 32)
	const iss, aud = "https://idp.example", "mqtt-broker"
	jwtAuth, err := auth.NewJWT(context.Background(), auth.JWTConfig{
		Algorithms: []string{"HS256"}, HMACSecret: secret, Issuer: iss, Audience: aud, RolesClaim: "roles",
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = jwtAuth.Close() })
	token := func(sub string, roles ...string) string {
		c := jwt.MapClaims{"sub": sub, "iss": iss, "aud": aud, "exp": time.Now().Add(time.Hour).Unix()}
		if roles != nil {
			c["roles"] = roles
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		require.NoError(t, err)
		return s
	}
	e, err := casbin.NewSyncedEnforcer(acl.NewModel())
	require.NoError(t, err)
	for _, p := range [][]string{
		{"operators", "plant/+/alarm", "read", "allow"},
		{"sensor", "plant/#", "write", "allow"},
		{"*", "devices/%u/#", "readwrite", "allow"},
	} {
		_, err := e.AddPolicy(p)
		require.NoError(t, err)
	}
	policy, err := acl.NewCasbin(e)
	require.NoError(t, err)
	g := mqttsec.New(mqttsec.Config{Authenticator: jwtAuth, Authorizer: policy, Events: mqttsec.EventSinkFunc(func(mqttsec.Event) {})})
	b := testbroker.Start(t, g, testbroker.Options{})
	_, port, err := net.SplitHostPort(b.Addr)
	require.NoError(t, err)

	run := func(id, user, tok, version string) *lockedBuffer {
		out := &lockedBuffer{}
		cmd := exec.Command(subBin, "-h", "127.0.0.1", "-p", port, "-i", id, "-u", user, "-P", tok,
			"-V", version, "-t", "plant/+/alarm", "-v", "-W", "30")
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return out
	}
	operator5 := run("op5", "alice", token("alice", "operators"), "mqttv5")
	operator3 := run("op3", "alice", token("alice", "operators"), "mqttv311")
	plain5 := run("plain5", "bob", token("bob"), "mqttv5")
	plain3 := run("plain3", "bob", token("bob"), "mqttv311")
	require.Eventually(t, func() bool {
		n := 0
		for _, s := range g.Sessions() {
			if s.Client().Username == "alice" {
				n++
			}
		}
		return n == 2
	}, testbroker.Timeout, 10*time.Millisecond, "%s\n%s", operator5, operator3)
	// bob's subscriptions are refused: mosquitto_sub says so and exits.
	require.Eventually(t, func() bool {
		return strings.Contains(plain5.String(), "denied") && strings.Contains(plain3.String(), "denied")
	}, testbroker.Timeout, 10*time.Millisecond, "v5: %q; v3: %q", plain5, plain3)

	pub, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "sensor-1", Username: "s1",
		Password: []byte(token("s1", "sensor"))})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := pub.Pub(t, "plant/7/alarm", []byte("overheat"), 1)
		require.NoError(t, err, "the sensor role may write to plant/#")
		return strings.Contains(operator5.String(), "plant/7/alarm overheat") &&
			strings.Contains(operator3.String(), "plant/7/alarm overheat")
	}, testbroker.Timeout, 200*time.Millisecond, "the operators role reads plant/+/alarm")
	time.Sleep(300 * time.Millisecond)
	for _, out := range []*lockedBuffer{plain5, plain3} {
		require.NotContains(t, out.String(), "overheat", "a token without the role gets none of its rules")
	}
	code, err := pub.Pub(t, "devices/other/x", []byte("x"), 1)
	require.Error(t, err)
	require.Equal(t, byte(0x87), code, "a role grants its rules, nothing more")
}
