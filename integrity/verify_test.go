package integrity_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/integrity"
)

var ctx = context.Background()

// TestSealVerify round-trips both carriers, both algorithms, with and
// without encryption, and checks what the verifier reports.
func TestSealVerify(t *testing.T) {
	f := keys(t)
	for _, key := range []*integrity.PrivateKey{f.a, f.a256} {
		for _, c := range []integrity.Carrier{integrity.Envelope, integrity.Detached} {
			for _, enc := range []*integrity.Key{nil, f.content} {
				t.Run(fmt.Sprintf("%s/%s/enc=%v", key.Public().Algorithm(), c, enc != nil), func(t *testing.T) {
					v := verifier(t, integrity.VerifierConfig{})
					s := integrity.NewSigner(key, integrity.SignerConfig{})
					payload := []byte(`{"temp":21.5}`)
					sealed := seal(t, s, "devices/dev-a/temp", payload, c, enc)
					if c == integrity.Detached {
						require.NotEmpty(t, sealed.Signature)
						if enc == nil {
							require.Equal(t, payload, sealed.Payload, "a detached signature leaves the payload byte-identical")
						}
					} else {
						require.Empty(t, sealed.Signature)
					}
					vd, err := v.Open(ctx, "devices/dev-a/temp", sealed.Payload, sealed.Signature)
					require.NoError(t, err)
					require.Equal(t, payload, vd.Payload)
					require.Equal(t, key.ID(), vd.KeyID)
					require.Equal(t, "dev-a", vd.Subject)
					require.Equal(t, s.Epoch(), vd.Epoch)
					require.Equal(t, uint64(1), vd.Sequence)
					require.Equal(t, enc != nil, vd.Encrypted)
					require.WithinDuration(t, time.Now(), vd.Time, time.Minute)
					if enc != nil {
						require.Equal(t, "group-1", vd.ContentKeyID)
						require.NotContains(t, string(sealed.Payload), "temp", "ciphertext must not show the plaintext")
					}
				})
			}
		}
	}
}

// TestRefusals is the list of attacks of the issue, each against both
// carriers: each is refused with its own error kind.
func TestRefusals(t *testing.T) {
	f := keys(t)
	const topic = "devices/dev-a/temp"
	pol := policy(t, integrity.Rule{Filter: "devices/%u/#"}, integrity.Rule{Filter: "secret/#", EncryptionKey: "group-1"})
	for _, c := range []integrity.Carrier{integrity.Envelope, integrity.Detached} {
		t.Run(c.String(), func(t *testing.T) {
			clk := newClock()
			v := verifier(t, integrity.VerifierConfig{Policy: pol, Clock: clk.Now})
			a := integrity.NewSigner(f.a, integrity.SignerConfig{Clock: clk.Now})
			good := func() integrity.Sealed { return seal(t, a, topic, []byte("21.5"), c, nil) }
			tamper := func(s integrity.Sealed) integrity.Sealed {
				p := bytes.Clone(s.Payload)
				if c == integrity.Envelope {
					i := bytes.Index(p, []byte("21.5"))
					require.Positive(t, i)
					p[i] = '9'
				} else {
					p[0] = '9'
				}
				s.Payload = p
				return s
			}
			cases := []struct {
				name  string
				topic string
				msg   func() integrity.Sealed
				want  error
			}{
				{"tampered payload", topic, func() integrity.Sealed { return tamper(good()) }, integrity.ErrBadSignature},
				{"changed topic", "devices/dev-a/humidity", good, integrity.ErrBadSignature},
				{"expired timestamp", topic, func() integrity.Sealed {
					old := integrity.NewSigner(f.a, integrity.SignerConfig{Clock: func() time.Time { return clk.Now().Add(-time.Hour) }})
					return seal(t, old, topic, []byte("x"), c, nil)
				}, integrity.ErrExpired},
				{"future timestamp", topic, func() integrity.Sealed {
					ahead := integrity.NewSigner(f.a, integrity.SignerConfig{Clock: func() time.Time { return clk.Now().Add(time.Hour) }})
					return seal(t, ahead, topic, []byte("x"), c, nil)
				}, integrity.ErrFuture},
				{"unknown key", topic, func() integrity.Sealed {
					return seal(t, integrity.NewSigner(f.stranger, integrity.SignerConfig{Clock: clk.Now}), topic, []byte("x"), c, nil)
				}, integrity.ErrUnknownKey},
				{"another device's key", topic, func() integrity.Sealed {
					return seal(t, integrity.NewSigner(f.b, integrity.SignerConfig{Clock: clk.Now}), topic, []byte("x"), c, nil)
				}, integrity.ErrSignerNotAllowed},
				{"unsigned", topic, func() integrity.Sealed { return integrity.Sealed{Payload: []byte("21.5")} }, integrity.ErrUnsigned},
				{"plaintext on an encrypted topic", "secret/x", func() integrity.Sealed {
					return seal(t, a, "secret/x", []byte("x"), c, nil)
				}, integrity.ErrNotEncrypted},
				{"garbage envelope", topic, func() integrity.Sealed {
					s := good()
					if c == integrity.Envelope {
						s.Payload = s.Payload[:len(s.Payload)-1]
					} else {
						s.Signature = s.Signature[:len(s.Signature)-2]
					}
					return s
				}, integrity.ErrMalformed},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					m := tc.msg()
					_, err := v.Open(ctx, tc.topic, m.Payload, m.Signature)
					require.ErrorIs(t, err, tc.want)
					for _, other := range []error{integrity.ErrBadSignature, integrity.ErrExpired, integrity.ErrFuture,
						integrity.ErrUnknownKey, integrity.ErrSignerNotAllowed, integrity.ErrUnsigned, integrity.ErrReplay,
						integrity.ErrNotEncrypted, integrity.ErrMalformed, integrity.ErrKeyNotBound} {
						if other != tc.want {
							require.NotErrorIs(t, err, other, "one failure, one kind")
						}
					}
				})
			}
			t.Run("replay", func(t *testing.T) {
				m := good()
				_, err := v.Open(ctx, topic, m.Payload, m.Signature)
				require.NoError(t, err)
				_, err = v.Open(ctx, topic, m.Payload, m.Signature)
				require.ErrorIs(t, err, integrity.ErrReplay)
			})
		})
	}
}

// TestReplayWindow: out-of-order messages inside the window are accepted
// once; below the window they are refused; a restarted sender (a new
// Signer, later epoch) is accepted and its earlier run is then refused.
func TestReplayWindow(t *testing.T) {
	f := keys(t)
	clk := newClock()
	v := verifier(t, integrity.VerifierConfig{Clock: clk.Now})
	s := integrity.NewSigner(f.a, integrity.SignerConfig{Clock: clk.Now})
	msgs := make([]integrity.Sealed, integrity.WindowSize+10)
	for i := range msgs {
		msgs[i] = seal(t, s, "t", []byte{byte(i)}, integrity.Envelope, nil)
	}
	open := func(m integrity.Sealed) error { _, err := v.Verify(ctx, "t", m.Payload, ""); return err }
	require.NoError(t, open(msgs[5]))
	require.NoError(t, open(msgs[3]), "older but inside the window")
	require.ErrorIs(t, open(msgs[3]), integrity.ErrReplay)
	require.NoError(t, open(msgs[len(msgs)-1]))
	require.ErrorIs(t, open(msgs[4]), integrity.ErrReplay, "now more than WindowSize below the highest")
	require.NoError(t, open(msgs[len(msgs)-integrity.WindowSize]), "the oldest number still inside the window")
	require.ErrorIs(t, open(msgs[len(msgs)-integrity.WindowSize-1]), integrity.ErrReplay)
	require.NoError(t, open(msgs[len(msgs)-2]))
	require.ErrorIs(t, open(msgs[len(msgs)-2]), integrity.ErrReplay)

	// The sender restarts: a new run is accepted from its first message.
	clk.Add(time.Millisecond)
	s2 := integrity.NewSigner(f.a, integrity.SignerConfig{Clock: clk.Now})
	require.Greater(t, s2.Epoch(), s.Epoch())
	first := seal(t, s2, "t", []byte("after restart"), integrity.Envelope, nil)
	require.NoError(t, open(first))
	// A message of the old run that was never seen is now refused.
	require.ErrorIs(t, open(msgs[len(msgs)-3]), integrity.ErrReplay)
	// The old signer cannot come back either.
	require.ErrorIs(t, open(seal(t, s, "t", []byte("old run"), integrity.Envelope, nil)), integrity.ErrReplay)
}

// TestReplayEviction: the number of senders tracked is bounded; a message
// of an evicted sender signed before its eviction is refused, a newer one
// is accepted.
func TestReplayEviction(t *testing.T) {
	const n = 3
	clk := newClock()
	var priv []*integrity.PrivateKey
	var pubs []*integrity.Key
	for i := range n + 2 {
		k, err := integrity.GenerateKey(integrity.EdDSA, fmt.Sprintf("k%d", i), fmt.Sprintf("s%d", i))
		require.NoError(t, err)
		priv = append(priv, k)
		pubs = append(pubs, k.Public())
	}
	ring, err := integrity.NewKeyring(pubs...)
	require.NoError(t, err)
	v := verifier(t, integrity.VerifierConfig{Keys: ring, MaxSenders: n, Clock: clk.Now})
	s0 := integrity.NewSigner(priv[0], integrity.SignerConfig{Clock: clk.Now})
	held := seal(t, s0, "t", []byte("captured"), integrity.Envelope, nil) // never delivered yet
	first := seal(t, s0, "t", []byte("first"), integrity.Envelope, nil)
	_, err = v.Verify(ctx, "t", first.Payload, "")
	require.NoError(t, err)
	for i := 1; i <= n; i++ {
		clk.Add(time.Millisecond)
		s := integrity.NewSigner(priv[i], integrity.SignerConfig{Clock: clk.Now})
		m := seal(t, s, "t", []byte("x"), integrity.Envelope, nil)
		_, err := v.Verify(ctx, "t", m.Payload, "")
		require.NoError(t, err)
		require.LessOrEqual(t, v.Senders(), n)
	}
	require.Equal(t, n, v.Senders())
	// s0 was evicted: its held message is older than the horizon.
	_, err = v.Verify(ctx, "t", held.Payload, "")
	require.ErrorIs(t, err, integrity.ErrReplay)
	clk.Add(time.Millisecond)
	fresh := seal(t, s0, "t", []byte("fresh"), integrity.Envelope, nil)
	_, err = v.Verify(ctx, "t", fresh.Payload, "")
	require.NoError(t, err)
	require.Equal(t, n, v.Senders())
}

// TestConcurrentReplay: a message verified by many goroutines at once is
// accepted exactly once.
func TestConcurrentReplay(t *testing.T) {
	f := keys(t)
	v := verifier(t, integrity.VerifierConfig{})
	s := integrity.NewSigner(f.a, integrity.SignerConfig{})
	m := seal(t, s, "t", []byte("once"), integrity.Envelope, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(ctx, "t", m.Payload, ""); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, integrity.ErrReplay) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, ok)
}

// TestDetachedStrict: a signature property that is not strict base64url,
// too long, or an envelope where a detached one is expected is malformed;
// an envelope's signature cannot be reused as a detached one.
func TestDetachedStrict(t *testing.T) {
	f := keys(t)
	v := verifier(t, integrity.VerifierConfig{})
	s := integrity.NewSigner(f.a, integrity.SignerConfig{})
	env := seal(t, s, "t", []byte("p"), integrity.Envelope, nil)
	for name, sig := range map[string]string{
		"padding":       base64.URLEncoding.EncodeToString(env.Payload),
		"std alphabet":  base64.StdEncoding.EncodeToString(env.Payload),
		"envelope":      base64.RawURLEncoding.EncodeToString(env.Payload),
		"too long":      string(bytes.Repeat([]byte("A"), 2000)),
		"not cbor":      "AAAA",
		"empty payload": base64.RawURLEncoding.EncodeToString([]byte{0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40}),
	} {
		_, err := v.Verify(ctx, "t", []byte("p"), sig)
		require.ErrorIs(t, err, integrity.ErrMalformed, name)
	}
}

// TestUnprotectedTopic: a Verify on a topic the policy does not protect
// still verifies a signed message, and reports an unsigned one as such.
func TestUnprotectedTopic(t *testing.T) {
	f := keys(t)
	v := verifier(t, integrity.VerifierConfig{Policy: policy(t, integrity.Rule{Filter: "p/#"})})
	require.False(t, v.Policy().Protects("open/x"))
	_, err := v.Verify(ctx, "open/x", []byte("hello"), "")
	require.ErrorIs(t, err, integrity.ErrUnsigned)
	m := seal(t, integrity.NewSigner(f.a, integrity.SignerConfig{}), "open/x", []byte("hello"), integrity.Envelope, nil)
	vd, err := v.Verify(ctx, "open/x", m.Payload, "")
	require.NoError(t, err)
	require.Equal(t, "hello", string(vd.Payload))
}

// TestDecryptFailures: a wrong or unknown content key, and an altered
// ciphertext re-signed by a legitimate signer, fail with ErrDecrypt.
func TestDecryptFailures(t *testing.T) {
	f := keys(t)
	other, err := integrity.GenerateSecretKey("group-2")
	require.NoError(t, err)
	v := verifier(t, integrity.VerifierConfig{})
	s := integrity.NewSigner(f.a, integrity.SignerConfig{})
	m := seal(t, s, "t", []byte("secret"), integrity.Envelope, other)
	vd, err := v.Verify(ctx, "t", m.Payload, "")
	require.NoError(t, err, "the signature verifies without the content key")
	require.True(t, vd.Encrypted)
	m = seal(t, s, "t", []byte("secret"), integrity.Envelope, other)
	_, err = v.Open(ctx, "t", m.Payload, "")
	require.ErrorIs(t, err, integrity.ErrDecrypt)
	require.ErrorIs(t, err, integrity.ErrUnknownKey)

}
