package integrity_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/veraison/go-cose"

	"github.com/mqttsec/mqttsec/integrity"
)

// fuzzKey is a fixed Ed25519 key and fuzzNow a fixed time, so that the
// signed seeds in testdata/fuzz stay valid.
var (
	fuzzNow  = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fuzzSeed = sha256.Sum256([]byte("mqttsec integrity fuzz key"))
	fuzzPriv = ed25519.NewKeyFromSeed(fuzzSeed[:])
)

func fuzzSetup(t testing.TB) (*integrity.Signer, *integrity.Verifier, *integrity.Key) {
	pk, err := integrity.NewPrivateKey("fuzz-1", "fuzzer", fuzzPriv)
	if err != nil {
		t.Fatal(err)
	}
	content, err := integrity.NewSecretKey("fuzz-group", fuzzSeed[:])
	if err != nil {
		t.Fatal(err)
	}
	ring, err := integrity.NewKeyring(pk.Public(), content)
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return fuzzNow }
	v, err := integrity.NewVerifier(integrity.VerifierConfig{Keys: ring, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return integrity.NewSigner(pk, integrity.SignerConfig{Clock: clock}), v, content
}

// goCOSEAgrees checks what the package's own parser accepted against
// go-cose: the same bytes must decode and verify there, with the same
// header fields and payload (detached: the payload given).
func goCOSEAgrees(t *testing.T, topic string, raw, detached []byte, vd *integrity.Verified) {
	t.Helper()
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(raw); err != nil {
		t.Fatalf("accepted, but go-cose cannot decode it: %v", err)
	}
	if detached != nil {
		if msg.Payload != nil {
			t.Fatal("accepted as detached, but go-cose sees a payload")
		}
		msg.Payload = detached
	}
	ver, err := cose.NewVerifier(cose.AlgorithmEdDSA, fuzzPriv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Verify([]byte("mqttsec-integrity-v1\x00"+topic), ver); err != nil {
		t.Fatalf("accepted, but go-cose does not verify it: %v", err)
	}
	h := msg.Headers.Protected
	if !bytes.Equal(h[cose.HeaderLabelKeyID].([]byte), []byte(vd.KeyID)) ||
		h[integrity.HeaderLabelEpoch] != int64(vd.Epoch) ||
		h[integrity.HeaderLabelSequence] != int64(vd.Sequence) ||
		h[integrity.HeaderLabelTime] != vd.Time.UnixMilli() ||
		len(msg.Headers.Unprotected) != 0 {
		t.Fatalf("header fields differ: go-cose %v, verified %+v", h, vd)
	}
	if _, enc := h[cose.HeaderLabelContentType]; enc != vd.Encrypted {
		t.Fatalf("encrypted: go-cose %v, verified %v", enc, vd.Encrypted)
	}
	if !vd.Encrypted && !bytes.Equal(msg.Payload, vd.Payload) {
		t.Fatal("payloads differ")
	}
}

var kinds = []error{
	integrity.ErrUnsigned, integrity.ErrMalformed, integrity.ErrUnknownKey, integrity.ErrAlgorithm,
	integrity.ErrBadSignature, integrity.ErrKeyNotBound, integrity.ErrSignerNotAllowed, integrity.ErrReplay,
	integrity.ErrExpired, integrity.ErrFuture, integrity.ErrNotEncrypted, integrity.ErrDecrypt,
}

// checkKind fails unless err wraps exactly one of the package's kinds.
func checkKind(t *testing.T, err error) {
	n := 0
	for _, k := range kinds {
		if errors.Is(err, k) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q wraps %d kinds", err, n)
	}
}

// FuzzVerifyEnvelope feeds the envelope parser and verifier. Nothing
// panics, every refusal has exactly one kind, and what is accepted is
// accepted once: a second verification is a replay.
func FuzzVerifyEnvelope(f *testing.F) {
	s, _, content := fuzzSetup(f)
	for _, seed := range []struct {
		topic   string
		payload string
		enc     bool
	}{{"a/b", "hello", false}, {"devices/x/temp", "", false}, {"a/b", "secret", true}} {
		var enc *integrity.Key
		if seed.enc {
			enc = content
		}
		m, err := s.Seal(seed.topic, []byte(seed.payload), integrity.Envelope, enc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed.topic, m.Payload)
		f.Add(seed.topic+"x", m.Payload)
		f.Add(seed.topic, m.Payload[:len(m.Payload)/2])
	}
	f.Add("a", []byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Add("a", []byte("plain text"))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		_, v, _ := fuzzSetup(t)
		vd, err := v.Open(ctx, topic, payload, "")
		if err != nil {
			checkKind(t, err)
			return
		}
		if vd.KeyID != "fuzz-1" || vd.Subject != "fuzzer" {
			t.Fatalf("accepted a message of key %q", vd.KeyID)
		}
		goCOSEAgrees(t, topic, payload, nil, vd)
		if _, err := v.Verify(ctx, topic, payload, ""); !errors.Is(err, integrity.ErrReplay) {
			t.Fatalf("second verification: %v", err)
		}
	})
}

// FuzzVerifyDetached feeds the signature property parser.
func FuzzVerifyDetached(f *testing.F) {
	s, _, _ := fuzzSetup(f)
	m, err := s.Seal("a/b", []byte("hello"), integrity.Detached, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("a/b", []byte("hello"), m.Signature)
	f.Add("a/b", []byte("hellO"), m.Signature)
	f.Add("a/b", []byte("hello"), m.Signature[:len(m.Signature)-3])
	f.Add("a/b", []byte("hello"), "!!")
	f.Fuzz(func(t *testing.T, topic string, payload []byte, sig string) {
		_, v, _ := fuzzSetup(t)
		if sig == "" {
			return
		}
		vd, err := v.Verify(ctx, topic, payload, sig)
		if err != nil {
			checkKind(t, err)
			return
		}
		raw, err := base64.RawURLEncoding.DecodeString(sig)
		if err != nil {
			t.Fatalf("accepted a signature that is not base64url: %v", err)
		}
		goCOSEAgrees(t, topic, raw, payload, vd)
	})
}

// FuzzParseKeyring: the keyring parser never panics, and an accepted set
// writes back (public keys) and reads back as the same keys.
func FuzzParseKeyring(f *testing.F) {
	s, _, content := fuzzSetup(f)
	b, err := integrity.MarshalKeyring(s.Key().Public())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	sj, _ := content.SecretJWK()
	f.Add([]byte(`{"keys":[` + string(sj) + `]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":"","kid":"k","sub":"s"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ring, err := integrity.ParseKeyring(data)
		if err != nil {
			if !errors.Is(err, integrity.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		var public []*integrity.Key
		for _, k := range ring.Keys() {
			if !k.Secret() {
				public = append(public, k)
			}
		}
		out, err := integrity.MarshalKeyring(public...)
		if err != nil {
			t.Fatal(err)
		}
		again, err := integrity.ParseKeyring(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		got := again.Keys()
		if len(got) != len(public) {
			t.Fatalf("%d keys, want %d", len(got), len(public))
		}
		for i := range got {
			if !got[i].Equal(public[i]) {
				t.Fatalf("key %q changed", got[i].ID())
			}
		}
	})
}

// FuzzParsePrivateKey: the private JWK parser never panics, an accepted
// key writes back and reads back as the same key, and its public key
// really is the public half (a signature verifies).
func FuzzParsePrivateKey(f *testing.F) {
	s, _, _ := fuzzSetup(f)
	b, err := s.Key().PrivateJWK()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	e, err := integrity.GenerateKey(integrity.ES256, "e", "s")
	if err != nil {
		f.Fatal(err)
	}
	eb, _ := e.PrivateJWK()
	f.Add(eb)
	f.Add([]byte(`{"kty":"OKP","crv":"Ed25519","kid":"k","sub":"s","x":"","d":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := integrity.ParsePrivateKey(data)
		if err != nil {
			if !errors.Is(err, integrity.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			return
		}
		out, err := k.PrivateJWK()
		if err != nil {
			t.Fatal(err)
		}
		again, err := integrity.ParsePrivateKey(out)
		if err != nil || !again.Public().Equal(k.Public()) {
			t.Fatalf("round trip: %v", err)
		}
		ring, err := integrity.NewKeyring(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		v, err := integrity.NewVerifier(integrity.VerifierConfig{Keys: ring})
		if err != nil {
			t.Fatal(err)
		}
		m, err := integrity.NewSigner(k, integrity.SignerConfig{}).Seal("t", []byte("x"), integrity.Envelope, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, "t", m.Payload, ""); err != nil {
			t.Fatalf("a key's own signature does not verify: %v", err)
		}
		var pub map[string]any
		pb, _ := json.Marshal(k.Public())
		if err := json.Unmarshal(pb, &pub); err != nil || pub["d"] != nil {
			t.Fatalf("public JWK %s", pb)
		}
	})
}
