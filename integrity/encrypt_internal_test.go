package integrity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/veraison/go-cose"
)

// TestEncrypt0: the ciphertext is bound to its topic and key; any altered
// byte fails authentication.
func TestEncrypt0(t *testing.T) {
	k, err := GenerateSecretKey("g")
	require.NoError(t, err)
	ring, err := NewKeyring(k)
	require.NoError(t, err)
	aad := appendAAD(nil, "a/b")
	ct, err := encrypt0(k, aad, []byte("plaintext"))
	require.NoError(t, err)
	pt, kid, err := decrypt0(context.Background(), ring, aad, ct)
	require.NoError(t, err)
	require.Equal(t, "plaintext", string(pt))
	require.Equal(t, "g", kid)

	_, _, err = decrypt0(context.Background(), ring, appendAAD(nil, "a/c"), ct)
	require.ErrorIs(t, err, ErrDecrypt, "another topic")
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		_, _, err := decrypt0(context.Background(), ring, aad, bad)
		require.ErrorIs(t, err, ErrDecrypt, "byte %d altered", i)
	}
	_, _, err = decrypt0(context.Background(), ring, aad, append(bytes.Clone(ct), 0))
	require.ErrorIs(t, err, ErrDecrypt, "trailing byte")
}

// FuzzDecrypt feeds the COSE_Encrypt0 parser: nothing panics, and only
// the genuine ciphertext for its topic decrypts.
func FuzzDecrypt(f *testing.F) {
	k, err := NewSecretKey("g", bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	ring, err := NewKeyring(k)
	if err != nil {
		f.Fatal(err)
	}
	ct, err := encrypt0(k, appendAAD(nil, "a/b"), []byte("plaintext"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add("a/b", ct)
	f.Add("a/c", ct)
	f.Add("a/b", ct[:len(ct)-1])
	f.Add("a/b", []byte{0xd0, 0x83, 0x40, 0xa0, 0x40})
	f.Fuzz(func(t *testing.T, topic string, b []byte) {
		pt, _, err := decrypt0(context.Background(), ring, appendAAD(nil, topic), b)
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("error %v does not wrap ErrDecrypt", err)
			}
			return
		}
		if string(pt) != "plaintext" || topic != "a/b" {
			t.Fatalf("decrypted %q on %q", pt, topic)
		}
	})
}

// TestSealMatchesGoCOSE: the COSE_Sign1 Seal writes by hand is byte for
// byte what go-cose's Sign1Message.Sign and MarshalCBOR produce for the
// same headers, payload and external data (Ed25519 is deterministic), for
// both carriers.
func TestSealMatchesGoCOSE(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	pk, err := NewPrivateKey("k", "s", priv)
	require.NoError(t, err)
	for _, c := range []Carrier{Envelope, Detached} {
		for _, payload := range [][]byte{{}, []byte("21.5"), bytes.Repeat([]byte{0xab}, 300)} {
			clock := func() time.Time { return time.UnixMilli(1_767_000_000_123) }
			mine := NewSigner(pk, SignerConfig{Clock: clock})
			theirs := NewSigner(pk, SignerConfig{Clock: clock})
			got, err := mine.Seal("a/b", payload, c, nil)
			require.NoError(t, err)

			msg := cose.Sign1Message{
				Headers: cose.Headers{
					RawProtected:   theirs.protected(pk.pub, false),
					Protected:      cose.ProtectedHeader{cose.HeaderLabelAlgorithm: cose.AlgorithmEdDSA},
					RawUnprotected: emptyMap,
				},
				Payload: payload,
			}
			require.NoError(t, msg.Sign(nil, appendAAD(nil, "a/b"), pk.signer))
			if c == Detached {
				msg.Payload = nil
			}
			want, err := msg.MarshalCBOR()
			require.NoError(t, err)
			if c == Detached {
				require.Equal(t, base64.RawURLEncoding.EncodeToString(want), got.Signature)
				require.Equal(t, payload, got.Payload)
			} else {
				require.Equal(t, want, got.Payload)
			}
		}
	}
}
