package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/stretchr/testify/require"
)

func serverSerial(t *testing.T, s *tlsServer, cc *tls.Config) string {
	t.Helper()
	cs, err := dial(s, cc)
	require.NoError(t, err)
	return cs.PeerCertificates[0].SerialNumber.String()
}

func TestReloadServesNewCertificate(t *testing.T) {
	for _, watch := range []string{tlsconf.WatchAuto, tlsconf.WatchPoll} {
		t.Run("watch="+watch, func(t *testing.T) {
			ca := devCA(t)
			var ev events
			c := ca.ServerConfig()
			c.Events = &ev
			c.Watch = watch
			if watch == tlsconf.WatchPoll {
				c.PollInterval = 20 * time.Millisecond
			} else {
				c.PollInterval = time.Hour // only fsnotify can notice
			}
			r, err := tlsconf.NewReloader(c)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, r.Close()) })
			sc, err := r.Server()
			require.NoError(t, err)
			s := startTLSServer(t, sc)
			cc, err := ca.ClientConfig("").Client()
			require.NoError(t, err)
			cc.ClientSessionCache = nil // a resumed session shows the old certificate

			before := serverSerial(t, s, cc)
			next, err := ca.IssueServer()
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				return serverSerial(t, s, cc) == next.SerialNumber.String()
			}, 10*time.Second, 10*time.Millisecond)
			require.NotEqual(t, before, next.SerialNumber.String())
			require.True(t, ev.find(mqttsec.EventReload, nil))
		})
	}
}

func TestReloadBadFileKeepsOld(t *testing.T) {
	ca := devCA(t)
	var ev events
	c := ca.ServerConfig()
	c.Events = &ev
	c.PollInterval = 20 * time.Millisecond
	r, err := tlsconf.NewReloader(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	sc, err := r.Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)
	cc, err := ca.ClientConfig("").Client()
	require.NoError(t, err)
	cc.ClientSessionCache = nil
	before := serverSerial(t, s, cc)

	certFile, _ := ca.ServerFiles()
	good, err := os.ReadFile(certFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, []byte("not a certificate"), 0o644))
	require.Eventually(t, func() bool { return ev.find(mqttsec.EventReloadFailed, tlsconf.ErrPEM) }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, before, serverSerial(t, s, cc), "old certificate still served")
	err = r.Reload()
	require.ErrorIs(t, err, tlsconf.ErrPEM)
	require.ErrorContains(t, err, certFile)

	// A certificate that does not match the key on disk.
	other := devCA(t)
	otherCert, _ := other.ServerFiles()
	data, err := os.ReadFile(otherCert)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, data, 0o644))
	require.ErrorIs(t, r.Reload(), tlsconf.ErrKeyMismatch)
	require.Equal(t, before, serverSerial(t, s, cc))

	require.NoError(t, os.Remove(certFile))
	require.ErrorIs(t, r.Reload(), os.ErrNotExist)
	require.Equal(t, before, serverSerial(t, s, cc))

	// Putting the good file back is not a change from the loaded material.
	require.NoError(t, os.WriteFile(certFile, good, 0o644))
	require.NoError(t, r.Reload())
	require.Equal(t, before, serverSerial(t, s, cc))
}

func TestReloadClientCertificate(t *testing.T) {
	ca := devCA(t)
	_, err := ca.IssueClient("dev")
	require.NoError(t, err)
	var seen atomic.Value
	sconf := ca.ServerConfig()
	sconf.ClientAuth = tlsconf.ClientAuthRequire
	sconf.VerifyPeer = func(cs tls.ConnectionState) error {
		seen.Store(cs.PeerCertificates[0].SerialNumber.String())
		return nil
	}
	sc, err := sconf.Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)

	cconf := ca.ClientConfig("dev")
	cconf.Watch, cconf.PollInterval = tlsconf.WatchPoll, time.Hour
	r, err := tlsconf.NewReloader(cconf)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	cc := r.Client()
	cc.ClientSessionCache = nil
	_, err = dial(s, cc)
	require.NoError(t, err)
	next, err := ca.IssueClient("dev")
	require.NoError(t, err)
	require.NotEqual(t, next.SerialNumber.String(), seen.Load())
	require.NoError(t, r.Reload())
	_, err = dial(s, cc)
	require.NoError(t, err)
	require.Equal(t, next.SerialNumber.String(), seen.Load())
}

// TestReloadUnderLoad swaps the server certificate while handshakes run
// concurrently: none may fail.
func TestReloadUnderLoad(t *testing.T) {
	ca := devCA(t)
	var ev events
	c := ca.ServerConfig()
	c.Events = &ev
	c.PollInterval = 5 * time.Millisecond // watcher and poller race the explicit reloads
	r, err := tlsconf.NewReloader(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	sc, err := r.Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)
	cc, err := ca.ClientConfig("").Client()
	require.NoError(t, err)
	cc.ClientSessionCache = nil // full handshakes only

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	serials := sync.Map{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cs, err := dial(s, cc)
				if err != nil {
					failed.Add(1)
					t.Errorf("handshake during reload: %v", err)
					continue
				}
				ok.Add(1)
				serials.Store(cs.PeerCertificates[0].SerialNumber.String(), true)
			}
		}()
	}
	for range 20 {
		_, err := ca.IssueServer()
		require.NoError(t, err)
		_ = r.Reload() // may see a cert/key pair mid-swap: then it keeps the old one
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	require.Zero(t, failed.Load())
	require.Greater(t, ok.Load(), int64(20))
	n := 0
	serials.Range(func(any, any) bool { n++; return true })
	require.Greater(t, n, 1, "handshakes saw reloaded certificates")
}

func TestReloaderClose(t *testing.T) {
	ca := devCA(t)
	r, err := tlsconf.NewReloader(ca.ServerConfig())
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.NoError(t, r.Close())
	// Still serves, and still reloads on request.
	_, err = r.Server()
	require.NoError(t, err)
	require.NoError(t, r.Reload())
}

// TestReloadRevocationByWatch revokes a client by rewriting the CRL file
// only: the watcher picks it up and the client's next handshake fails.
func TestReloadRevocationByWatch(t *testing.T) {
	ca := devCA(t)
	dev, err := ca.IssueClient("dev")
	require.NoError(t, err)
	crl, err := ca.WriteCRL()
	require.NoError(t, err)
	var ev events
	c := ca.ServerConfig()
	c.ClientAuth = tlsconf.ClientAuthRequire
	c.CRLFiles = []string{crl}
	c.Events = &ev
	c.PollInterval = time.Hour // fsnotify must notice
	r, err := tlsconf.NewReloader(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	sc, err := r.Server()
	require.NoError(t, err)
	s := startTLSServer(t, sc)
	cc, err := ca.ClientConfig("dev").Client()
	require.NoError(t, err)
	_, err = dial(s, cc)
	require.NoError(t, err)

	_, err = ca.WriteCRL(dev)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ev.find(mqttsec.EventReload, nil) }, 10*time.Second, 10*time.Millisecond)
	_, err = dial(s, cc) // a resumed session: refused all the same
	require.Error(t, err)
	require.True(t, ev.find(mqttsec.EventConnectDenied, tlsconf.ErrRevoked))
}

// TestExpiryWarningWhileRunning: a certificate that enters the warning
// window while the files stay unchanged is reported once by the poller.
func TestExpiryWarningWhileRunning(t *testing.T) {
	ca := devCA(t)
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	var ev events
	c := ca.ServerConfig()
	c.Events = &ev
	c.Now = now
	c.Watch, c.PollInterval = tlsconf.WatchPoll, 10*time.Millisecond
	c.ExpiryWarning = 24 * time.Hour
	r, err := tlsconf.NewReloader(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	require.Empty(t, r.Warnings())
	require.False(t, ev.find(mqttsec.EventWarning, tlsconf.ErrExpiresSoon))

	offset.Store(int64(364 * 24 * time.Hour)) // the server certificate lives a year
	require.Eventually(t, func() bool { return ev.find(mqttsec.EventWarning, tlsconf.ErrExpiresSoon) }, 10*time.Second, 10*time.Millisecond)
	require.Len(t, r.Warnings(), 1)
	time.Sleep(50 * time.Millisecond) // several more polls
	ev.mu.Lock()
	n := 0
	for _, e := range ev.ev {
		if e.Kind == mqttsec.EventWarning {
			n++
		}
	}
	ev.mu.Unlock()
	require.Equal(t, 1, n, "reported once")
}

// Every reload event names its source ("tls") and the file: the files
// that changed for an EventReload, the file that failed for an
// EventReloadFailed. A CRL rewritten with new entries is a reload.
func TestReloadEventsNameSourceAndFile(t *testing.T) {
	ca := devCA(t)
	crl, err := ca.WriteCRL()
	require.NoError(t, err)
	var ev events
	c := ca.ServerConfig()
	c.CRLFiles = []string{crl}
	c.Events = &ev
	c.Watch = tlsconf.WatchPoll
	c.PollInterval = time.Hour
	r, err := tlsconf.NewReloader(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	kinds := func() []string {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		var out []string
		for _, e := range ev.ev {
			if e.Kind == mqttsec.EventWarning {
				continue
			}
			require.Equal(t, tlsconf.EventSource, e.Source)
			out = append(out, e.Kind.String()+" "+e.File)
		}
		ev.ev = nil
		return out
	}

	leaf, err := ca.IssueClient("dev")
	require.NoError(t, err)
	_, err = ca.WriteCRL(leaf)
	require.NoError(t, err)
	require.NoError(t, r.Reload())
	require.Equal(t, []string{"reload " + crl}, kinds())

	certFile, keyFile := ca.ServerFiles()
	_, err = ca.IssueServer()
	require.NoError(t, err)
	require.NoError(t, r.Reload())
	require.Equal(t, []string{"reload " + certFile, "reload " + keyFile}, kinds())

	require.NoError(t, os.WriteFile(crl, []byte("not a CRL"), 0o644))
	require.ErrorIs(t, r.Reload(), tlsconf.ErrCRL)
	require.Equal(t, []string{"reload_failed " + crl}, kinds())
	require.NoError(t, os.Remove(certFile))
	require.ErrorIs(t, r.Reload(), os.ErrNotExist)
	require.Equal(t, []string{"reload_failed " + certFile}, kinds())
}

// VerifyClientCertificate checks a connected client again with the
// current material: a CRL loaded since revokes it, a CA bundle replaced
// since no longer trusts it, and AllowedNames still applies.
func TestVerifyClientCertificate(t *testing.T) {
	ca := devCA(t)
	dev, err := ca.IssueClient("dev")
	require.NoError(t, err)
	other, err := ca.IssueClient("other")
	require.NoError(t, err)
	crl, err := ca.WriteCRL()
	require.NoError(t, err)
	c := ca.ServerConfig()
	c.CRLFiles = []string{crl}
	c.Watch = tlsconf.WatchPoll
	c.PollInterval = time.Hour
	c.Events = &events{}
	r, err := tlsconf.NewReloader(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })

	require.NoError(t, r.VerifyClientCertificate([]*x509.Certificate{dev}))
	require.ErrorIs(t, r.VerifyClientCertificate(nil), tlsconf.ErrUntrusted)
	server, _ := ca.ServerFiles()
	srvCerts, err := tlsconf.ParseCertificates(mustRead(t, server))
	require.NoError(t, err)
	require.ErrorIs(t, r.VerifyClientCertificate(srvCerts), tlsconf.ErrUntrusted, "a server certificate is no client certificate")

	_, err = ca.WriteCRL(dev)
	require.NoError(t, err)
	require.NoError(t, r.VerifyClientCertificate([]*x509.Certificate{dev}), "not before the reload")
	require.NoError(t, r.Reload())
	err = r.VerifyClientCertificate([]*x509.Certificate{dev})
	require.ErrorIs(t, err, tlsconf.ErrRevoked)
	require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
	require.NoError(t, r.VerifyClientCertificate([]*x509.Certificate{other}))

	// Another CA replaces the bundle (its CRL with it).
	next := devCA(t)
	require.NoError(t, os.WriteFile(ca.CAFile(), mustRead(t, next.CAFile()), 0o644))
	nextCRL, err := next.WriteCRL()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(crl, mustRead(t, nextCRL), 0o644))
	require.NoError(t, r.Reload())
	err = r.VerifyClientCertificate([]*x509.Certificate{other})
	require.ErrorIs(t, err, tlsconf.ErrUntrusted)
	require.Equal(t, mqttsec.CodeNotAuthorized, mqttsec.CodeOf(err))
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}
