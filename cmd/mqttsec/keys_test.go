package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/integrity"
)

// TestKeysCommand: generate a device key, add its public JWK to a keyring,
// and check that a message the device signs verifies against the keyring;
// the refusals of add.
func TestKeysCommand(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "sensor-7.jwk")
	ring := filepath.Join(dir, "keyring.json")

	out, err := execute(newKeysCmd(), "", "generate", "--out", priv, "sensor-7")
	require.NoError(t, err, out)
	require.Contains(t, out, `"sub":"sensor-7"`)
	require.NotContains(t, out, `"d"`, "the private key is not printed")
	st, err := os.Stat(priv)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	pubJWK := strings.TrimSpace(out)

	_, err = execute(newKeysCmd(), "", "generate", "--out", priv, "sensor-7")
	require.Equal(t, 1, exitCode(err), "an existing private key is not overwritten")
	pub, err := execute(newKeysCmd(), "", "public", priv)
	require.NoError(t, err)
	require.Equal(t, pubJWK, strings.TrimSpace(pub))

	out, err = execute(newKeysCmd(), pubJWK, "add", ring, "-")
	require.NoError(t, err, out)
	require.Contains(t, out, "added key")
	_, err = execute(newKeysCmd(), pubJWK, "add", ring, "-")
	require.Equal(t, 1, exitCode(err), "a key ID already there")
	_, err = execute(newKeysCmd(), pubJWK, "add", "--replace", ring, "-")
	require.NoError(t, err)
	_, err = execute(newKeysCmd(), "", "add", ring, priv)
	require.Equal(t, 1, exitCode(err), "a private key is never added")

	es := filepath.Join(dir, "es.jwk")
	out, err = execute(newKeysCmd(), "", "generate", "--alg", "ES256", "--kid", "sensor-8-2027", "--out", es, "sensor-8")
	require.NoError(t, err, out)
	_, err = execute(newKeysCmd(), out, "add", ring, "-")
	require.NoError(t, err)

	group := filepath.Join(dir, "group.jwk")
	out, err = execute(newKeysCmd(), "", "generate", "--alg", "A256GCM", "--kid", "plant-1", "--out", group)
	require.NoError(t, err, out)
	require.Empty(t, out)
	_, err = execute(newKeysCmd(), "", "add", ring, group)
	require.Equal(t, 1, exitCode(err), "a content key needs --secret")
	devRing := filepath.Join(dir, "device-ring.json")
	_, err = execute(newKeysCmd(), "", "add", "--secret", devRing, group)
	require.NoError(t, err)
	st, err = os.Stat(devRing)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	list, err := execute(newKeysCmd(), "", "list", ring)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^sensor-8-2027 +ES256 +sensor-8$`, list)

	// The keys work: a message signed with the generated key verifies
	// against the keyring the command wrote.
	k, err := integrity.LoadPrivateKey(priv)
	require.NoError(t, err)
	kr, err := integrity.LoadKeyring(ring)
	require.NoError(t, err)
	require.Len(t, kr.Keys(), 2)
	v, err := integrity.NewVerifier(integrity.VerifierConfig{Keys: kr})
	require.NoError(t, err)
	m, err := integrity.NewSigner(k, integrity.SignerConfig{}).Seal("sensors/7", []byte("21.5"), integrity.Envelope, nil)
	require.NoError(t, err)
	vd, err := v.Verify(context.Background(), "sensors/7", m.Payload, "")
	require.NoError(t, err)
	require.Equal(t, "sensor-7", vd.Subject)

	for name, args := range map[string][]string{
		"no out":        {"generate", "sensor-9"},
		"bad alg":       {"generate", "--alg", "RS256", "--out", filepath.Join(dir, "x"), "s"},
		"no subject":    {"generate", "--out", filepath.Join(dir, "y")},
		"content sub":   {"generate", "--alg", "A256GCM", "--kid", "g", "--out", filepath.Join(dir, "z"), "s"},
		"add one arg":   {"add", ring},
		"no subcommand": {},
	} {
		_, err := execute(newKeysCmd(), "", args...)
		require.Equal(t, 2, exitCode(err), name)
	}
}
