package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
)

// fileWith returns a password file with the given users and passwords,
// hashed with bcrypt at the lowest cost.
func fileWith(t testing.TB, kv ...string) *auth.PasswordFile {
	t.Helper()
	f := auth.NewPasswordFile()
	for i := 0; i < len(kv); i += 2 {
		h, err := auth.HashPassword([]byte(kv[i+1]), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.NoError(t, f.Set(kv[i], h))
	}
	return f
}

func login(a mqttsec.Authenticator, user, pw string) (*mqttsec.Identity, error) {
	return a.Authenticate(context.Background(), &mqttsec.Client{ID: "c1", Username: user}, mqttsec.Credentials{Password: []byte(pw)})
}

func TestPasswords(t *testing.T) {
	p := auth.NewPasswords(fileWith(t, "alice", "wonderland", "bob", "builder"), auth.PasswordsConfig{})
	require.Equal(t, 2, p.Users())

	id, err := login(p, "alice", "wonderland")
	require.NoError(t, err)
	require.Equal(t, &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodPassword}, id)

	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "alice", "builder"},
		{"unknown user", "carol", "wonderland"},
		{"empty password", "alice", ""},
		{"other user's password", "bob", "wonderland"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := login(p, tc.user, tc.pw)
			require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
			require.Equal(t, mqttsec.CodeBadUsernameOrPassword, mqttsec.CodeOf(err))
			require.Equal(t, "mqttsec: bad user name or password: unknown user or wrong password", err.Error())
		})
	}
	_, err = login(p, "", "wonderland")
	require.ErrorIs(t, err, mqttsec.ErrAbstain, "no user name: not a password login")

	abst := auth.NewPasswords(fileWith(t, "alice", "wonderland"), auth.PasswordsConfig{AbstainUnknownUsers: true})
	_, err = login(abst, "carol", "x")
	require.ErrorIs(t, err, mqttsec.ErrAbstain)
	_, err = login(abst, "carol", "")
	require.ErrorIs(t, err, mqttsec.ErrAbstain, "an unknown user abstains without a password too")
	_, err = login(abst, "alice", "")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	_, err = login(abst, "alice", "x")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
}

func TestPasswordsMosquittoFile(t *testing.T) {
	f, err := auth.LoadPasswordFile("testdata/mixed.passwd")
	require.NoError(t, err)
	p := auth.NewPasswords(f, auth.PasswordsConfig{})
	_, err = login(p, "alice", "secret1")
	require.NoError(t, err)
	_, err = login(p, "bob", "secret1")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
	dummy, user := auth.DummyParams(p, "alice")
	require.Equal(t, user, dummy, "unknown users are verified against a hash of the same cost")
}

func TestPasswordsDummyMatchesCommonCost(t *testing.T) {
	f := fileWith(t, "a", "1", "b", "2")
	h, err := auth.HashPassword([]byte("3"), auth.HashOptions{Scheme: auth.MosquittoPBKDF2, PBKDF2Iterations: 5})
	require.NoError(t, err)
	require.NoError(t, f.Set("c", h))
	p := auth.NewPasswords(f, auth.PasswordsConfig{})
	dummy, user := auth.DummyParams(p, "a")
	require.Equal(t, user, dummy)
	_, err = login(p, "nobody", "1")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
}

func TestPasswordsCache(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	f := fileWith(t, "alice", "wonderland", "bob", "builder")
	p := auth.NewPasswords(f, auth.PasswordsConfig{CacheTTL: time.Minute, Clock: clock})
	_, err := login(p, "alice", "wonderland")
	require.NoError(t, err)
	_, err = login(p, "bob", "builder")
	require.NoError(t, err)
	require.Equal(t, 2, auth.CachedEntries(p))
	_, err = login(p, "alice", "wrong")
	require.Error(t, err)
	require.Equal(t, 2, auth.CachedEntries(p), "failures are not cached")

	// A cache hit needs no verification slot.
	release := auth.HoldSlots(p, runtimeSlots(p))
	_, err = login(p, "alice", "wonderland")
	require.NoError(t, err)
	release()

	// Changing bob's password evicts bob only; alice's entry survives.
	f2 := fileWith(t, "bob", "newpassword")
	h, _ := f.Lookup("alice")
	require.NoError(t, f2.Set("alice", h))
	p.Replace(f2)
	require.Equal(t, 1, auth.CachedEntries(p))
	_, err = login(p, "bob", "builder")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials, "old password must stop working at once")
	_, err = login(p, "bob", "newpassword")
	require.NoError(t, err)

	// Removing a user evicts it and denies it.
	p.Replace(fileWith(t, "bob", "newpassword"))
	_, err = login(p, "alice", "wonderland")
	require.ErrorIs(t, err, mqttsec.ErrBadCredentials)

	// Entries expire.
	advance(2 * time.Minute)
	release = auth.HoldSlots(p, runtimeSlots(p))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Authenticate(ctx, &mqttsec.Client{Username: "bob"}, mqttsec.Credentials{Password: []byte("newpassword")})
	require.ErrorIs(t, err, context.Canceled, "expired entry needs a verification")
	release()

	off := auth.NewPasswords(f, auth.PasswordsConfig{CacheSize: -1})
	_, err = login(off, "alice", "wonderland")
	require.NoError(t, err)
	require.Equal(t, 0, auth.CachedEntries(off))
}

func runtimeSlots(p *auth.Passwords) int { return auth.Slots(p) }

func TestPasswordsConcurrencyBound(t *testing.T) {
	p := auth.NewPasswords(fileWith(t, "alice", "wonderland"), auth.PasswordsConfig{MaxConcurrent: 1, CacheSize: -1})
	release := auth.HoldSlots(p, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Authenticate(ctx, &mqttsec.Client{Username: "alice"}, mqttsec.Credentials{Password: []byte("wonderland")})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, mqttsec.ErrServerBusy)
	release()
	_, err = login(p, "alice", "wonderland")
	require.NoError(t, err)
}

func TestPasswordsConcurrent(t *testing.T) {
	p := auth.NewPasswords(fileWith(t, "a", "pa", "b", "pb"), auth.PasswordsConfig{MaxConcurrent: 2})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user, pw := "a", "pa"
			if i%2 == 1 {
				user, pw = "b", "pb"
			}
			if i%8 == 0 {
				p.Replace(fileWith(t, "a", "pa", "b", "pb"))
			}
			if _, err := login(p, user, pw); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func writeAtomic(t *testing.T, path string, f *auth.PasswordFile) {
	t.Helper()
	require.NoError(t, f.WriteFile(path))
}

func TestWatcher(t *testing.T) {
	for _, mode := range []struct {
		name string
		opt  auth.WatchOptions
	}{
		{"fsnotify", auth.WatchOptions{PollInterval: time.Hour, Debounce: 5 * time.Millisecond}},
		{"polling", auth.WatchOptions{PollInterval: 10 * time.Millisecond, NoFSNotify: true}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "passwd")
			writeAtomic(t, path, fileWith(t, "alice", "one"))
			reloads := make(chan int, 16)
			errs := make(chan error, 16)
			opt := mode.opt
			p := auth.NewPasswords(nil, auth.PasswordsConfig{})
			opt.Events = mqttsec.EventSinkFunc(func(e mqttsec.Event) {
				// The Watcher's goroutine: no FailNow here.
				if e.Source != auth.PasswordsEventSource || e.File != path {
					t.Errorf("event source %q, file %q", e.Source, e.File)
				}
				switch e.Kind {
				case mqttsec.EventReload:
					reloads <- p.Users()
				case mqttsec.EventReloadFailed:
					errs <- e.Err
				default:
					t.Errorf("unexpected event %v", e.Kind)
				}
			})
			w, err := auth.WatchPasswordFile(path, p, opt)
			require.NoError(t, err)
			defer w.Close()
			require.Equal(t, 1, p.Users())
			_, err = login(p, "alice", "one")
			require.NoError(t, err)

			writeAtomic(t, path, fileWith(t, "alice", "one", "bob", "two"))
			waitReload(t, reloads, 2)
			_, err = login(p, "bob", "two")
			require.NoError(t, err)

			// A malformed file is reported and the old users stay.
			require.NoError(t, os.WriteFile(path+".new", []byte("alice:$7$broken\n"), 0o600))
			require.NoError(t, os.Rename(path+".new", path))
			err = waitFor(t, errs)
			var pe *auth.ParseError
			require.True(t, errors.As(err, &pe))
			require.Equal(t, 1, pe.Line)
			require.NotContains(t, err.Error(), "broken", "no hash in a reported error")
			_, err = login(p, "bob", "two")
			require.NoError(t, err)

			writeAtomic(t, path, fileWith(t, "carol", "three"))
			waitReload(t, reloads, 1)
			_, err = login(p, "bob", "two")
			require.ErrorIs(t, err, mqttsec.ErrBadCredentials)
			require.NoError(t, w.Close())
			require.NoError(t, w.Close())
		})
	}
}

func waitFor[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the watcher")
	}
	var zero T
	return zero
}

// waitReload waits for a reload that loaded n users (a file system may
// report one change as several events).
func waitReload(t *testing.T, c <-chan int, n int) {
	t.Helper()
	for waitFor(t, c) != n {
	}
}

func TestWatchPasswordFileMissing(t *testing.T) {
	p := auth.NewPasswords(nil, auth.PasswordsConfig{})
	_, err := auth.WatchPasswordFile(filepath.Join(t.TempDir(), "nope"), p, auth.WatchOptions{})
	require.Error(t, err)
}

func TestPasswordsCacheBounded(t *testing.T) {
	p := auth.NewPasswords(fileWith(t, "a", "pa", "b", "pb", "c", "pc"), auth.PasswordsConfig{CacheSize: 2})
	for _, u := range []string{"a", "b", "c", "a", "c"} {
		_, err := login(p, u, "p"+u)
		require.NoError(t, err)
		require.LessOrEqual(t, auth.CachedEntries(p), 2)
	}
	require.Equal(t, 2, auth.CachedEntries(p))
}

// A rewrite with the same content (a touch, an editor saving unchanged) is
// no reload: nothing is swapped and nothing is reported, so the Guard does
// not revalidate every session for nothing. Reload on demand reports like
// the watch does.
func TestWatcherReportsOnlyChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	writeAtomic(t, path, fileWith(t, "alice", "one"))
	var mu sync.Mutex
	var kinds []mqttsec.EventKind
	p := auth.NewPasswords(nil, auth.PasswordsConfig{})
	w, err := auth.WatchPasswordFile(path, p, auth.WatchOptions{PollInterval: time.Hour, NoFSNotify: true,
		Events: mqttsec.EventSinkFunc(func(e mqttsec.Event) {
			mu.Lock()
			kinds = append(kinds, e.Kind)
			mu.Unlock()
		})})
	require.NoError(t, err)
	defer w.Close()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
	require.NoError(t, w.Reload())
	require.NoError(t, os.WriteFile(path, []byte("alice:$7$broken\n"), 0o600))
	require.Error(t, w.Reload())
	require.Equal(t, 1, p.Users())
	require.NoError(t, os.WriteFile(path, data[:0], 0o600))
	require.NoError(t, w.Reload())
	require.Equal(t, 0, p.Users())
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []mqttsec.EventKind{mqttsec.EventReloadFailed, mqttsec.EventReload}, kinds)
}

// After a reload, a Passwords vouches for the sessions of unchanged users
// and denies those of removed users and of users with a new password; it
// abstains for identities it did not issue.
func TestPasswordsRevalidate(t *testing.T) {
	ctx := context.Background()
	f0 := fileWith(t, "alice", "one", "bob", "two", "carol", "three")
	p := auth.NewPasswords(f0, auth.PasswordsConfig{})
	session := func(a mqttsec.Authenticator, user, pw string) *mqttsec.Client {
		t.Helper()
		id, err := login(a, user, pw)
		require.NoError(t, err)
		return &mqttsec.Client{ID: user, Username: user, Identity: id}
	}
	alice, bob, carol := session(p, "alice", "one"), session(p, "bob", "two"), session(p, "carol", "three")
	for _, cl := range []*mqttsec.Client{alice, bob, carol} {
		require.NoError(t, p.Revalidate(ctx, cl))
	}

	// The file is reloaded: bob removed, carol given a new password.
	f := fileWith(t, "carol", "four")
	aliceHash, _ := f0.Lookup("alice")
	require.NoError(t, f.Set("alice", aliceHash))
	p.Replace(f)
	require.NoError(t, p.Revalidate(ctx, alice), "unchanged user")
	for _, cl := range []*mqttsec.Client{bob, carol} {
		err := p.Revalidate(ctx, cl)
		require.ErrorIs(t, err, mqttsec.ErrBadCredentials, cl.ID)
		require.NotContains(t, err.Error(), "three")
	}
	// carol logs in again with her new password: that session holds.
	require.NoError(t, p.Revalidate(ctx, session(p, "carol", "four")))

	// Not ours: another Passwords' identity for the same name, another
	// method, a copy of an identity.
	other := auth.NewPasswords(fileWith(t, "alice", "one"), auth.PasswordsConfig{})
	copied := *alice.Identity
	for _, cl := range []*mqttsec.Client{
		session(other, "alice", "one"),
		{ID: "x", Identity: &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodJWT}},
		{ID: "y", Identity: &copied},
		{ID: "z"},
	} {
		require.ErrorIs(t, p.Revalidate(ctx, cl), mqttsec.ErrAbstain, cl.ID)
	}
}

// Identities a Passwords issued are remembered only while something holds
// them: a file that flips users forever does not grow the memory.
func TestPasswordsForgetsCollectedIdentities(t *testing.T) {
	h1, err := auth.HashPassword([]byte("one"), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	h2, err := auth.HashPassword([]byte("two"), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	p := auth.NewPasswords(nil, auth.PasswordsConfig{CacheSize: -1})
	for i := range 200 {
		f := auth.NewPasswordFile()
		require.NoError(t, f.Set("alice", []*auth.Hash{h1, h2}[i%2]))
		p.Replace(f)
	}
	require.Eventually(t, func() bool {
		runtime.GC()
		return auth.Issued(p) <= 2
	}, 10*time.Second, 10*time.Millisecond)
}

// TestPasswordsAuthenticateCached: the cached answer is given at once for
// a user name and password verified a moment ago, and never otherwise; a
// chain gives its first authenticator's cached answer only.
func TestPasswordsAuthenticateCached(t *testing.T) {
	f := fileWith(t, "alice", "wonderland", "bob", "builder")
	p := auth.NewPasswords(f, auth.PasswordsConfig{})
	cached := func(a mqttsec.CachedAuthenticator, user, pw string) bool {
		_, ok := a.AuthenticateCached(context.Background(), &mqttsec.Client{ID: "c1", Username: user}, mqttsec.Credentials{Password: []byte(pw)})
		return ok
	}
	require.False(t, cached(p, "alice", "wonderland"), "nothing verified yet")
	_, err := login(p, "alice", "wonderland")
	require.NoError(t, err)
	require.True(t, cached(p, "alice", "wonderland"))
	require.False(t, cached(p, "alice", "wrong"))
	require.False(t, cached(p, "bob", "builder"))
	require.False(t, cached(p, "", "wonderland"))
	p.Replace(fileWith(t, "alice", "new one"))
	require.False(t, cached(p, "alice", "wonderland"), "a changed password is not served from the cache")

	_, err = login(p, "alice", "new one")
	require.NoError(t, err)
	first := auth.Chain(p, auth.Anonymous())
	require.True(t, cached(first.(mqttsec.CachedAuthenticator), "alice", "new one"))
	later := auth.Chain(mqttsec.AuthenticatorFunc(func(context.Context, *mqttsec.Client, mqttsec.Credentials) (*mqttsec.Identity, error) {
		return nil, mqttsec.ErrBadCredentials // would refuse: its decision must not be skipped
	}), p)
	require.False(t, cached(later.(mqttsec.CachedAuthenticator), "alice", "new one"))
}
