package auth_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testbroker"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// The end-to-end revocation tests: a watcher reports a reload to the Guard
// (its EventSink), the Guard revalidates every session with the
// authenticator, and the mochi adapter disconnects those it denies, with a
// v5 DISCONNECT 0x87.

// revocations records the Guard's events.
type revocations struct {
	mu      sync.Mutex
	revoked map[string]time.Time
	seen    chan mqttsec.Event
}

func newRevocations() *revocations {
	return &revocations{revoked: map[string]time.Time{}, seen: make(chan mqttsec.Event, 256)}
}

func (r *revocations) Event(e mqttsec.Event) {
	if e.Kind == mqttsec.EventRevoked {
		r.mu.Lock()
		r.revoked[e.ClientID] = time.Now()
		r.mu.Unlock()
	}
	select {
	case r.seen <- e:
	default:
	}
}

// at returns when clientID was revoked, waiting for it.
func (r *revocations) at(t *testing.T, clientID string) time.Time {
	t.Helper()
	var at time.Time
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		var ok bool
		at, ok = r.revoked[clientID]
		return ok
	}, 20*time.Second, 5*time.Millisecond, "no EventRevoked for %q", clientID)
	return at
}

func (r *revocations) was(clientID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.revoked[clientID]
	return ok
}

var allowAll = mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })

// disconnectedWith waits for the server's DISCONNECT to c and checks its
// reason code, then for the connection to close.
func disconnectedWith(t *testing.T, c *testbroker.Conn, code byte) {
	t.Helper()
	select {
	case d := <-c.ServerDisconnect():
		require.Equal(t, code, d.ReasonCode)
	case <-time.After(20 * time.Second):
		t.Fatal("no DISCONNECT")
	}
	select {
	case <-c.Closed():
	case <-time.After(20 * time.Second):
		t.Fatal("connection not closed")
	}
}

// stillUp checks that c is connected and served.
func stillUp(t *testing.T, c *testbroker.Conn, name string) {
	t.Helper()
	select {
	case <-c.Closed():
		t.Fatalf("%s was disconnected", name)
	default:
	}
	require.Equal(t, byte(0), c.Sub(t, "still/"+name, 0), name)
}

// A user removed from the password file, and a user whose password
// changes, are disconnected within a second of the file change; the other
// users stay. Real mosquitto_sub clients see it too.
func TestE2EPasswordFileChangeDisconnects(t *testing.T) {
	sub := testenv.Need(t, "mosquitto_sub")
	path := filepath.Join(t.TempDir(), "passwd")
	f := fileWith(t, "alice", "alice-password", "bob", "bob-password", "carol", "carol-password")
	require.NoError(t, f.WriteFile(path))
	rec := newRevocations()
	p := auth.NewPasswords(nil, auth.PasswordsConfig{})
	g := mqttsec.New(mqttsec.Config{Authenticator: p, Authorizer: allowAll, Events: rec})
	w, err := auth.WatchPasswordFile(path, p, auth.WatchOptions{Events: g})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	b := testbroker.Start(t, g, testbroker.Options{})

	dial := func(id, user, pw string) *testbroker.Conn {
		t.Helper()
		c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: id, Username: user, Password: []byte(pw)})
		require.NoError(t, err)
		return c
	}
	mosquittoSub := func(id, user, pw, version string) chan error {
		t.Helper()
		cmd := exec.Command(sub, "-h", "127.0.0.1", "-p", portOf(t, b.Addr), "-i", id, "-u", user, "-P", pw,
			"-V", version, "-t", "devices/"+user, "-k", "30")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return done
	}
	alice, bob, carol := dial("alice-1", "alice", "alice-password"), dial("bob-1", "bob", "bob-password"), dial("carol-1", "carol", "carol-password")
	bobSub5 := mosquittoSub("bob-sub5", "bob", "bob-password", "mqttv5")
	bobSub3 := mosquittoSub("bob-sub3", "bob", "bob-password", "mqttv311")
	aliceSub := mosquittoSub("alice-sub", "alice", "alice-password", "mqttv5")
	// Wait until the mosquitto_sub clients are connected.
	require.Eventually(t, func() bool {
		n := 0
		for _, s := range g.Sessions() {
			switch s.Client().ID {
			case "bob-sub5", "bob-sub3", "alice-sub":
				n++
			}
		}
		return n == 3
	}, 20*time.Second, 10*time.Millisecond)

	t.Run("user removed", func(t *testing.T) {
		require.NoError(t, f.Delete("bob"))
		require.NoError(t, f.WriteFile(path))
		written := time.Now()
		for _, id := range []string{"bob-1", "bob-sub5", "bob-sub3"} {
			took := rec.at(t, id).Sub(written)
			t.Logf("%s revoked %v after the file change", id, took)
			require.Less(t, took, time.Second, id)
		}
		disconnectedWith(t, bob, 0x87)
		for name, done := range map[string]chan error{"v5": bobSub5, "v3.1.1": bobSub3} {
			select {
			case <-done: // reconnected, was refused, and gave up
			case <-time.After(20 * time.Second):
				t.Fatalf("mosquitto_sub (%s) still running after its user was removed", name)
			}
		}
		stillUp(t, alice, "alice")
		stillUp(t, carol, "carol")
		require.False(t, rec.was("alice-sub"))
	})

	t.Run("password changed", func(t *testing.T) {
		h, err := auth.HashPassword([]byte("alice-new-password"), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.NoError(t, f.Set("alice", h))
		require.NoError(t, f.WriteFile(path))
		written := time.Now()
		for _, id := range []string{"alice-1", "alice-sub"} {
			took := rec.at(t, id).Sub(written)
			t.Logf("%s revoked %v after the file change", id, took)
			require.Less(t, took, time.Second, id)
		}
		disconnectedWith(t, alice, 0x87)
		select {
		case <-aliceSub:
		case <-time.After(20 * time.Second):
			t.Fatal("mosquitto_sub still running after its password changed")
		}
		stillUp(t, carol, "carol")
		dial("alice-2", "alice", "alice-new-password") // the new password works
	})
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return port
}

// A client whose certificate a reloaded CRL revokes is disconnected; the
// Reloader reports the reload to the Guard, and X509 asks the Reloader.
func TestE2ECertificateRevokedByCRL(t *testing.T) {
	ca, err := tlsconf.CreateDevCA(filepath.Join(t.TempDir(), "pki"))
	require.NoError(t, err)
	dev, err := ca.IssueClient("dev")
	require.NoError(t, err)
	_, err = ca.IssueClient("other")
	require.NoError(t, err)
	crl, err := ca.WriteCRL()
	require.NoError(t, err)

	// The Guard is the Reloader's event sink, and the X509 authenticator
	// verifies with the Reloader: make the Guard first, give it its parts
	// after.
	rec := newRevocations()
	g := mqttsec.New(mqttsec.Config{Events: rec})
	sc := ca.ServerConfig()
	sc.CRLFiles = []string{crl}
	sc.Events = g
	r, err := tlsconf.NewReloader(sc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	x, err := auth.NewX509(auth.X509Config{Verifier: r})
	require.NoError(t, err)
	g.Reload(mqttsec.Config{Authenticator: x, Authorizer: allowAll, Events: rec})
	serverTLS, err := r.Server()
	require.NoError(t, err)
	b := testbroker.Start(t, g, testbroker.Options{TLS: serverTLS})

	dial := func(name string) *testbroker.Conn {
		t.Helper()
		cc, err := ca.ClientConfig(name).Client()
		require.NoError(t, err)
		c, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: name + "-1", TLS: cc})
		require.NoError(t, err)
		return c
	}
	devConn, otherConn := dial("dev"), dial("other")

	_, err = ca.WriteCRL(dev)
	require.NoError(t, err)
	written := time.Now()
	t.Logf("revoked %v after the CRL was written", rec.at(t, "dev-1").Sub(written))
	disconnectedWith(t, devConn, 0x87)
	stillUp(t, otherConn, "other")
	require.False(t, rec.was("other-1"))

	// And it cannot come back.
	cc, err := ca.ClientConfig("dev").Client()
	require.NoError(t, err)
	_, _, err = testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: "dev-2", TLS: cc})
	require.Error(t, err)
}

// A client whose token was signed with a key the JWK Set no longer holds is
// disconnected at the next refresh; tokens of the remaining key stay.
func TestE2EJWKSKeyRemovedDisconnects(t *testing.T) {
	k := getKeys(t)
	set := func(keys map[string]*ecdsa.PrivateKey) []byte {
		var s jwkset.JWKSMarshal
		for kid, key := range keys {
			jwk, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
			require.NoError(t, err)
			s.Keys = append(s.Keys, jwk.Marshal())
		}
		b, err := json.Marshal(s)
		require.NoError(t, err)
		return b
	}
	var mu sync.Mutex
	body := set(map[string]*ecdsa.PrivateKey{"old": k.ec, "new": k.other})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)

	rec := newRevocations()
	g := mqttsec.New(mqttsec.Config{Events: rec})
	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, JWKSURL: srv.URL, JWKSRefresh: 100 * time.Millisecond,
		Issuer: testIss, Audience: testAud, Leeway: -1, Events: g})
	g.Reload(mqttsec.Config{Authenticator: auth.Chain(j), Authorizer: allowAll, Events: rec})
	b := testbroker.Start(t, g, testbroker.Options{})
	dial := func(id string, key *ecdsa.PrivateKey, kid string) *testbroker.Conn {
		t.Helper()
		c := claimsAt(time.Now(), id)
		c["_kid"] = kid
		conn, _, err := testbroker.Dial(t, b.Addr, testbroker.ClientOptions{ClientID: id, Username: id,
			Password: []byte(sign(t, jwt.SigningMethodES256, key, c))})
		require.NoError(t, err)
		return conn
	}
	oldConn, newConn := dial("dev-old", k.ec, "old"), dial("dev-new", k.other, "new")

	mu.Lock()
	body = set(map[string]*ecdsa.PrivateKey{"new": k.other}) // "old" withdrawn
	mu.Unlock()
	changed := time.Now()
	t.Logf("revoked %v after the key set changed (refresh every 100 ms)", rec.at(t, "dev-old").Sub(changed))
	disconnectedWith(t, oldConn, 0x87)
	stillUp(t, newConn, "dev-new")
	require.False(t, rec.was("dev-new"))
}
