package auth_test

import (
	"context"
	"crypto"
	"errors"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

func TestConnectPacketBuilderFreshToken(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	minter := &auth.JWTMinter{Method: jwt.SigningMethodES256, Key: k.ec, Subject: "dev1", Issuer: testIss, Audience: testAud, TTL: time.Minute, Clock: clk.Now,
		Claims: map[string]any{"acl": []any{map[string]any{"permission": "allow", "action": "all", "topic": "dev/dev1/#"}}}}
	build := auth.ConnectPacketBuilder(auth.JWTCredentials("dev1", minter), 0)
	u, _ := url.Parse("mqtt://127.0.0.1:1883")
	cp1, err := build(&paho.Connect{ClientID: "c"}, u)
	require.NoError(t, err)
	require.Equal(t, "dev1", cp1.Username)
	require.True(t, cp1.UsernameFlag && cp1.PasswordFlag)
	tok1 := string(cp1.Password)
	clk.Advance(2 * time.Minute)
	cp2, err := build(&paho.Connect{ClientID: "c"}, u)
	require.NoError(t, err)
	require.NotEqual(t, tok1, string(cp2.Password), "a fresh token on every connection attempt")

	j := newJWT(t, auth.JWTConfig{Algorithms: []string{"ES256"}, PublicKeys: []crypto.PublicKey{k.ecPub}, Issuer: testIss, Audience: testAud, Clock: clk.Now, ACLClaim: true})
	id, err := tokenLogin(j, "c", cp2.Username, string(cp2.Password))
	require.NoError(t, err)
	require.Equal(t, clk.Now().Add(time.Minute+auth.DefaultLeeway), id.Expiry)
	require.Len(t, id.Grants, 1)
	_, err = tokenLogin(j, "c", cp1.Username, tok1)
	require.Error(t, err, "the first token has expired")

	failing := auth.ConnectPacketBuilder(auth.JWTCredentials("", auth.TokenSourceFunc(func(context.Context) (string, error) {
		return "", errors.New("idp down")
	})), time.Second)
	_, err = failing(&paho.Connect{}, u)
	require.Error(t, err)

	_, err = (&auth.JWTMinter{}).Token(context.Background())
	require.ErrorIs(t, err, auth.ErrConfig)
}

// TestStaticCredentialsMosquitto connects an autopaho client with static
// credentials to a real Mosquitto that verifies a "$7$" hash made by
// HashPassword: our PBKDF2 hashes are Mosquitto's.
func TestStaticCredentialsMosquitto(t *testing.T) {
	testenv.Need(t, "mosquitto")
	f := auth.NewPasswordFile()
	h, err := auth.HashPassword([]byte("s3cret-device-password"), auth.HashOptions{Scheme: auth.MosquittoPBKDF2, PBKDF2Iterations: 1000})
	require.NoError(t, err)
	require.NoError(t, f.Set("dev1", h))
	path := filepath.Join(t.TempDir(), "passwd")
	require.NoError(t, f.WriteFile(path))
	m := testenv.StartMosquitto(t, "allow_anonymous false", "password_file "+path)

	connect := func(pw string) error {
		u, _ := url.Parse("mqtt://" + m.Addr)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		refused := make(chan error, 1)
		cfg := autopaho.ClientConfig{
			ServerUrls:                    []*url.URL{u},
			KeepAlive:                     10,
			ReconnectBackoff:              autopaho.NewConstantBackoff(time.Hour),
			ConnectTimeout:                5 * time.Second,
			OnConnectError:                func(err error) { refused <- err },
			ClientConfig:                  paho.ClientConfig{ClientID: "dev1-client"},
			CleanStartOnInitialConnection: true,
		}
		auth.Configure(&cfg, auth.StaticCredentials("dev1", []byte(pw)))
		cm, err := autopaho.NewConnection(ctx, cfg)
		require.NoError(t, err)
		defer func() { _ = cm.Disconnect(context.Background()) }()
		up := make(chan error, 1)
		go func() { up <- cm.AwaitConnection(ctx) }()
		select {
		case err := <-up:
			return err
		case err := <-refused:
			return err
		}
	}
	require.NoError(t, connect("s3cret-device-password"))
	err = connect("wrong")
	require.Error(t, err)
	var reason *autopaho.ConnackError
	require.True(t, errors.As(err, &reason), "%v", err)
	// Mosquitto 2.0 answers a wrong password with 0x87 (not authorized).
	require.Contains(t, []byte{0x86, 0x87}, reason.ReasonCode)
}

// A CONNACK that names an authentication method makes paho call its
// AuthHandler, and crash without one: Configure installs one (a client
// that keeps its own is left alone), so whoever answers the CONNECT, a
// broker or anyone on a plain mqtt:// path, cannot stop the client.
func TestConfigureInstallsAuthHandler(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := packets.ReadPacket(conn); err != nil {
			return
		}
		cp := packets.NewControlPacket(packets.CONNACK)
		cp.Content.(*packets.Connack).Properties = &packets.Properties{AuthMethod: "SCRAM-SHA-256"}
		if _, err := cp.WriteTo(conn); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, conn)
	}()
	u, _ := url.Parse("mqtt://" + ln.Addr().String())
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		ReconnectBackoff:              autopaho.NewConstantBackoff(time.Hour),
		CleanStartOnInitialConnection: true,
		ClientConfig:                  paho.ClientConfig{ClientID: "dev1"},
	}
	auth.Configure(&cfg, auth.StaticCredentials("dev1", []byte("pw")))
	require.NotNil(t, cfg.AuthHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, cfg)
	require.NoError(t, err)
	require.NoError(t, cm.AwaitConnection(ctx))
	// paho calls Authenticated in a goroutine; give it the chance to run
	// (a nil handler crashed the test binary right here).
	time.Sleep(100 * time.Millisecond)
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	_ = cm.Disconnect(dctx)

	own := &countingAuth{}
	cfg.AuthHandler = own
	auth.Configure(&cfg, auth.StaticCredentials("dev1", []byte("pw")))
	require.Same(t, own, cfg.AuthHandler)
	require.Equal(t, &paho.Auth{ReasonCode: 0x18}, auth.NoEnhancedAuth{}.Authenticate(&paho.Auth{}))
}

type countingAuth struct{ n int }

func (a *countingAuth) Authenticate(*paho.Auth) *paho.Auth { a.n++; return &paho.Auth{} }
func (a *countingAuth) Authenticated()                     {}
