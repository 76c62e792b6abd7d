package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/mqttsec/mqttsec"
)

// Defaults of [PasswordsConfig].
const (
	DefaultCacheSize = 10_000
	DefaultCacheTTL  = 5 * time.Minute
)

// PasswordsConfig configures a [Passwords] authenticator. The zero value is
// the recommended configuration. [NewPasswords] copies it.
type PasswordsConfig struct {
	// MaxConcurrent bounds how many hash verifications run at once. Zero
	// means GOMAXPROCS, which lets a storm of logins take every CPU: to
	// keep the broker's connected clients fast during one, put a
	// ratelimit.Gate in front (a CPU budget for verifications, fair between
	// addresses). A verification waiting for a slot gives up when the
	// CONNECT's context is cancelled.
	MaxConcurrent int `yaml:"max_concurrent"`
	// CacheSize is the number of successful verifications remembered, so
	// that a reconnecting client does not pay for the hash again. Zero means
	// DefaultCacheSize; a negative value disables the cache. Entries are
	// keyed by HMAC-SHA256(per-process random key, username || 0 ||
	// password): the cache holds no password and no reusable hash of one.
	CacheSize int `yaml:"cache_size"`
	// CacheTTL is how long a cached success is trusted. Zero means
	// DefaultCacheTTL. Entries of a user whose hash changes or who is removed
	// are evicted at once by [Passwords.Replace].
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// AbstainUnknownUsers makes an unknown user name abstain (so a later
	// authenticator in a [Chain] may decide) instead of being denied. The
	// dummy verification still runs, so the answer takes the same time.
	AbstainUnknownUsers bool `yaml:"abstain_unknown_users"`
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time `yaml:"-"`
}

// Passwords authenticates the user name and password of a CONNECT against
// a [PasswordFile]. It abstains when the CONNECT has no user name. An
// unknown user costs the same as a known one: the password is verified
// against a dummy hash with the parameters most common in the file. Hashes
// are compared in constant time.
//
// A Passwords is safe for concurrent use; [Passwords.Replace] swaps the
// users atomically, so a reload never fails a login of an unchanged user.
// It is an [mqttsec.Revalidator]: after a reload, the Guard ends the
// sessions of removed users and of users whose password changed.
type Passwords struct {
	table   atomic.Pointer[userTable]
	sem     chan struct{}
	cache   *boundedCache[cacheEntry]
	ttl     time.Duration
	now     func() time.Time
	abstain bool
	macs    sync.Pool
	mu      sync.Mutex // serializes Replace
	// issued holds a weak pointer to every Identity this Passwords made,
	// so that Revalidate can tell its own identities from another's; an
	// entry goes when its Identity is collected.
	issued sync.Map // weak.Pointer[mqttsec.Identity] -> struct{}
}

type userTable struct {
	users map[string]*user
	dummy *Hash
}

type user struct {
	hash *Hash
	id   *mqttsec.Identity
}

type cacheEntry struct {
	u       *user
	expires time.Time
}

type macState struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

// NewPasswords returns a Passwords authenticator for the users of f (which
// it copies; f may be changed afterwards).
func NewPasswords(f *PasswordFile, cfg PasswordsConfig) *Passwords {
	n := cfg.MaxConcurrent
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	ttl := cfg.CacheTTL
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	p := &Passwords{sem: make(chan struct{}, n), cache: newBoundedCache[cacheEntry](size),
		ttl: ttl, now: cfg.Clock, abstain: cfg.AbstainUnknownUsers}
	if p.now == nil {
		p.now = time.Now
	}
	key := make([]byte, 32)
	rand.Read(key)
	p.macs.New = func() any { return &macState{h: hmac.New(sha256.New, key)} }
	p.Replace(f)
	return p
}

// Replace swaps in the users of f (copied). Users whose hash is unchanged
// keep their cached successes; the entries of changed or removed users are
// evicted before Replace returns.
func (p *Passwords) Replace(f *PasswordFile) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.table.Load()
	t := &userTable{users: make(map[string]*user)}
	counts := make(map[string]int)
	var common *Hash
	if f != nil {
		for _, l := range f.lines {
			if l.user == "" {
				continue
			}
			if old != nil {
				if u, ok := old.users[l.user]; ok && u.hash.String() == l.hash.String() {
					t.users[l.user] = u
					continue
				}
			}
			id := &mqttsec.Identity{Subject: l.user, Method: mqttsec.MethodPassword}
			p.remember(id)
			t.users[l.user] = &user{hash: l.hash, id: id}
		}
		for _, u := range t.users {
			k := u.hash.params()
			counts[k]++
			if common == nil || counts[k] > counts[common.params()] {
				common = u.hash
			}
		}
	}
	t.dummy = dummyLike(common)
	p.table.Store(t)
	if old != nil {
		p.cache.removeIf(func(e cacheEntry) bool {
			u, ok := t.users[e.u.id.Subject]
			return !ok || u != e.u
		})
	}
}

// remember records id as one of p's until it is collected.
func (p *Passwords) remember(id *mqttsec.Identity) {
	wp := weak.Make(id)
	p.issued.Store(wp, struct{}{})
	runtime.AddCleanup(id, func(wp weak.Pointer[mqttsec.Identity]) { p.issued.Delete(wp) }, wp)
}

// Revalidate implements [mqttsec.Revalidator]. It returns nil while the
// user of an identity this Passwords issued is in its users with the same
// hash line, and denies (wrapping [mqttsec.ErrBadCredentials]) once the
// user was removed or given another hash (a new password) by
// [Passwords.Replace] or a [Watcher], as Mosquitto does on reload. It
// abstains for an identity it did not issue: another method's, or another
// Passwords' (a password is not kept, so it cannot be verified again): so
// replace the users of the Passwords in the Guard rather than building a
// new one.
func (p *Passwords) Revalidate(_ context.Context, cl *mqttsec.Client) error {
	id := cl.Identity
	if id == nil || id.Method != mqttsec.MethodPassword {
		return mqttsec.ErrAbstain
	}
	if _, ok := p.issued.Load(weak.Make(id)); !ok {
		return mqttsec.ErrAbstain
	}
	if u, ok := p.table.Load().users[id.Subject]; ok && u.id == id {
		return nil
	}
	return errUserWithdrawn
}

var errUserWithdrawn = deny("user removed from the password file, or given a new password")

// dummyLike returns a hash with the parameters of h (bcrypt at the default
// cost when h is nil) that no password matches.
func dummyLike(h *Hash) *Hash {
	var salt [16]byte
	var sum [23]byte
	rand.Read(salt[:])
	rand.Read(sum[:])
	if h == nil || h.scheme == Bcrypt {
		cost := DefaultBcryptCost
		if h != nil {
			cost = h.iter
		}
		d, err := parseBcrypt(fmt.Sprintf("$2b$%02d$%s%s", cost,
			bcryptEncoding.EncodeToString(salt[:]), bcryptEncoding.EncodeToString(sum[:])))
		if err != nil {
			panic("auth: dummy bcrypt hash: " + err.Error())
		}
		return d
	}
	d := *h
	d.encoded = "dummy"
	d.salt = make([]byte, len(h.salt))
	d.sum = make([]byte, len(h.sum))
	rand.Read(d.salt)
	rand.Read(d.sum)
	return &d
}

// Authenticate verifies cl.Username and cred.Password. It abstains without
// a user name, denies (wrapping [mqttsec.ErrBadCredentials]) a wrong
// password or an unknown user, and returns ctx's error (wrapped in
// [mqttsec.ErrServerBusy]) when ctx ends while waiting for a verification
// slot. A cache hit allocates nothing.
// cacheKey is the key of the cache of recent successes: a keyed MAC of the
// user name and the password.
func (p *Passwords) cacheKey(username string, password []byte) [32]byte {
	m := p.macs.Get().(*macState)
	defer p.macs.Put(m)
	m.h.Reset()
	m.buf = append(append(m.buf[:0], username...), 0)
	m.h.Write(m.buf)
	m.h.Write(password)
	m.h.Sum(m.sum[:0])
	return m.sum
}

// AuthenticateCached implements [mqttsec.CachedAuthenticator]: it returns
// the identity at once when the same user name and password were verified a
// moment ago (and the user's entry has not changed since), and false
// otherwise, without verifying anything. A bound on verifications in front
// of the Passwords (ratelimit.Gate) asks it first, so that a returning
// client is not queued behind a storm of first logins.
func (p *Passwords) AuthenticateCached(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, bool) {
	if p.cache == nil || cl.Username == "" || len(cred.Password) == 0 {
		return nil, false
	}
	u, known := p.table.Load().users[cl.Username]
	if !known {
		return nil, false
	}
	key := p.cacheKey(cl.Username, cred.Password)
	if e, ok := p.cache.get(&key); ok && e.u == u && p.now().Before(e.expires) {
		return u.id, true
	}
	return nil, false
}

func (p *Passwords) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	if cl.Username == "" {
		return nil, mqttsec.ErrAbstain
	}
	t := p.table.Load()
	u, known := t.users[cl.Username]
	if len(cred.Password) == 0 {
		if !known && p.abstain {
			return nil, mqttsec.ErrAbstain
		}
		return nil, errWrongPassword
	}
	var key [32]byte
	if p.cache != nil {
		key = p.cacheKey(cl.Username, cred.Password)
		if known {
			if e, ok := p.cache.get(&key); ok && e.u == u && p.now().Before(e.expires) {
				return u.id, nil
			}
		}
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for password verification: %w", mqttsec.ErrServerBusy, ctx.Err())
	}
	var ok bool
	if known {
		ok = u.hash.Verify(cred.Password)
	} else {
		t.dummy.Verify(cred.Password)
	}
	<-p.sem
	switch {
	case !known && p.abstain:
		return nil, mqttsec.ErrAbstain
	case !ok:
		return nil, errWrongPassword
	}
	p.cache.put(&key, cacheEntry{u: u, expires: p.now().Add(p.ttl)})
	return u.id, nil
}

// errWrongPassword is the same for an unknown user and a wrong password, so
// that neither the client nor a log tells them apart.
var errWrongPassword = deny("unknown user or wrong password")

// Users returns the number of users.
func (p *Passwords) Users() int { return len(p.table.Load().users) }

// cached returns the number of cached successes (for tests).
func (p *Passwords) cached() int { return p.cache.len() }
