package auth

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Scheme is a password hashing scheme.
type Scheme uint8

// The supported schemes.
const (
	// Bcrypt is bcrypt in its modular crypt form, "$2a$", "$2b$" or "$2y$".
	Bcrypt Scheme = iota + 1
	// Argon2id is argon2id in its PHC string form,
	// "$argon2id$v=19$m=...,t=...,p=...$salt$hash".
	Argon2id
	// MosquittoPBKDF2 is Mosquitto's "$7$iterations$salt$hash":
	// PBKDF2-HMAC-SHA512, standard base64. mosquitto_passwd's default.
	MosquittoPBKDF2
	// MosquittoSHA512 is Mosquitto's "$6$salt$hash": one round of
	// SHA-512(password || salt), standard base64. Verified only: it is too
	// fast to be a good choice for new passwords, and [HashPassword] refuses it.
	MosquittoSHA512
)

// String returns the scheme's name.
func (s Scheme) String() string {
	switch s {
	case Bcrypt:
		return "bcrypt"
	case Argon2id:
		return "argon2id"
	case MosquittoPBKDF2:
		return "mosquitto-pbkdf2-sha512"
	case MosquittoSHA512:
		return "mosquitto-sha512"
	}
	return "unknown"
}

// Limits on hash parameters, so that a password file entry cannot make one
// verification take more than a few seconds of a current core, nor more
// than 256 MiB of memory (verifications run MaxConcurrent at a time).
// Anyone who can make the broker verify a password for that user name
// could otherwise tie up the verification slots (bcrypt cost 31 takes
// more than a day, argon2id m=4GiB,t=1000 hours and 4 GiB each).
const (
	maxBcryptPassword = 72
	maxBcryptCost     = 16         // about 4 s
	maxPBKDF2Iter     = 10_000_000 // about 5 s
	maxArgonMemory    = 256 << 10  // KiB: 256 MiB
	maxArgonWork      = 2 << 20    // memory (KiB) * passes: 2 GiB, about 4 s
	maxArgonTime      = 1000
	maxHashString     = 1024
)

// Hash is a parsed password hash. The zero value is not usable; get one
// from [ParseHash] or [HashPassword]. A Hash is immutable and safe for
// concurrent use.
type Hash struct {
	scheme  Scheme
	encoded string
	iter    int    // pbkdf2 iterations, bcrypt cost, argon2 time
	memory  uint32 // argon2 KiB
	threads uint8  // argon2 parallelism
	salt    []byte
	sum     []byte
}

// Scheme returns the hash's scheme.
func (h *Hash) Scheme() Scheme { return h.scheme }

// String returns the hash in the format it was parsed from or created in,
// as it is written to a password file.
func (h *Hash) String() string { return h.encoded }

// params identifies the cost of a verification: two hashes with the same
// params take the same time to verify.
func (h *Hash) params() string {
	return fmt.Sprintf("%d/%d/%d/%d/%d/%d", h.scheme, h.iter, h.memory, h.threads, len(h.salt), len(h.sum))
}

// Verify reports whether password matches the hash. The comparison is in
// constant time; a bcrypt password longer than 72 bytes never matches.
func (h *Hash) Verify(password []byte) bool {
	switch h.scheme {
	case Bcrypt:
		if len(password) > maxBcryptPassword {
			return false
		}
		return bcrypt.CompareHashAndPassword([]byte(h.encoded), password) == nil
	case Argon2id:
		sum := argon2.IDKey(password, h.salt, uint32(h.iter), h.memory, h.threads, uint32(len(h.sum)))
		return subtle.ConstantTimeCompare(sum, h.sum) == 1
	case MosquittoPBKDF2:
		sum, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.iter, len(h.sum))
		return err == nil && subtle.ConstantTimeCompare(sum, h.sum) == 1
	case MosquittoSHA512:
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		var buf [sha512.Size]byte
		return subtle.ConstantTimeCompare(d.Sum(buf[:0]), h.sum) == 1
	}
	return false
}

// ParseHash parses a password hash in one of the supported formats: bcrypt
// ("$2a$", "$2b$", "$2y$"), argon2id (PHC string), Mosquitto "$7$" and "$6$"
// (12- or 64-byte salts). Anything else, including non-canonical encodings
// and out-of-range parameters, is an error wrapping [ErrMalformedHash]. The
// error never contains the hash.
func ParseHash(s string) (*Hash, error) {
	if len(s) > maxHashString {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformedHash, maxHashString)
	}
	for i := 0; i < len(s); i++ {
		// base64 decoders skip newlines; a hash is printable ASCII only.
		if s[i] <= ' ' || s[i] > '~' {
			return nil, fmt.Errorf("%w: contains a space, control or non-ASCII character", ErrMalformedHash)
		}
	}
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		return parseBcrypt(s)
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$7$"):
		return parseMosquitto7(s)
	case strings.HasPrefix(s, "$6$"):
		return parseMosquitto6(s)
	case strings.HasPrefix(s, "$2"):
		return nil, fmt.Errorf("%w: unsupported bcrypt variant", ErrMalformedHash)
	case strings.HasPrefix(s, "$argon2"):
		return nil, fmt.Errorf("%w: only argon2id is supported", ErrMalformedHash)
	}
	return nil, fmt.Errorf("%w: unknown scheme", ErrMalformedHash)
}

func malformed(scheme Scheme, what string) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformedHash, scheme, what)
}

const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func parseBcrypt(s string) (*Hash, error) {
	// $2b$CC$ + 22 salt + 31 hash characters.
	if len(s) != 60 || s[6] != '$' {
		return nil, malformed(Bcrypt, "not 60 characters in $2b$CC$ form")
	}
	cost, ok := parseDecimal(s[4:6], true)
	if !ok || cost < bcrypt.MinCost || cost > maxBcryptCost {
		return nil, malformed(Bcrypt, fmt.Sprintf("cost not in %02d..%d", bcrypt.MinCost, maxBcryptCost))
	}
	for i := 7; i < len(s); i++ {
		if strings.IndexByte(bcryptAlphabet, s[i]) < 0 {
			return nil, malformed(Bcrypt, "invalid character")
		}
	}
	// The last character of the hash carries unused bits: a non-canonical
	// one could never compare equal to bcrypt's output, so refuse it at load
	// time. The salt is decoded leniently by every implementation (some
	// generate it as random characters), so it is accepted as is.
	if !canonicalBcrypt64(s[29:]) {
		return nil, malformed(Bcrypt, "non-canonical encoding")
	}
	if _, err := bcrypt.Cost([]byte(s)); err != nil {
		return nil, malformed(Bcrypt, "rejected by bcrypt")
	}
	return &Hash{scheme: Bcrypt, encoded: s, iter: cost}, nil
}

var bcryptEncoding = base64.NewEncoding(bcryptAlphabet).WithPadding(base64.NoPadding).Strict()

func canonicalBcrypt64(s string) bool {
	b, err := bcryptEncoding.DecodeString(s)
	return err == nil && bcryptEncoding.EncodeToString(b) == s
}

// parseDecimal parses a non-negative decimal integer without sign, spaces
// or leading zeros (unless fixed, for bcrypt's two-digit cost).
func parseDecimal(s string, fixed bool) (int, bool) {
	if s == "" || len(s) > 10 || (!fixed && len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

var stdB64 = base64.StdEncoding.Strict()

func decodeSaltSum(scheme Scheme, salt, sum string) ([]byte, []byte, error) {
	s, err := stdB64.DecodeString(salt)
	if err != nil || (len(s) != 12 && len(s) != 64) {
		return nil, nil, malformed(scheme, "salt is not 12 or 64 bytes of standard base64")
	}
	h, err := stdB64.DecodeString(sum)
	if err != nil || len(h) != sha512.Size {
		return nil, nil, malformed(scheme, "hash is not 64 bytes of standard base64")
	}
	return s, h, nil
}

func parseMosquitto7(s string) (*Hash, error) {
	f := strings.Split(s[len("$7$"):], "$")
	if len(f) != 3 {
		return nil, malformed(MosquittoPBKDF2, "want $7$iterations$salt$hash")
	}
	iter, ok := parseDecimal(f[0], false)
	if !ok || iter < 1 || iter > maxPBKDF2Iter {
		return nil, malformed(MosquittoPBKDF2, fmt.Sprintf("iterations not in 1..%d", maxPBKDF2Iter))
	}
	salt, sum, err := decodeSaltSum(MosquittoPBKDF2, f[1], f[2])
	if err != nil {
		return nil, err
	}
	return &Hash{scheme: MosquittoPBKDF2, encoded: s, iter: iter, salt: salt, sum: sum}, nil
}

func parseMosquitto6(s string) (*Hash, error) {
	f := strings.Split(s[len("$6$"):], "$")
	if len(f) != 2 {
		return nil, malformed(MosquittoSHA512, "want $6$salt$hash")
	}
	salt, sum, err := decodeSaltSum(MosquittoSHA512, f[0], f[1])
	if err != nil {
		return nil, err
	}
	return &Hash{scheme: MosquittoSHA512, encoded: s, salt: salt, sum: sum}, nil
}

var rawB64 = base64.RawStdEncoding.Strict()

func parseArgon2id(s string) (*Hash, error) {
	f := strings.Split(s[len("$argon2id$"):], "$")
	if len(f) != 4 || f[0] != "v=19" {
		return nil, malformed(Argon2id, "want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	ps := strings.Split(f[1], ",")
	if len(ps) != 3 || !strings.HasPrefix(ps[0], "m=") || !strings.HasPrefix(ps[1], "t=") || !strings.HasPrefix(ps[2], "p=") {
		return nil, malformed(Argon2id, "parameters must be m=M,t=T,p=P")
	}
	m, ok1 := parseDecimal(ps[0][2:], false)
	t, ok2 := parseDecimal(ps[1][2:], false)
	p, ok3 := parseDecimal(ps[2][2:], false)
	if !ok1 || !ok2 || !ok3 || p < 1 || p > 255 || t < 1 || t > maxArgonTime || m < 8*p || m > maxArgonMemory || m*t > maxArgonWork {
		return nil, malformed(Argon2id, fmt.Sprintf("parameters out of range (m at most %d KiB, m*t at most %d)", maxArgonMemory, maxArgonWork))
	}
	salt, err := rawB64.DecodeString(f[2])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return nil, malformed(Argon2id, "salt is not 8..64 bytes of unpadded base64")
	}
	sum, err := rawB64.DecodeString(f[3])
	if err != nil || len(sum) < 16 || len(sum) > 128 {
		return nil, malformed(Argon2id, "hash is not 16..128 bytes of unpadded base64")
	}
	return &Hash{scheme: Argon2id, encoded: s, iter: t, memory: uint32(m), threads: uint8(p), salt: salt, sum: sum}, nil
}

// DefaultBcryptCost is the bcrypt cost [HashPassword] uses when none is
// given: about 100 ms on a current server core, above OWASP's minimum of 10.
const DefaultBcryptCost = 11

// DefaultPBKDF2Iterations is the iteration count for new "$7$" hashes
// (OWASP's recommendation for PBKDF2-HMAC-SHA512). mosquitto_passwd itself
// writes only 101.
const DefaultPBKDF2Iterations = 210_000

// Argon2Params are the argon2id parameters for new hashes. Zero fields take
// OWASP's recommended minimum: 19 MiB, 2 passes, 1 thread, 16-byte salt,
// 32-byte hash.
type Argon2Params struct {
	Memory  uint32 `yaml:"memory_kib"`
	Time    uint32 `yaml:"time"`
	Threads uint8  `yaml:"threads"`
	SaltLen int    `yaml:"salt_len"`
	KeyLen  int    `yaml:"key_len"`
}

// HashOptions choose how [HashPassword] hashes. The zero value means bcrypt
// at [DefaultBcryptCost]. HashOptions is a plain value, safe to share.
type HashOptions struct {
	// Scheme is Bcrypt (the default), Argon2id or MosquittoPBKDF2.
	Scheme Scheme `yaml:"scheme"`
	// BcryptCost is the bcrypt cost; zero means DefaultBcryptCost.
	BcryptCost int `yaml:"bcrypt_cost"`
	// Argon2 are the argon2id parameters.
	Argon2 Argon2Params `yaml:"argon2"`
	// PBKDF2Iterations is the "$7$" iteration count; zero means
	// DefaultPBKDF2Iterations.
	PBKDF2Iterations int `yaml:"pbkdf2_iterations"`
}

// HashPassword hashes password with a fresh random salt. It returns an
// error wrapping [ErrPasswordTooLong] for a bcrypt password longer than 72
// bytes (never truncating it), and refuses [MosquittoSHA512]. It does not
// apply a strength policy: see [Policy].
func HashPassword(password []byte, opt HashOptions) (*Hash, error) {
	switch opt.Scheme {
	case 0, Bcrypt:
		if len(password) > maxBcryptPassword {
			return nil, fmt.Errorf("%w: bcrypt uses at most %d bytes, got %d", ErrPasswordTooLong, maxBcryptPassword, len(password))
		}
		cost := opt.BcryptCost
		if cost == 0 {
			cost = DefaultBcryptCost
		}
		if cost < bcrypt.MinCost || cost > maxBcryptCost {
			return nil, fmt.Errorf("%w: bcrypt cost %d not in %d..%d", ErrConfig, cost, bcrypt.MinCost, maxBcryptCost)
		}
		b, err := bcrypt.GenerateFromPassword(password, cost)
		if err != nil {
			return nil, fmt.Errorf("auth: bcrypt: %w", err)
		}
		return parseBcrypt(string(b))
	case Argon2id:
		a := opt.Argon2
		if a.Memory == 0 {
			a.Memory = 19 * 1024
		}
		if a.Time == 0 {
			a.Time = 2
		}
		if a.Threads == 0 {
			a.Threads = 1
		}
		if a.SaltLen == 0 {
			a.SaltLen = 16
		}
		if a.KeyLen == 0 {
			a.KeyLen = 32
		}
		// Check the parameters before using them: a negative length would
		// panic and a huge memory size would exhaust the process.
		if a.SaltLen < 8 || a.SaltLen > 64 || a.KeyLen < 16 || a.KeyLen > 128 ||
			a.Time > maxArgonTime || a.Memory < 8*uint32(a.Threads) || a.Memory > maxArgonMemory ||
			uint64(a.Memory)*uint64(a.Time) > maxArgonWork {
			return nil, fmt.Errorf("%w: argon2id parameters out of range (salt 8..64 bytes, key 16..128 bytes, "+
				"memory %d..%d KiB, memory*time at most %d)", ErrConfig, 8*int(a.Threads), maxArgonMemory, maxArgonWork)
		}
		salt := make([]byte, a.SaltLen)
		rand.Read(salt)
		sum := argon2.IDKey(password, salt, a.Time, a.Memory, a.Threads, uint32(a.KeyLen))
		s := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", a.Memory, a.Time, a.Threads,
			rawB64.EncodeToString(salt), rawB64.EncodeToString(sum))
		h, err := parseArgon2id(s)
		if err != nil {
			return nil, fmt.Errorf("%w: argon2id parameters: %w", ErrConfig, err)
		}
		return h, nil
	case MosquittoPBKDF2:
		iter := opt.PBKDF2Iterations
		if iter == 0 {
			iter = DefaultPBKDF2Iterations
		}
		if iter < 1 || iter > maxPBKDF2Iter {
			return nil, fmt.Errorf("%w: pbkdf2 iterations %d not in 1..%d", ErrConfig, iter, maxPBKDF2Iter)
		}
		salt := make([]byte, 12)
		rand.Read(salt)
		sum, err := pbkdf2.Key(sha512.New, string(password), salt, iter, sha512.Size)
		if err != nil {
			return nil, fmt.Errorf("auth: pbkdf2: %w", err)
		}
		return parseMosquitto7("$7$" + strconv.Itoa(iter) + "$" + stdB64.EncodeToString(salt) + "$" + stdB64.EncodeToString(sum))
	}
	return nil, fmt.Errorf("%w: cannot create %s hashes", ErrConfig, opt.Scheme)
}
