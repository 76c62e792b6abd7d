package integrity_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/integrity"
)

// jwksServer serves a JWK Set that a test can change, and counts fetches.
type jwksServer struct {
	mu      sync.Mutex
	body    []byte
	fetches atomic.Int64
}

func (s *jwksServer) set(t *testing.T, keys ...*integrity.Key) {
	t.Helper()
	b, err := integrity.MarshalKeyring(keys...)
	require.NoError(t, err)
	s.setRaw(b)
}

func (s *jwksServer) setRaw(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	b := s.body
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(b)
}

// errs collects OnError reports.
type errs struct {
	mu  sync.Mutex
	all []error
}

func (e *errs) add(err error) { e.mu.Lock(); e.all = append(e.all, err); e.mu.Unlock() }
func (e *errs) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, err := range e.all {
		b.WriteString(err.Error())
		b.WriteByte('\n')
	}
	return b.String()
}
func (e *errs) len() int { e.mu.Lock(); defer e.mu.Unlock(); return len(e.all) }

// TestJWKSRotation: keys come from an https JWK Set; a key added to the set
// is found at its first use (one fetch per MinRefresh at most), and a flood
// of unknown key IDs costs no more fetches.
func TestJWKSRotation(t *testing.T) {
	f := keys(t)
	srv := &jwksServer{}
	srv.set(t, f.a.Public())
	ts := httptest.NewTLSServer(srv)
	defer ts.Close()
	var reported errs
	j, err := integrity.NewJWKS(context.Background(), integrity.JWKSConfig{
		URL: ts.URL, HTTPClient: ts.Client(), MinRefresh: time.Hour, OnError: reported.add,
	})
	require.NoError(t, err)
	defer j.Close()
	require.Equal(t, int64(1), srv.fetches.Load())
	k, err := j.Key(ctx, "dev-a-1")
	require.NoError(t, err)
	require.Equal(t, "dev-a", k.Subject())

	srv.set(t, f.a.Public(), f.a256.Public())
	for range 100 {
		_, err = j.Key(ctx, "made-up")
		require.ErrorIs(t, err, integrity.ErrUnknownKey)
	}
	_, err = j.Key(ctx, "dev-a-2")
	require.ErrorIs(t, err, integrity.ErrUnknownKey, "MinRefresh has not passed")
	require.Equal(t, int64(1), srv.fetches.Load(), "unknown key IDs within MinRefresh fetch nothing")
	require.Zero(t, reported.len(), reported.String())

	// With a short MinRefresh the new key is fetched at its first use.
	j2, err := integrity.NewJWKS(context.Background(), integrity.JWKSConfig{
		URL: ts.URL, HTTPClient: ts.Client(), MinRefresh: 10 * time.Millisecond,
	})
	require.NoError(t, err)
	defer j2.Close()
	srv.set(t, f.a.Public(), f.a256.Public(), f.b.Public())
	require.Eventually(t, func() bool { _, err := j2.Key(ctx, "dev-b-1"); return err == nil }, 10*time.Second, 20*time.Millisecond)
	// The key removed from the set stops verifying after the next fetch.
	srv.set(t, f.b.Public())
	require.Eventually(t, func() bool {
		_, _ = j2.Key(ctx, "unknown-trigger")
		_, err := j2.Key(ctx, "dev-a-1")
		return errors.Is(err, integrity.ErrUnknownKey)
	}, 10*time.Second, 20*time.Millisecond)
}

// TestJWKSConfig: plain http is refused except on loopback or by the
// loudly named option; a set too large, a bad key and a duplicate key ID
// are reported and never take the good keys down.
func TestJWKSConfig(t *testing.T) {
	f := keys(t)
	for _, u := range []string{"http://keys.example.com/jwks", "ftp://127.0.0.1/x", "/relative", "https://"} {
		_, err := integrity.NewJWKS(context.Background(), integrity.JWKSConfig{URL: u})
		require.ErrorIs(t, err, integrity.ErrConfig, u)
	}
	var reported errs
	fail := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("no network in this test") })}
	j, err := integrity.NewJWKS(context.Background(), integrity.JWKSConfig{URL: "http://keys.example.com/jwks", InsecureAllowHTTP: true, HTTPClient: fail, OnError: reported.add})
	require.NoError(t, err)
	require.NoError(t, j.Close())
	require.Contains(t, reported.String(), "no network")
	_, err = j.Key(ctx, "dev-a-1")
	require.ErrorIs(t, err, integrity.ErrUnknownKey, "no key until a fetch succeeds")

	srv := &jwksServer{}
	good, err := integrity.MarshalKeyring(f.a.Public(), f.b.Public())
	require.NoError(t, err)
	srv.setRaw(good)
	ts := httptest.NewServer(srv) // http on loopback: allowed
	defer ts.Close()
	var rep errs
	j, err = integrity.NewJWKS(context.Background(), integrity.JWKSConfig{URL: ts.URL, MaxBytes: 4096, MinRefresh: time.Millisecond, OnError: rep.add})
	require.NoError(t, err)
	defer j.Close()
	require.Len(t, j.Keys(), 2)

	srv.setRaw([]byte(`{"keys":[` + strings.Repeat(" ", 5000) + `]}`))
	time.Sleep(5 * time.Millisecond) // let MinRefresh pass
	_, err = j.Key(ctx, "trigger")
	require.ErrorIs(t, err, integrity.ErrUnknownKey)
	require.Contains(t, rep.String(), "larger than 4096")
	require.Len(t, j.Keys(), 2, "the keys fetched before stay in use")

	a, _ := f.a.Public().MarshalJSON()
	bk, _ := f.b.Public().MarshalJSON()
	srv.setRaw([]byte(`{"keys":[` + string(a) + `,` + string(a) + `,{"kty":"OKP","kid":"bad"},` + string(bk) + `]}`))
	require.Eventually(t, func() bool {
		_, _ = j.Key(ctx, "trigger")
		return len(j.Keys()) == 1
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, "dev-b-1", j.Keys()[0].ID(), "both copies of a duplicated key ID are dropped")
	require.Contains(t, rep.String(), `"dev-a-1" used 2 times`)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
