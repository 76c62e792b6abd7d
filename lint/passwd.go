package lint

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mqttsec/mqttsec/auth"
)

// Thresholds below which a hash is reported as weak.
const (
	// minPBKDF2Iterations is OWASP's figure for PBKDF2-HMAC-SHA512, and
	// auth.DefaultPBKDF2Iterations. mosquitto_passwd 2.0 writes 101.
	minPBKDF2Iterations = auth.DefaultPBKDF2Iterations
	minBcryptCost       = 10
	// minArgon2Work is memory (KiB) times passes of OWASP's weakest
	// recommended argon2id setting (19 MiB, 2 passes).
	minArgon2Work = 19 * 1024 * 2
)

// passwordFile lints a Mosquitto (or mqttsec) password file: one
// "user:hash" per line. Evidence names the user, never the hash or what
// might be a plaintext password.
func (l *linter) passwordFile(path string, data []byte) {
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		user, hash, ok := strings.Cut(strings.TrimRight(line, " \t"), ":")
		if !ok || user == "" {
			l.add("password-not-hashed", path, n+1, "line %d is not user:hash", n+1)
			continue
		}
		user = printable(user, 64)
		h, err := auth.ParseHash(hash)
		if err != nil {
			l.add("password-not-hashed", path, n+1, "user %q: not a recognised password hash (a plaintext password?)", user)
			continue
		}
		if why := weakHash(h); why != "" {
			l.add("weak-password-hash", path, n+1, "user %q: %s", user, why)
		}
	}
}

// weakHash says why h is too fast to resist offline guessing, or "".
// auth.ParseHash has validated the format, so the fields are there.
func weakHash(h *auth.Hash) string {
	s := h.String()
	switch h.Scheme() {
	case auth.MosquittoSHA512:
		return "$6$ is one round of salted SHA-512"
	case auth.MosquittoPBKDF2:
		f := strings.Split(s, "$") // "", "7", iterations, salt, hash
		if n, err := strconv.Atoi(f[2]); err == nil && n < minPBKDF2Iterations {
			return fmt.Sprintf("$7$ with %d PBKDF2 iterations (fewer than %d)", n, minPBKDF2Iterations)
		}
	case auth.Bcrypt:
		if n, err := strconv.Atoi(s[4:6]); err == nil && n < minBcryptCost {
			return fmt.Sprintf("bcrypt cost %d (below %d)", n, minBcryptCost)
		}
	case auth.Argon2id:
		var m, t, p int
		f := strings.Split(s, "$") // "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
		if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); err == nil && m*t < minArgon2Work {
			return fmt.Sprintf("argon2id with m=%d KiB and t=%d (below 19 MiB x 2 passes)", m, t)
		}
	}
	return ""
}

// printable truncates s to n bytes and replaces control characters, so
// that a file's content cannot forge lines in a report.
func printable(s string, n int) string {
	var b strings.Builder
	for i, r := range s {
		if i >= n {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
