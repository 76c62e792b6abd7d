package config_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/config"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/tlsconf"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// records returns the JSON log records of kind "security event" whose
// event is kind.
func (s *syncBuffer) events(kind string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == config.EventMessage && m["event"] == kind {
			out = append(out, m)
		}
	}
	return out
}

// env is a folder with a development CA, a password file (alice, bob and
// admin, cheap bcrypt hashes), an acl_file and a Casbin policy.
type env struct {
	dir string
	ca  *tlsconf.DevCA
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	var err error
	e.ca, err = tlsconf.CreateDevCA(filepath.Join(e.dir, "tls"))
	require.NoError(t, err)
	for _, n := range []string{"alice", "bob"} {
		_, err := e.ca.IssueClient(n)
		require.NoError(t, err)
	}
	_, err = e.ca.WriteCRL()
	require.NoError(t, err)
	e.writePasswd(t, "alice", "bob", "admin")
	write(t, e.dir, "aclfile", `# anonymous clients
topic read public/#

user alice
topic readwrite devices/alice/#
topic readwrite shared/#

user bob
topic readwrite devices/bob/#

user admin
topic readwrite #
`, 0o600)
	write(t, e.dir, "policy.csv", `p, *, public/#, read, allow
p, bob, shared/#, readwrite, allow
p, *, shared/secret/#, readwrite, deny
`, 0o600)
	return e
}

// writePasswd writes the password file with users whose password is
// NAME-pass.
func (e *env) writePasswd(t *testing.T, users ...string) {
	t.Helper()
	pf := auth.NewPasswordFile()
	for _, u := range users {
		h, err := auth.HashPassword([]byte(u+"-pass"), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.NoError(t, pf.Set(u, h))
	}
	require.NoError(t, pf.WriteFile(filepath.Join(e.dir, "passwd")))
}

// open parses doc as mqttsec.yaml in the folder and starts its broker.
func (e *env) open(t *testing.T, doc string) (*config.Runtime, *config.Server, *syncBuffer) {
	t.Helper()
	f, err := config.Parse([]byte(doc), filepath.Join(e.dir, "mqttsec.yaml"))
	require.NoError(t, err)
	logs := &syncBuffer{}
	rt, err := f.Open(context.Background(), config.Options{Output: logs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	srv, err := rt.Server()
	require.NoError(t, err)
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { _ = srv.Close() })
	return rt, srv, logs
}

func (e *env) client(t *testing.T, name string) *tls.Config {
	t.Helper()
	c, err := e.ca.ClientConfig(name).Client()
	require.NoError(t, err)
	c.ServerName = "localhost"
	return c
}

const twoListeners = `listeners:
  - name: plain
    address: 127.0.0.1:0
  - name: mtls
    address: 127.0.0.1:0
    tls:
      cert_file: tls/server.pem
      key_file: tls/server.key
      client_ca_file: tls/ca.pem
      client_auth: optional
      crl_files: [tls/ca.crl]
`

func dial(t *testing.T, addr, id, user string, tc *tls.Config) (*testbroker.Conn, byte) {
	t.Helper()
	o := testbroker.ClientOptions{ClientID: id, TLS: tc}
	if user != "" {
		o.Username, o.Password = user, []byte(user+"-pass")
	}
	c, ack, err := testbroker.Dial(t, addr, o)
	if err != nil {
		require.NotNil(t, ack, "no CONNACK: %v", err)
		return nil, ack.ReasonCode
	}
	return c, 0
}

// TestOpenPolicy checks the wiring of a whole file against real clients:
// passwords and certificates authenticate, the acl_file and the Casbin
// policy combine with deny winning, root wildcards are for admins, events
// are logged with the documented fields, and the metrics count them.
func TestOpenPolicy(t *testing.T) {
	e := newEnv(t)
	rt, srv, logs := e.open(t, twoListeners+`auth:
  anonymous: true
  password_file: passwd
  certificate: { username_from: cn }
acl:
  acl_file: aclfile
  casbin_policy: policy.csv
  wildcard: { admins: [admin] }
log: { level: info }
metrics: { address: "127.0.0.1:0" }
`)
	plain, mtls := srv.Addr(0), srv.Addr(1)

	// Authentication.
	_, code := dial(t, plain, "x", "mallory", nil)
	require.Equal(t, byte(0x86), code, "unknown user")
	anon, code := dial(t, plain, "anon", "", nil)
	require.Zero(t, code, "anonymous on a loopback listener, as configured")
	require.Equal(t, byte(0), anon.Sub(t, "public/#", 0), "the acl_file's anonymous section")
	require.Equal(t, byte(0x87), anon.Sub(t, "devices/alice/#", 0))
	byCert, code := dial(t, mtls, "alice-cert", "", e.client(t, "alice"))
	require.Zero(t, code, "alice by her certificate, no password")
	require.Equal(t, byte(1), byCert.Sub(t, "devices/alice/#", 1))
	require.Equal(t, byte(0x87), byCert.Sub(t, "devices/bob/#", 1))

	// The acl_file allows alice shared/#, the policy bob; the policy's deny
	// on shared/secret/# wins over both.
	alice, _ := dial(t, plain, "alice", "alice", nil)
	bob, _ := dial(t, plain, "bob", "bob", nil)
	admin, _ := dial(t, plain, "admin", "admin", nil)
	require.Equal(t, byte(0), admin.Sub(t, "#", 0), "admins may use root wildcards")
	require.Equal(t, byte(0x87), alice.Sub(t, "#", 0), "nobody else")
	require.Equal(t, byte(0x87), alice.Sub(t, "+/alice/#", 0), "nor a leading +")
	for _, c := range []*testbroker.Conn{alice, bob} {
		code, err := c.Pub(t, "shared/notes", []byte("n"), 1)
		require.NoError(t, err)
		require.Zero(t, code)
		code, _ = c.Pub(t, "shared/secret/plan", []byte("s"), 1)
		require.Equal(t, byte(0x87), code, "deny wins")
	}
	code, _ = bob.Pub(t, "devices/alice/x", []byte("x"), 1)
	require.Equal(t, byte(0x87), code)
	admin.ExpectMessage(t, "shared/notes", 5*time.Second)

	// The events, as JSON lines with the documented keys.
	// A client's denials are logged once a second (bob's second one of the
	// second is counted, not written).
	require.Eventually(t, func() bool { return len(logs.events("publish_denied")) == 2 }, 10*time.Second, 10*time.Millisecond, logs.String())
	ev := logs.events("publish_denied")[1]
	require.Equal(t, "WARN", ev["level"])
	for k, v := range map[string]string{config.KeyClientID: "bob", config.KeyUsername: "bob", config.KeyTopic: "shared/secret/plan",
		config.KeyCode: "0x87", config.KeyReason: "not authorized", config.KeyListener: "plain"} {
		require.Equal(t, v, ev[k], k)
	}
	require.Contains(t, ev[config.KeyRemoteAddr], "127.0.0.1:")
	denied := logs.events("connect_denied")
	require.Len(t, denied, 1)
	require.Equal(t, "0x86", denied[0][config.KeyCode])
	require.NotContains(t, logs.String(), "mallory-pass", "no password in the log")

	// Metrics count the same events.
	resp, err := http.Get("http://" + rt.MetricsAddr() + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(body), `mqttsec_events_total{code="0x87",kind="publish_denied"} 3`)
	require.Contains(t, string(body), `mqttsec_events_total{code="0x86",kind="connect_denied"} 1`)
	require.Contains(t, string(body), `mqttsec_events_total{code="0x00",kind="connected"} 5`)
}

// TestOpenRevocation checks that every reload reaches the Guard: a user
// removed from the password file and a certificate revoked by a reloaded
// CRL are disconnected (0x87), through Runtime.Reload as on SIGHUP.
func TestOpenRevocation(t *testing.T) {
	e := newEnv(t)
	rt, srv, logs := e.open(t, twoListeners+`auth:
  password_file: passwd
  certificate: { username_from: cn }
acl: { acl_file: aclfile }
`)
	bob, _ := dial(t, srv.Addr(0), "bob", "bob", nil)
	alicePw, _ := dial(t, srv.Addr(0), "alice", "alice", nil)
	aliceCert, _ := dial(t, srv.Addr(1), "alice-cert", "", e.client(t, "alice"))
	bobCert, _ := dial(t, srv.Addr(1), "bob-cert", "", e.client(t, "bob"))

	pf, err := auth.LoadPasswordFile(filepath.Join(e.dir, "passwd"))
	require.NoError(t, err)
	require.NoError(t, pf.Delete("bob"))
	require.NoError(t, pf.WriteFile(filepath.Join(e.dir, "passwd")))
	require.NoError(t, rt.Reload())
	expectDisconnect(t, bob, 0x87)

	cert, err := os.ReadFile(filepath.Join(e.dir, "tls", "client-alice.pem"))
	require.NoError(t, err)
	certs, err := tlsconf.ParseCertificates(cert)
	require.NoError(t, err)
	_, err = e.ca.WriteCRL(certs[0])
	require.NoError(t, err)
	require.NoError(t, rt.Reload())
	expectDisconnect(t, aliceCert, 0x87)

	// The others stay.
	for _, c := range []*testbroker.Conn{alicePw, bobCert} {
		code, err := c.Pub(t, "devices/"+map[*testbroker.Conn]string{alicePw: "alice", bobCert: "bob"}[c]+"/x", []byte("x"), 1)
		require.NoError(t, err)
		require.Zero(t, code)
	}
	_, _, err = testbroker.Dial(t, srv.Addr(1), testbroker.ClientOptions{ClientID: "alice-again", TLS: e.client(t, "alice")})
	require.Error(t, err, "a revoked certificate fails the handshake (TLS 1.3: the client may see it on its first write)")
	require.Len(t, logs.events("revoked"), 2)
}

func expectDisconnect(t *testing.T, c *testbroker.Conn, code byte) {
	t.Helper()
	select {
	case d := <-c.ServerDisconnect():
		require.Equal(t, code, d.ReasonCode)
	case <-time.After(15 * time.Second):
		t.Fatal("no DISCONNECT")
	}
}

// TestOpenJWT authenticates with a token signed with the HMAC secret of a
// file; replacing the secret disconnects the token's session.
func TestOpenJWT(t *testing.T) {
	e := newEnv(t)
	secret := bytes.Repeat([]byte("k"), 32)
	write(t, e.dir, "jwt.secret", string(secret)+"\n", 0o600)
	rt, srv, _ := e.open(t, `listeners: [{address: "127.0.0.1:0"}]
auth:
  jwt: { algorithms: [HS256], hmac_secret_file: jwt.secret, audience: mqtt }
acl: { acl_file: aclfile }
`)
	m := &auth.JWTMinter{Method: jwt.SigningMethodHS256, Key: secret, Subject: "alice", Audience: "mqtt", TTL: time.Hour}
	tok, err := m.Token(context.Background())
	require.NoError(t, err)
	c, ack, err := testbroker.Dial(t, srv.Addr(0), testbroker.ClientOptions{ClientID: "tok", Username: "alice", Password: []byte(tok)})
	require.NoError(t, err, "%v", ack)
	require.Equal(t, byte(0), c.Sub(t, "devices/alice/#", 0))

	write(t, e.dir, "jwt.secret", strings.Repeat("n", 32), 0o600)
	require.NoError(t, rt.Reload())
	expectDisconnect(t, c, 0x87)
	_, ack, err = testbroker.Dial(t, srv.Addr(0), testbroker.ClientOptions{ClientID: "tok2", Username: "alice", Password: []byte(tok)})
	require.Error(t, err)
	require.Equal(t, byte(0x86), ack.ReasonCode)
}

// TestOpenPolicyErrors checks that a policy line Casbin would load and
// never match (a misspelt effect) is refused with its line, at start and
// on reload; a failed reload keeps the previous policy.
func TestOpenPolicyErrors(t *testing.T) {
	e := newEnv(t)
	write(t, e.dir, "bad.csv", "p, bob, a/#, read, allow\np, bob, a/secret, read, dney\n", 0o600)
	f, err := config.Parse([]byte(`listeners: [{address: "127.0.0.1:0"}]
auth: { password_file: passwd }
acl: { casbin_policy: bad.csv }
`), filepath.Join(e.dir, "m.yaml"))
	require.NoError(t, err)
	_, err = f.Open(context.Background(), config.Options{Output: io.Discard})
	require.ErrorIs(t, err, config.ErrFile)
	require.ErrorContains(t, err, "m.yaml:3: acl.casbin_policy: "+filepath.Join(e.dir, "bad.csv")+`:2: acl: syntax error: effect "dney": use allow or deny`)

	rt, srv, logs := e.open(t, `listeners: [{address: "127.0.0.1:0"}]
auth: { password_file: passwd }
acl: { acl_file: aclfile }
`)
	bob, _ := dial(t, srv.Addr(0), "bob", "bob", nil)
	write(t, e.dir, "aclfile", "user bob\ntopic sideways devices/bob/#\n", 0o600)
	require.Error(t, rt.Reload())
	require.NotEmpty(t, logs.events("reload_failed"))
	code, err := bob.Pub(t, "devices/bob/x", []byte("x"), 1)
	require.NoError(t, err)
	require.Zero(t, code, "the previous policy stays in force")
}

// TestOpenWebsocket serves MQTT over ws and wss listeners, with passwords.
func TestOpenWebsocket(t *testing.T) {
	e := newEnv(t)
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addrs = append(addrs, ln.Addr().String())
		require.NoError(t, ln.Close())
	}
	_, _, _ = e.open(t, `listeners:
  - address: `+addrs[0]+`
    websocket: true
  - address: `+addrs[1]+`
    websocket: true
    tls: { cert_file: tls/server.pem, key_file: tls/server.key }
auth: { password_file: passwd }
acl: { acl_file: aclfile }
`)
	clientTLS, err := e.ca.ClientConfig("").Client()
	require.NoError(t, err)
	clientTLS.ServerName = "localhost"
	clientTLS.NextProtos = []string{"http/1.1"} // as a browser offers
	for i, url := range []string{"ws://" + addrs[0] + "/mqtt", "wss://" + addrs[1] + "/mqtt"} {
		d := &websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: clientTLS, HandshakeTimeout: 10 * time.Second}
		var conn *websocket.Conn
		require.Eventually(t, func() bool {
			conn, _, err = d.Dial(url, nil)
			if err != nil {
				t.Log(err)
			}
			return err == nil
		}, 10*time.Second, 20*time.Millisecond, "%s", url)
		require.NoError(t, err)
		id := fmt.Sprintf("ws%d", i)
		c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: &wsNetConn{Conn: conn}, AuthHandler: auth.NoEnhancedAuth{}})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ack, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
			Username: "alice", UsernameFlag: true, Password: []byte("alice-pass"), PasswordFlag: true})
		require.NoError(t, err, "%s: %v", url, ack)
		for filter, want := range map[string]byte{"devices/alice/#": 0, "devices/bob/#": 0x87} {
			sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter}}})
			if want == 0 {
				require.NoError(t, err)
			}
			require.NotNil(t, sa)
			require.Equal(t, []byte{want}, sa.Reasons, "%s %s", url, filter)
		}
		_ = c.Disconnect(&paho.Disconnect{})
		cancel()
	}
}

// wsNetConn is a net.Conn over a websocket connection, one binary message
// per write. It is a sync.Locker: paho holds the lock around the writes of
// one packet, so that packets never interleave.
type wsNetConn struct {
	*websocket.Conn
	sync.Mutex
	r io.Reader
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsNetConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// TestOpenLogsInsecureSwitches checks that every insecure switch set is
// logged at warn level when the file is opened.
func TestOpenLogsInsecureSwitches(t *testing.T) {
	e := newEnv(t)
	_, _, logs := e.open(t, `listeners: [{address: "0.0.0.0:0", insecure_plaintext: true}]
auth: { password_file: passwd }
acl: { acl_file: aclfile }
`)
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	var found bool
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		if m["msg"] == "insecure setting" {
			require.Equal(t, "WARN", m["level"])
			require.Contains(t, m["setting"], "listeners[0].insecure_plaintext")
			found = true
		}
	}
	require.True(t, found, logs.String())
}

// TestOpenClientIDs checks the clientid section: IDs bound to user names,
// and takeover "deny" keeps even the owner from pushing a live connection
// off.
func TestOpenClientIDs(t *testing.T) {
	e := newEnv(t)
	_, srv, _ := e.open(t, `listeners: [{address: "127.0.0.1:0"}]
auth: { password_file: passwd }
acl: { acl_file: aclfile }
clientid: { takeover: deny, bind: ["{username}-*"], max_length: 32 }
`)
	addr := srv.Addr(0)
	_, code := dial(t, addr, "bob-phone", "alice", nil)
	require.Equal(t, byte(0x85), code, "alice may not use bob's IDs")
	_, code = dial(t, addr, "alice/phone", "alice", nil)
	require.Equal(t, byte(0x85), code, "'/' is never in an ID")
	_, code = dial(t, addr, "alice-"+strings.Repeat("x", 30), "alice", nil)
	require.Equal(t, byte(0x85), code, "longer than max_length")
	phone, code := dial(t, addr, "alice-phone", "alice", nil)
	require.Zero(t, code)
	_, code = dial(t, addr, "alice-phone", "alice", nil)
	require.Equal(t, byte(0x85), code, "takeover deny: not even the owner")
	code, err := phone.Pub(t, "devices/alice/x", []byte("x"), 1)
	require.NoError(t, err)
	require.Zero(t, code, "the first connection is still up")

	// A client that sends no ID gets a random one (mochi's are
	// predictable); a binding does not apply to an ID the broker chose.
	_, ack, err := testbroker.Dial(t, addr, testbroker.ClientOptions{Username: "alice", Password: []byte("alice-pass")})
	require.NoError(t, err)
	require.Regexp(t, `^auto-[a-z2-7]{26}$`, ack.Properties.AssignedClientID)
}

// TestOpenLimits checks that the limits section reaches the Guard's quotas
// and the hook's bounds.
func TestOpenLimits(t *testing.T) {
	e := newEnv(t)
	_, srv, _ := e.open(t, `listeners: [{address: "127.0.0.1:0"}]
auth: { password_file: passwd }
acl: { acl_file: aclfile }
limits: { subscriptions: 1, retained_per_user: 1, topic_length: 20 }
`)
	c, _ := dial(t, srv.Addr(0), "alice", "alice", nil)
	require.Equal(t, byte(0), c.Sub(t, "devices/alice/a", 0))
	require.Equal(t, byte(0x97), c.Sub(t, "devices/alice/b", 0), "over limits.subscriptions")
	pr, err := c.Publish(context.Background(), &paho.Publish{Topic: "devices/alice/r1", Payload: []byte("x"), QoS: 1, Retain: true})
	require.NoError(t, err)
	require.Zero(t, pr.ReasonCode)
	pr, _ = c.Publish(context.Background(), &paho.Publish{Topic: "devices/alice/r2", Payload: []byte("x"), QoS: 1, Retain: true})
	require.NotNil(t, pr)
	require.Equal(t, byte(0x97), pr.ReasonCode, "over limits.retained_per_user")
	code, _ := c.Pub(t, "devices/alice/"+strings.Repeat("x", 20), []byte("x"), 1)
	require.Equal(t, byte(0x90), code, "over limits.topic_length")
}

// TestOpenRateLimit checks the ratelimit section: failed logins from an
// address slow it down (0x9F), a publish flood is refused, and a ban added
// to the bans file disconnects the sessions it covers on reload.
func TestOpenRateLimit(t *testing.T) {
	e := newEnv(t)
	bans := filepath.Join(e.dir, "bans")
	rt, srv, logs := e.open(t, `listeners: [{address: "127.0.0.1:0"}]
auth: { password_file: passwd }
acl: { acl_file: aclfile }
ratelimit:
  auth_failures: { max: 3 }
  publish: { rate: 2, burst: 3 }
  bans_file: bans
`)
	addr := srv.Addr(0)
	alice, code := dial(t, addr, "alice", "alice", nil)
	require.Zero(t, code)
	bob, code := dial(t, addr, "bob", "bob", nil)
	require.Zero(t, code)

	var refused []byte
	for i := range 8 {
		code, _ := alice.Pub(t, "devices/alice/x", []byte{byte(i)}, 1)
		refused = append(refused, code)
	}
	require.Equal(t, []byte{0, 0, 0}, refused[:3], "the burst")
	require.Contains(t, refused[3:], byte(0x97), "then refused: %x", refused)

	require.NoError(t, os.WriteFile(bans, []byte("subject \"bob\" never \"test\"\n"), 0o600))
	require.NoError(t, rt.Reload())
	expectDisconnect(t, bob, 0x98)
	_, code = dial(t, addr, "bob2", "bob", nil)
	require.Equal(t, byte(0x8A), code, "banned")

	// Failed logins: the address is slowed after two, banned at the third;
	// then even the right password is refused.
	var codes []byte
	for i := range 4 {
		_, c, err := testbroker.Dial(t, addr, testbroker.ClientOptions{ClientID: fmt.Sprintf("g%d", i), Username: "admin", Password: []byte("guess")})
		require.Error(t, err)
		codes = append(codes, c.ReasonCode)
	}
	require.Equal(t, []byte{0x86, 0x86, 0x86, 0x8A}, codes)
	_, code = dial(t, addr, "admin", "admin", nil)
	require.Equal(t, byte(0x8A), code, "the address is banned")
	require.NotEmpty(t, logs.events("connect_denied"))
}

// TestOpenBridges runs a bridge inside the broker: messages of its
// mappings cross to a remote broker over TLS and back, and the bridge's
// local identity is an ordinary, narrowly authorized client of the local
// broker.
func TestOpenBridges(t *testing.T) {
	e := newEnv(t)
	// The remote broker: TLS with the same development CA, one user.
	remoteUsers := auth.NewPasswordFile()
	h, err := auth.HashPassword([]byte("site1-pass"), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	require.NoError(t, remoteUsers.Set("site1", h))
	sc, err := e.ca.ServerConfig().Server()
	require.NoError(t, err)
	remoteGuard := mqttsec.New(mqttsec.Config{Authenticator: auth.NewPasswords(remoteUsers, auth.PasswordsConfig{}),
		Authorizer: mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil }),
		Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {})})
	remote := testbroker.Start(t, remoteGuard, testbroker.Options{TLS: sc})
	write(t, e.dir, "site1.pass", "site1-pass\n", 0o600)

	_, srv, logs := e.open(t, `listeners: [{address: "127.0.0.1:0"}]
auth: { password_file: passwd }
acl: { acl_file: aclfile }
clientid: { bind: ["{username}-*"] }
bridges:
  - name: cloud
    remote: "mqtts://localhost:`+portOf(remote.Addr)+`"
    tls: { ca_file: tls/ca.pem }
    username: site1
    password_file: site1.pass
    client_id: site1-bridge
    reconnect_min: 50ms
    topics:
      - { pattern: "devices/alice/#", direction: out, qos: 1, remote_prefix: "site1/" }
      - { pattern: "devices/bob/cmd", direction: in, qos: 1, remote_prefix: "site1/" }
`)
	require.Eventually(t, func() bool {
		n := 0
		for _, ev := range logs.events("connected") {
			if s, _ := ev["source"].(string); strings.HasPrefix(s, "bridge/cloud/") {
				n++
			}
		}
		return n >= 2
	}, 30*time.Second, 20*time.Millisecond, "the bridge did not connect both sides:\n%s", logs.String())

	rtc, err := e.ca.ClientConfig("").Client()
	require.NoError(t, err)
	rtc.ServerName = "localhost"
	rsub, _, err := testbroker.Dial(t, remote.Addr, testbroker.ClientOptions{ClientID: "rsub", Username: "site1", Password: []byte("site1-pass"), TLS: rtc})
	require.NoError(t, err)
	require.Equal(t, byte(1), rsub.Sub(t, "site1/#", 1))

	alice, _ := dial(t, srv.Addr(0), "alice-1", "alice", nil)
	bob, _ := dial(t, srv.Addr(0), "bob-1", "bob", nil)
	require.Equal(t, byte(1), bob.Sub(t, "devices/bob/cmd", 1))
	require.Eventually(t, func() bool {
		code, err := alice.Pub(t, "devices/alice/temp", []byte("21"), 1)
		require.NoError(t, err)
		require.Zero(t, code)
		select {
		case m := <-rsub.Messages():
			return m.Topic == "site1/devices/alice/temp"
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}, 30*time.Second, 10*time.Millisecond, "nothing went out")
	require.Eventually(t, func() bool {
		_, err := rsub.Pub(t, "site1/devices/bob/cmd", []byte("open"), 1)
		require.NoError(t, err)
		select {
		case m := <-bob.Messages():
			return m.Topic == "devices/bob/cmd" && string(m.Payload) == "open"
		case <-time.After(500 * time.Millisecond):
			return false
		}
	}, 30*time.Second, 10*time.Millisecond, "nothing came in")
	require.Empty(t, logs.events("connect_denied"), "the bridge's local client ID is exempt from the binding")
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
