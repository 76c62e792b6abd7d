package integrity_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/integrity"
)

// fixture holds two devices' signing keys, a key nobody trusts, a content
// key, and a keyring with the public keys of a and b and the content key.
type fixture struct {
	a, b, stranger *integrity.PrivateKey
	a256           *integrity.PrivateKey // a's second (ES256) key
	content        *integrity.Key
	ring           *integrity.Keyring
}

var (
	fixOnce sync.Once
	fix     fixture
)

// keys returns the shared fixture (key generation is not what tests test).
func keys(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		var err error
		must := func(k *integrity.PrivateKey, e error) *integrity.PrivateKey {
			if e != nil {
				err = e
			}
			return k
		}
		fix.a = must(integrity.GenerateKey(integrity.EdDSA, "dev-a-1", "dev-a"))
		fix.b = must(integrity.GenerateKey(integrity.EdDSA, "dev-b-1", "dev-b"))
		fix.stranger = must(integrity.GenerateKey(integrity.EdDSA, "stranger-1", "dev-a"))
		fix.a256 = must(integrity.GenerateKey(integrity.ES256, "dev-a-2", "dev-a"))
		if err != nil {
			panic(err)
		}
		fix.content, err = integrity.GenerateSecretKey("group-1")
		if err != nil {
			panic(err)
		}
		fix.ring, err = integrity.NewKeyring(fix.a.Public(), fix.b.Public(), fix.a256.Public(), fix.content)
		if err != nil {
			panic(err)
		}
	})
	return &fix
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func verifier(t testing.TB, cfg integrity.VerifierConfig) *integrity.Verifier {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = keys(t).ring
	}
	v, err := integrity.NewVerifier(cfg)
	require.NoError(t, err)
	return v
}

func policy(t testing.TB, rules ...integrity.Rule) *integrity.Policy {
	t.Helper()
	p, err := integrity.NewPolicy(rules...)
	require.NoError(t, err)
	return p
}

func seal(t testing.TB, s *integrity.Signer, topic string, payload []byte, c integrity.Carrier, enc *integrity.Key) integrity.Sealed {
	t.Helper()
	out, err := s.Seal(topic, payload, c, enc)
	require.NoError(t, err)
	return out
}
