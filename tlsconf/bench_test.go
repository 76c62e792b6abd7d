package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/stretchr/testify/require"
)

// BenchmarkHandshake compares a full mTLS handshake through a tlsconf
// server (reloadable material, CRL, name and pin checks) with the same
// handshake through a hand-built static tls.Config, in the same run.
func BenchmarkHandshake(b *testing.B) {
	ca := devCA(b)
	dev, err := ca.IssueClient("dev")
	require.NoError(b, err)
	crl, err := ca.WriteCRL()
	require.NoError(b, err)
	cc, err := ca.ClientConfig("dev").Client()
	require.NoError(b, err)
	cc.ClientSessionCache = nil
	cc.ServerName = "localhost"

	plain := func() *tls.Config {
		certFile, keyFile := ca.ServerFiles()
		kp, err := tls.LoadX509KeyPair(certFile, keyFile)
		require.NoError(b, err)
		pool := x509.NewCertPool()
		pool.AddCert(ca.Certificate())
		return &tls.Config{Certificates: []tls.Certificate{kp}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
			MinVersion: tls.VersionTLS12, NextProtos: []string{"mqtt"}}
	}()
	c := ca.ServerConfig()
	c.ClientAuth = tlsconf.ClientAuthRequire
	secure, err := c.Server()
	require.NoError(b, err)
	c.CRLFiles = []string{crl}
	c.AllowedNames = []string{"dev"}
	c.PinnedSPKI = []string{tlsconf.SPKIPin(dev.RawSubjectPublicKeyInfo)}
	r, err := tlsconf.NewReloader(c)
	require.NoError(b, err)
	b.Cleanup(func() { _ = r.Close() })
	checked, err := r.Server()
	require.NoError(b, err)

	for _, bc := range []struct {
		name string
		sc   *tls.Config
	}{{"stdlib", plain}, {"tlsconf", secure}, {"tlsconf+reloader+crl+names+pins", checked}} {
		b.Run(bc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(b, err)
			defer ln.Close()
			b.ReportAllocs()
			for b.Loop() {
				handshake(b, ln, bc.sc, cc)
			}
		})
	}
}

// handshake runs one handshake over a loopback TCP pair (buffered, unlike
// net.Pipe, so post-handshake session tickets cannot block).
func handshake(b *testing.B, ln net.Listener, sc, cc *tls.Config) {
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		s := tls.Server(conn, sc)
		done <- s.Handshake()
		_ = s.Close()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := tls.Client(conn, cc)
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	_ = c.Close()
}

// BenchmarkGetConfigForClient is the per-handshake cost of finding the
// current material: an atomic load, no allocation.
func BenchmarkGetConfigForClient(b *testing.B) {
	ca := devCA(b)
	sc, err := ca.ServerConfig().Server()
	require.NoError(b, err)
	hello := &tls.ClientHelloInfo{}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := sc.GetConfigForClient(hello); err != nil {
				b.Fatal(err)
			}
		}
	})
}
