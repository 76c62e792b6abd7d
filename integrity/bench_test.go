package integrity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"syscall"
	"testing"
	"time"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/integrity"
)

// run runs f b.N times with the timer reset, and reports the process CPU
// time per operation next to the wall time: on a machine shared with other
// jobs, cpu-ns/op is the steadier figure.
func run(b *testing.B, f func(i int)) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := range b.N {
		f(i)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU returns the user and system CPU time of the process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// payload256 is the payload of the sign and verify benchmarks.
var payload256 = make([]byte, 256)

// BenchmarkSign compares a COSE_Sign1 (Signer.Seal: protected header,
// Sig_structure, signature, encoding) with the raw signature of the same
// 256-byte payload, in the same run.
func BenchmarkSign(b *testing.B) {
	f := keys(b)
	edPriv := ed25519.NewKeyFromSeed(make([]byte, 32))
	ecPriv, err := ecdsa.GenerateKey(f.a256.Public().Public().(*ecdsa.PublicKey).Curve, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw-ed25519", func(b *testing.B) {
		run(b, func(int) {
			_ = ed25519.Sign(edPriv, payload256)
		})
	})
	for _, c := range []integrity.Carrier{integrity.Envelope, integrity.Detached} {
		s := integrity.NewSigner(f.a, integrity.SignerConfig{})
		b.Run("cose-ed25519-"+c.String(), func(b *testing.B) {
			run(b, func(int) {
				if _, err := s.Seal("plant/1/temp", payload256, c, nil); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("raw-es256", func(b *testing.B) {
		run(b, func(int) {
			d := sha256.Sum256(payload256)
			if _, err := ecdsa.SignASN1(rand.Reader, ecPriv, d[:]); err != nil {
				b.Fatal(err)
			}
		})
	})
	s := integrity.NewSigner(f.a256, integrity.SignerConfig{})
	b.Run("cose-es256-envelope", func(b *testing.B) {
		run(b, func(int) {
			if _, err := s.Seal("plant/1/temp", payload256, integrity.Envelope, nil); err != nil {
				b.Fatal(err)
			}
		})
	})
	enc := integrity.NewSigner(f.a, integrity.SignerConfig{})
	b.Run("cose-ed25519-envelope-encrypted", func(b *testing.B) {
		run(b, func(int) {
			if _, err := enc.Seal("plant/1/temp", payload256, integrity.Envelope, f.content); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// presign returns n envelopes of one sender.
func presign(b *testing.B, k *integrity.PrivateKey, n int, c integrity.Carrier) []integrity.Sealed {
	b.Helper()
	s := integrity.NewSigner(k, integrity.SignerConfig{})
	out := make([]integrity.Sealed, n)
	for i := range out {
		m, err := s.Seal("plant/1/temp", payload256, c, nil)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = m
	}
	return out
}

// BenchmarkVerify compares the full verification of a COSE_Sign1
// (parsing, header checks, key lookup, Sig_structure, signature, replay
// window) with the raw signature verification of the same payload. Each
// iteration verifies a different message (a message verifies once).
func BenchmarkVerify(b *testing.B) {
	f := keys(b)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edSig := ed25519.Sign(edPriv, payload256)
	ecPriv, _ := ecdsa.GenerateKey(f.a256.Public().Public().(*ecdsa.PublicKey).Curve, rand.Reader)
	d := sha256.Sum256(payload256)
	ecSig, _ := ecdsa.SignASN1(rand.Reader, ecPriv, d[:])
	b.Run("raw-ed25519", func(b *testing.B) {
		run(b, func(int) {
			if !ed25519.Verify(edPub, payload256, edSig) {
				b.Fatal("bad")
			}
		})
	})
	for _, c := range []integrity.Carrier{integrity.Envelope, integrity.Detached} {
		b.Run("cose-ed25519-"+c.String(), func(b *testing.B) {
			msgs := presign(b, f.a, b.N, c)
			v := verifier(b, integrity.VerifierConfig{})
			run(b, func(i int) {
				if _, err := v.Verify(context.Background(), "plant/1/temp", msgs[i].Payload, msgs[i].Signature); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("raw-es256", func(b *testing.B) {
		run(b, func(int) {
			d := sha256.Sum256(payload256)
			if !ecdsa.VerifyASN1(&ecPriv.PublicKey, d[:], ecSig) {
				b.Fatal("bad")
			}
		})
	})
	b.Run("cose-es256-envelope", func(b *testing.B) {
		msgs := presign(b, f.a256, b.N, integrity.Envelope)
		v := verifier(b, integrity.VerifierConfig{})
		run(b, func(i int) {
			if _, err := v.Verify(context.Background(), "plant/1/temp", msgs[i].Payload, ""); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkBrokerPublish compares the Guard's PUBLISH decision on a
// protected topic (Protect around an allow-all authorizer: one envelope
// verification) with the same Guard without Protect, in the same run.
func BenchmarkBrokerPublish(b *testing.B) {
	f := keys(b)
	allow := mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil })
	guard := func(a mqttsec.Authorizer) (*mqttsec.Guard, *mqttsec.Session) {
		g := mqttsec.New(mqttsec.Config{
			Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, _ mqttsec.Credentials) (*mqttsec.Identity, error) {
				return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
			}),
			Authorizer: a,
			Events:     mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
		})
		s, err := g.Connect(context.Background(), mqttsec.Client{ID: "dev-a-c", Username: "dev-a", RemoteAddr: "127.0.0.1:1", Protocol: 5}, mqttsec.Credentials{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		return g, s
	}
	b.Run("without", func(b *testing.B) {
		g, s := guard(allow)
		msgs := presign(b, f.a, 1024, integrity.Envelope)
		m := &mqttsec.Message{Topic: "plant/1/temp", QoS: 1}
		run(b, func(i int) {
			m.Payload = msgs[i%len(msgs)].Payload
			if err := g.Publish(context.Background(), s, m); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("protected", func(b *testing.B) {
		v := verifier(b, integrity.VerifierConfig{Policy: policy(b, integrity.Rule{Filter: "plant/#"})})
		g, s := guard(integrity.Protect(allow, v))
		msgs := presign(b, f.a, b.N, integrity.Envelope)
		m := &mqttsec.Message{Topic: "plant/1/temp", QoS: 1}
		run(b, func(i int) {
			m.Payload = msgs[i].Payload
			if err := g.Publish(context.Background(), s, m); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("unprotected-topic", func(b *testing.B) {
		v := verifier(b, integrity.VerifierConfig{Policy: policy(b, integrity.Rule{Filter: "plant/#"})})
		g, s := guard(integrity.Protect(allow, v))
		m := &mqttsec.Message{Topic: "office/1/temp", Payload: payload256, QoS: 1}
		run(b, func(int) {
			if err := g.Publish(context.Background(), s, m); err != nil {
				b.Fatal(err)
			}
		})
	})
}
