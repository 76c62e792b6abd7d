package integrity

import (
	"bytes"
	"context"
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
