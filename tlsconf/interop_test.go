package tlsconf_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/internal/testenv"
	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/stretchr/testify/require"
)

// pahoConnect dials addr with cc and sends a v5 CONNECT with paho.
func pahoConnect(t *testing.T, addr string, cc *tls.Config) (*paho.Connack, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := tls.DialWithDialer(&timeoutDialer, "tcp", addr, cc)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "tlsconf-test", KeepAlive: 30, CleanStart: true})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	return ack, nil
}

// TestPahoToMosquitto connects a paho v5 client configured by Client() to a
// real Mosquitto TLS listener that requires client certificates.
func TestPahoToMosquitto(t *testing.T) {
	ca := devCA(t)
	_, err := ca.IssueClient("device-1")
	require.NoError(t, err)
	cert, key := ca.ServerFiles()
	m := testenv.StartMosquitto(t,
		"cafile "+ca.CAFile(),
		"certfile "+cert,
		"keyfile "+key,
		"require_certificate true",
		"tls_version tlsv1.2",
		"allow_anonymous true",
	)

	t.Run("client certificate", func(t *testing.T) {
		cc, err := ca.ClientConfig("device-1").Client()
		require.NoError(t, err)
		ack, err := pahoConnect(t, m.Addr, cc)
		require.NoError(t, err)
		require.Equal(t, byte(0), ack.ReasonCode)
	})
	t.Run("pinned broker key", func(t *testing.T) {
		c := ca.ClientConfig("device-1")
		c.PinnedSPKI = []string{tlsconf.SPKIPin(ca.Certificate().RawSubjectPublicKeyInfo)}
		c.MinVersion = "1.3"
		cc, err := c.Client()
		require.NoError(t, err)
		ack, err := pahoConnect(t, m.Addr, cc)
		require.NoError(t, err)
		require.Equal(t, byte(0), ack.ReasonCode)
	})
	t.Run("wrong pin refused", func(t *testing.T) {
		c := ca.ClientConfig("device-1")
		c.PinnedSPKI = []string{tlsconf.SPKIPin(devCA(t).Certificate().RawSubjectPublicKeyInfo)}
		cc, err := c.Client()
		require.NoError(t, err)
		_, err = pahoConnect(t, m.Addr, cc)
		require.ErrorIs(t, err, tlsconf.ErrPinMismatch)
	})
	t.Run("no client certificate refused", func(t *testing.T) {
		cc, err := ca.ClientConfig("").Client()
		require.NoError(t, err)
		_, err = pahoConnect(t, m.Addr, cc)
		require.Error(t, err)
	})
	t.Run("untrusted broker refused", func(t *testing.T) {
		cc, err := devCA(t).ClientConfig("").Client()
		require.NoError(t, err)
		_, err = pahoConnect(t, m.Addr, cc)
		require.ErrorContains(t, err, "certificate")
	})
}

// startMochi runs a mochi broker with one TLS listener using sc.
func startMochi(t *testing.T, sc *tls.Config) (addr string, port int) {
	t.Helper()
	port = testenv.FreePort(t)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, s.AddHook(new(auth.AllowHook), nil))
	require.NoError(t, s.AddListener(listeners.NewTCP(listeners.Config{ID: "tls", Address: addr, TLSConfig: sc})))
	require.NoError(t, s.Serve())
	t.Cleanup(func() { _ = s.Close() })
	return addr, port
}

// mosq runs mosquitto_pub or mosquitto_sub against port with TLS args.
func mosq(t *testing.T, bin string, port int, args ...string) (string, error) {
	t.Helper()
	all := append([]string{"-h", "localhost", "-p", strconv.Itoa(port), "-V", "mqttv311"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, all...).CombinedOutput()
	return string(out), err
}

// TestMosquittoClientsToMochi points mosquitto_pub and mosquitto_sub at a
// mochi TLS listener built with Server().
func TestMosquittoClientsToMochi(t *testing.T) {
	pub := testenv.Need(t, "mosquitto_pub")
	sub := testenv.Need(t, "mosquitto_sub")
	ca := devCA(t)
	for _, n := range []string{"good", "revoked"} {
		_, err := ca.IssueClient(n)
		require.NoError(t, err)
	}
	revokedPEM, _ := ca.ClientFiles("revoked")
	revokedCert := mustCert(t, revokedPEM)
	crl, err := ca.WriteCRL(revokedCert)
	require.NoError(t, err)

	tlsArgs := func(client string) []string {
		a := []string{"--cafile", ca.CAFile()}
		if client != "" {
			c, k := ca.ClientFiles(client)
			a = append(a, "--cert", c, "--key", k)
		}
		return a
	}

	for _, tc := range []struct {
		name   string
		mode   tlsconf.ClientAuth
		client string
		ok     bool
	}{
		{"verify-if-given without certificate", tlsconf.ClientAuthVerifyIfGiven, "", true},
		{"verify-if-given with certificate", tlsconf.ClientAuthVerifyIfGiven, "good", true},
		{"require with certificate", tlsconf.ClientAuthRequire, "good", true},
		{"require without certificate", tlsconf.ClientAuthRequire, "", false},
		{"revoked certificate", tlsconf.ClientAuthVerifyIfGiven, "revoked", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ev events
			c := ca.ServerConfig()
			c.ClientAuth = tc.mode
			c.CRLFiles = []string{crl}
			c.Events = &ev
			sc, err := c.Server()
			require.NoError(t, err)
			_, port := startMochi(t, sc)
			topic := "tlsconf/" + t.Name()
			out, err := mosq(t, pub, port, append(tlsArgs(tc.client), "-t", topic, "-m", "hello", "-r", "-q", "1")...)
			if !tc.ok {
				require.Error(t, err, out)
				t.Logf("mosquitto_pub: %s", out)
				if tc.client == "revoked" {
					require.True(t, ev.find(mqttsec.EventConnectDenied, tlsconf.ErrRevoked), "refused for revocation")
				}
				return
			}
			require.NoError(t, err, out)
			out, err = mosq(t, sub, port, append(tlsArgs(tc.client), "-t", topic, "-C", "1", "-W", "5")...)
			require.NoError(t, err, out)
			require.Equal(t, "hello\n", out)
		})
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		sc, err := ca.ServerConfig().Server()
		require.NoError(t, err)
		addr, _ := startMochi(t, sc)
		roots := x509.NewCertPool()
		roots.AddCert(ca.Certificate())
		_, err = tls.DialWithDialer(&timeoutDialer, "tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		require.ErrorContains(t, err, "protocol version")
		// The same client allowed TLS 1.2 connects: the refusal is the version.
		conn, err := tls.DialWithDialer(&timeoutDialer, "tcp", addr, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10})
		require.NoError(t, err)
		_ = conn.Close()
	})

	t.Run("reloaded certificate served to the next handshake", func(t *testing.T) {
		c := ca.ServerConfig()
		c.Watch, c.PollInterval = tlsconf.WatchPoll, time.Hour // only the explicit Reload
		r, err := tlsconf.NewReloader(c)
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		sc, err := r.Server()
		require.NoError(t, err)
		addr, port := startMochi(t, sc)
		cc, err := ca.ClientConfig("").Client()
		require.NoError(t, err)
		cc.ClientSessionCache = nil
		serial := func() string {
			conn, err := tls.DialWithDialer(&timeoutDialer, "tcp", addr, cc)
			require.NoError(t, err)
			defer conn.Close()
			return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
		}
		before := serial()
		next, err := ca.IssueServer()
		require.NoError(t, err)
		require.Equal(t, before, serial(), "not reloaded yet")
		require.NoError(t, r.Reload())
		require.Equal(t, next.SerialNumber.String(), serial())
		out, err := mosq(t, pub, port, append(tlsArgs(""), "-t", "tlsconf/reload", "-m", "x")...)
		require.NoError(t, err, out)
	})
}

func mustCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	certs, err := tlsconf.ParseCertificates(data)
	require.NoError(t, err)
	return certs[0]
}
