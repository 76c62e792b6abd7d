package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/stretchr/testify/require"
)

func runCerts(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return execute(newCertsCmd(), "", args...)
}

func TestCertsInitAndClient(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	out, err := runCerts(t, "init", "--dir", dir)
	require.NoError(t, err)
	require.Contains(t, out, filepath.Join(dir, "ca.pem"))

	_, err = runCerts(t, "init", "--dir", dir)
	require.Error(t, err)
	require.Equal(t, 1, exitCode(err))
	require.ErrorContains(t, err, "already holds a CA")

	out, err = runCerts(t, "client", "--dir", dir, "sensor-1")
	require.NoError(t, err)
	require.Contains(t, out, "client-sensor-1.pem")

	ca, err := tlsconf.OpenDevCA(dir)
	require.NoError(t, err)
	// The issued pair loads under tlsconf's checks and verifies against the CA.
	c := ca.ClientConfig("sensor-1")
	_, err = c.Client()
	require.NoError(t, err)
	certFile, keyFile := ca.ClientFiles("sensor-1")
	data, err := os.ReadFile(certFile)
	require.NoError(t, err)
	certs, err := tlsconf.ParseCertificates(data)
	require.NoError(t, err)
	require.Equal(t, "sensor-1", certs[0].Subject.CommonName)
	st, err := os.Stat(keyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	_, err = runCerts(t, "client", "--dir", dir, "../escape")
	require.Equal(t, 2, exitCode(err))
	_, err = runCerts(t, "client", "--dir", t.TempDir(), "x")
	require.Equal(t, 1, exitCode(err))
	require.ErrorContains(t, err, "certs init")
	_, err = runCerts(t, "client", "--dir", dir)
	require.Error(t, err, "NAME is required")
	_, err = runCerts(t, "init")
	require.ErrorContains(t, err, "dir")
}

func TestCertsRegistered(t *testing.T) {
	c, _, err := rootCmd.Find([]string{"certs", "client"})
	require.NoError(t, err)
	require.Equal(t, "client", c.Name())
}
