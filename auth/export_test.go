package auth

// Test hooks.

// CachedEntries returns the number of cached successes.
func CachedEntries(p *Passwords) int { return p.cached() }

// HoldSlots takes n verification slots and returns a function releasing them.
func HoldSlots(p *Passwords, n int) func() {
	for range n {
		p.sem <- struct{}{}
	}
	return func() {
		for range n {
			<-p.sem
		}
	}
}

// DummyParams returns the cost parameters of the dummy hash and of a user's hash.
func DummyParams(p *Passwords, user string) (dummy, users string) {
	t := p.table.Load()
	if u, ok := t.users[user]; ok {
		users = u.hash.params()
	}
	return t.dummy.params(), users
}

// JWTCached returns the number of cached tokens.
func JWTCached(j *JWT) int { return j.cache.len() }

// Slots returns the verification concurrency bound.
func Slots(p *Passwords) int { return cap(p.sem) }

// Issued returns the number of identities p remembers having issued.
func Issued(p *Passwords) int {
	n := 0
	p.issued.Range(func(any, any) bool { n++; return true })
	return n
}
