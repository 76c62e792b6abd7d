package auth_test

import (
	"context"
	"crypto"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
)

// benchCost is the bcrypt cost of the 1,000-user storm benchmark: low, so
// that making and warming 1,000 distinct hashes takes seconds. A cache hit
// does not depend on the cost; a miss scales with 2^cost (see
// BenchmarkBcryptVerify for the cost of one verification at 10 and 11).
const benchCost = 6

var (
	stormOnce sync.Once
	stormFile *auth.PasswordFile
)

const stormUsers = 1000

func stormPasswordFile(b *testing.B) *auth.PasswordFile {
	stormOnce.Do(func() {
		hashes := make([]*auth.Hash, stormUsers)
		var wg sync.WaitGroup
		sem := make(chan struct{}, runtime.GOMAXPROCS(0))
		for i := range hashes {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				h, err := auth.HashPassword([]byte("password-of-device-"+strconv.Itoa(i)), auth.HashOptions{BcryptCost: benchCost})
				if err != nil {
					panic(err)
				}
				hashes[i] = h
			}()
		}
		wg.Wait()
		stormFile = auth.NewPasswordFile()
		for i, h := range hashes {
			if err := stormFile.Set("device-"+strconv.Itoa(i), h); err != nil {
				panic(err)
			}
		}
	})
	return stormFile
}

type stormClient struct {
	cl   mqttsec.Client
	cred mqttsec.Credentials
}

func stormClients() []stormClient {
	cs := make([]stormClient, stormUsers)
	for i := range cs {
		cs[i] = stormClient{
			cl:   mqttsec.Client{ID: "c" + strconv.Itoa(i), Username: "device-" + strconv.Itoa(i)},
			cred: mqttsec.Credentials{Password: []byte("password-of-device-" + strconv.Itoa(i))},
		}
	}
	return cs
}

// BenchmarkReconnectStorm measures how many reconnects per second a
// Passwords authenticator accepts when 1,000 bcrypt users (cost 6) reconnect
// over and over, without and with the success cache (warmed by one connect
// of each device, as after the first wave of a storm).
func BenchmarkReconnectStorm(b *testing.B) {
	f := stormPasswordFile(b)
	clients := stormClients()
	for _, tc := range []struct {
		name string
		cfg  auth.PasswordsConfig
	}{
		{fmt.Sprintf("users=1000/bcrypt-cost=%d/cache=off", benchCost), auth.PasswordsConfig{CacheSize: -1}},
		{fmt.Sprintf("users=1000/bcrypt-cost=%d/cache=on", benchCost), auth.PasswordsConfig{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := auth.NewPasswords(f, tc.cfg)
			ctx := context.Background()
			if tc.cfg.CacheSize >= 0 {
				for i := range clients {
					if _, err := p.Authenticate(ctx, &clients[i].cl, clients[i].cred); err != nil {
						b.Fatal(err)
					}
				}
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := &clients[next.Add(1)%stormUsers]
					if _, err := p.Authenticate(ctx, &c.cl, c.cred); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reconnects/s")
		})
	}
}

// BenchmarkBcryptVerify is the cost of one uncached verification at the
// default costs, and of an unknown user (verified against the dummy hash):
// the two must be equal.
func BenchmarkBcryptVerify(b *testing.B) {
	for _, cost := range []int{10, auth.DefaultBcryptCost} {
		h, err := auth.HashPassword([]byte("device password"), auth.HashOptions{BcryptCost: cost})
		if err != nil {
			b.Fatal(err)
		}
		f := auth.NewPasswordFile()
		_ = f.Set("known", h)
		p := auth.NewPasswords(f, auth.PasswordsConfig{CacheSize: -1})
		for _, user := range []string{"known", "unknown"} {
			b.Run(fmt.Sprintf("cost=%d/user=%s", cost, user), func(b *testing.B) {
				cl := &mqttsec.Client{ID: "c", Username: user}
				cred := mqttsec.Credentials{Password: []byte("device password")}
				for b.Loop() {
					_, _ = p.Authenticate(context.Background(), cl, cred)
				}
			})
		}
	}
}

// BenchmarkHashVerify compares the schemes at their default parameters
// (Mosquitto's $7$ at mosquitto_passwd's 101 iterations and at ours).
func BenchmarkHashVerify(b *testing.B) {
	pw := []byte("device password")
	for _, tc := range []struct {
		name string
		opt  auth.HashOptions
	}{
		{"bcrypt-cost=11", auth.HashOptions{}},
		{"argon2id-19MiB-t2", auth.HashOptions{Scheme: auth.Argon2id}},
		{"pbkdf2-sha512-101", auth.HashOptions{Scheme: auth.MosquittoPBKDF2, PBKDF2Iterations: 101}},
		{"pbkdf2-sha512-210000", auth.HashOptions{Scheme: auth.MosquittoPBKDF2}},
	} {
		h, err := auth.HashPassword(pw, tc.opt)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !h.Verify(pw) {
					b.Fatal("no match")
				}
			}
		})
	}
}

// BenchmarkJWT compares a full ES256 verification with a cache hit.
func BenchmarkJWT(b *testing.B) {
	k := getKeys(b)
	for _, tc := range []struct {
		name  string
		cache int
	}{{"cache=off", -1}, {"cache=on", 0}} {
		b.Run("ES256/"+tc.name, func(b *testing.B) {
			j, err := auth.NewJWT(context.Background(), auth.JWTConfig{Algorithms: []string{"ES256"},
				PublicKeys: []crypto.PublicKey{k.ecPub}, Issuer: testIss, Audience: testAud, CacheSize: tc.cache})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			now := time.Now()
			tok := sign(b, jwt.SigningMethodES256, k.ec, claimsAt(now, "dev1"))
			cl := &mqttsec.Client{ID: "c", Username: "dev1"}
			cred := mqttsec.Credentials{Password: []byte(tok)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := j.Authenticate(context.Background(), cl, cred); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
