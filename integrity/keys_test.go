package integrity_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/integrity"
)

// TestJWKRoundTrip: a generated key pair writes out as JWKs and reads back
// as the same keys, the public JWK without "d", the private with it.
func TestJWKRoundTrip(t *testing.T) {
	for _, alg := range []integrity.Algorithm{integrity.EdDSA, integrity.ES256} {
		t.Run(string(alg), func(t *testing.T) {
			k, err := integrity.GenerateKey(alg, "sensor-7-2026", "sensor-7")
			require.NoError(t, err)
			pub, err := json.Marshal(k.Public())
			require.NoError(t, err)
			require.NotContains(t, string(pub), `"d"`)
			require.Contains(t, string(pub), `"sub":"sensor-7"`)
			require.Contains(t, string(pub), `"alg":"`+string(alg)+`"`)
			back, err := integrity.ParseKey(pub)
			require.NoError(t, err)
			require.True(t, back.Equal(k.Public()))

			priv, err := k.PrivateJWK()
			require.NoError(t, err)
			require.Contains(t, string(priv), `"d"`)
			pk, err := integrity.ParsePrivateKey(priv)
			require.NoError(t, err)
			require.True(t, pk.Public().Equal(k.Public()))
			require.NotContains(t, pk.String(), `"d"`)

			// A signature by the parsed key verifies with the original's public key.
			ring, err := integrity.NewKeyring(k.Public())
			require.NoError(t, err)
			v := verifier(t, integrity.VerifierConfig{Keys: ring})
			m := seal(t, integrity.NewSigner(pk, integrity.SignerConfig{}), "t", []byte("x"), integrity.Envelope, nil)
			_, err = v.Verify(ctx, "t", m.Payload, "")
			require.NoError(t, err)

			_, err = integrity.ParseKey(priv)
			require.ErrorIs(t, err, integrity.ErrConfig, "a verifier is given public keys only")
			_, err = integrity.ParsePrivateKey(pub)
			require.ErrorIs(t, err, integrity.ErrConfig)
		})
	}
	s, err := integrity.GenerateSecretKey("group-9")
	require.NoError(t, err)
	_, err = json.Marshal(s)
	require.Error(t, err, "a secret key is never written by accident")
	sj, err := s.SecretJWK()
	require.NoError(t, err)
	back, err := integrity.ParseKey(sj)
	require.NoError(t, err)
	require.True(t, back.Equal(s))
	require.True(t, back.Secret())
}

// TestParseKeyRefusals: keys a verifier must not trust are refused.
func TestParseKeyRefusals(t *testing.T) {
	k, err := integrity.GenerateKey(integrity.EdDSA, "k1", "dev")
	require.NoError(t, err)
	other, err := integrity.GenerateKey(integrity.EdDSA, "k1", "dev")
	require.NoError(t, err)
	pub := jwkMap(t, k.Public())
	priv := map[string]any{}
	b, err := k.PrivateJWK()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &priv))
	with := func(m map[string]any, kv ...any) []byte {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		out, err := json.Marshal(c)
		require.NoError(t, err)
		return out
	}
	for name, raw := range map[string][]byte{
		"no sub":           with(pub, "sub", nil),
		"empty sub":        with(pub, "sub", ""),
		"no kid":           with(pub, "kid", nil),
		"control in kid":   with(pub, "kid", "a\nb"),
		"long kid":         with(pub, "kid", strings.Repeat("k", 200)),
		"alg mismatch":     with(pub, "alg", "ES256"),
		"use enc":          with(pub, "use", "enc"),
		"x5u":              with(pub, "x5u", "https://example.com/cert"),
		"RSA":              []byte(`{"kty":"RSA","kid":"r","sub":"s","n":"AQAB","e":"AQAB"}`),
		"X25519":           with(pub, "crv", "X25519"),
		"short x":          with(pub, "x", "AAAA"),
		"not json":         []byte(`{"kty":`),
		"oct with sub":     []byte(`{"kty":"oct","kid":"g","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","sub":"x"}`),
		"oct of 16 bytes":  []byte(`{"kty":"oct","kid":"g","k":"AAAAAAAAAAAAAAAAAAAAAA"}`),
		"oct with RS alg":  []byte(`{"kty":"oct","kid":"g","alg":"HS256","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`),
		"private in a set": b,
	} {
		_, err := integrity.ParseKey(raw)
		require.ErrorIs(t, err, integrity.ErrConfig, name)
	}
	// A private JWK whose "x" is another key's: jwkset would pair them.
	_, err = integrity.ParsePrivateKey(with(priv, "x", jwkMap(t, other.Public())["x"]))
	require.ErrorIs(t, err, integrity.ErrConfig)
	// The same for P-256.
	e, err := integrity.GenerateKey(integrity.ES256, "e1", "dev")
	require.NoError(t, err)
	e2, err := integrity.GenerateKey(integrity.ES256, "e1", "dev")
	require.NoError(t, err)
	eb, err := e.PrivateJWK()
	require.NoError(t, err)
	em := map[string]any{}
	require.NoError(t, json.Unmarshal(eb, &em))
	o := jwkMap(t, e2.Public())
	_, err = integrity.ParsePrivateKey(with(em, "x", o["x"], "y", o["y"]))
	require.ErrorIs(t, err, integrity.ErrConfig)
}

func jwkMap(t *testing.T, k *integrity.Key) map[string]any {
	t.Helper()
	b, err := json.Marshal(k)
	require.NoError(t, err)
	m := map[string]any{}
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

// TestKeyringFile: a keyring file loads, a bad file leaves the keys in
// force, and rotation by key ID works with LoadFile.
func TestKeyringFile(t *testing.T) {
	f := keys(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.json")
	b, err := integrity.MarshalKeyring(f.a.Public(), f.b.Public())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	ring, err := integrity.LoadKeyring(path)
	require.NoError(t, err)
	require.Len(t, ring.Keys(), 2)
	_, err = ring.Key(ctx, "dev-a-1")
	require.NoError(t, err)

	require.NoError(t, os.WriteFile(path, []byte(`{"keys":[{"kty":"OKP"}]}`), 0o600))
	require.Error(t, ring.LoadFile(path))
	require.Len(t, ring.Keys(), 2, "a bad file leaves the keyring unchanged")

	// Rotation: dev-a's new key is added, then the old one removed.
	b, err = integrity.MarshalKeyring(f.a256.Public(), f.b.Public())
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
	require.NoError(t, ring.LoadFile(path))
	_, err = ring.Key(ctx, "dev-a-1")
	require.ErrorIs(t, err, integrity.ErrUnknownKey)
	_, err = ring.Key(ctx, "dev-a-2")
	require.NoError(t, err)

	_, err = integrity.MarshalKeyring(f.content)
	require.Error(t, err, "content keys are not written into a keyring")
	_, err = integrity.NewKeyring(f.a.Public(), f.a.Public())
	require.ErrorIs(t, err, integrity.ErrConfig)
	_, err = integrity.ParseKeyring([]byte(`{}`))
	require.ErrorIs(t, err, integrity.ErrConfig)
}

// TestSources: the first source that knows a key answers; an error other
// than "unknown" stops the search.
func TestSources(t *testing.T) {
	f := keys(t)
	ringA, err := integrity.NewKeyring(f.a.Public())
	require.NoError(t, err)
	ringB, err := integrity.NewKeyring(f.b.Public())
	require.NoError(t, err)
	src := integrity.Sources(ringA, ringB)
	k, err := src.Key(ctx, "dev-b-1")
	require.NoError(t, err)
	require.Equal(t, "dev-b", k.Subject())
	_, err = src.Key(ctx, "nope")
	require.ErrorIs(t, err, integrity.ErrUnknownKey)
	down := integrity.KeySourceFunc(func(_ context.Context, id string) (*integrity.Key, error) {
		return nil, os.ErrDeadlineExceeded
	})
	_, err = integrity.Sources(down, ringB).Key(ctx, "dev-b-1")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

// TestPolicy: rule order, "%u" levels and refusals of bad rules.
func TestPolicy(t *testing.T) {
	p := policy(t,
		integrity.Rule{Filter: "cmd/#", Signers: []string{"controller"}},
		integrity.Rule{Filter: "devices/%u/#"},
	)
	r, ok := p.Lookup("devices/a/b")
	require.True(t, ok)
	require.Equal(t, "devices/%u/#", r.Filter)
	require.False(t, p.Protects("other"))
	for _, bad := range []string{"a/%u%u/b", "a/x%u", "%u/%u", "a/#/b", "$share/g/a"} {
		_, err := integrity.NewPolicy(integrity.Rule{Filter: bad})
		require.ErrorIs(t, err, integrity.ErrConfig, bad)
	}
	_, err := integrity.NewPolicy(integrity.Rule{Filter: "a", Signers: []string{""}})
	require.ErrorIs(t, err, integrity.ErrConfig)
	var none *integrity.Policy
	require.True(t, none.Protects("anything"), "a nil policy protects every topic")
}
