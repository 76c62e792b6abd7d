package integrity

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
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
