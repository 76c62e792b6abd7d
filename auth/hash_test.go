package auth_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/internal/testenv"
)

// mosquittoHash runs the real mosquitto_passwd and returns the hash it wrote.
func mosquittoHash(t *testing.T, algo, password string) string {
	t.Helper()
	bin := testenv.Need(t, "mosquitto_passwd")
	file := filepath.Join(t.TempDir(), "pw")
	args := []string{"-c", "-b", file, "u", password}
	if algo != "" {
		args = append([]string{"-H", algo}, args...)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	line := strings.TrimSpace(string(b))
	require.True(t, strings.HasPrefix(line, "u:"), line)
	return strings.TrimPrefix(line, "u:")
}

func TestMosquittoHashes(t *testing.T) {
	for _, tc := range []struct {
		algo   string
		prefix string
		scheme auth.Scheme
	}{
		{"", "$7$101$", auth.MosquittoPBKDF2},
		{"sha512-pbkdf2", "$7$101$", auth.MosquittoPBKDF2},
		{"sha512", "$6$", auth.MosquittoSHA512},
	} {
		t.Run(tc.scheme.String()+"/"+tc.algo, func(t *testing.T) {
			for _, pw := range []string{"secret", "pässwörd with spaces", strings.Repeat("x", 200)} {
				s := mosquittoHash(t, tc.algo, pw)
				require.True(t, strings.HasPrefix(s, tc.prefix), s)
				h, err := auth.ParseHash(s)
				require.NoError(t, err)
				require.Equal(t, tc.scheme, h.Scheme())
				require.Equal(t, s, h.String())
				require.True(t, h.Verify([]byte(pw)))
				require.False(t, h.Verify([]byte(pw+"x")))
				require.False(t, h.Verify(nil))
			}
		})
	}
}

// sha512Hash builds a "$6$" hash the way Mosquitto does: base64 salt,
// base64(SHA-512(password || salt)).
func sha512Hash(password string, salt []byte) string {
	sum := sha512.Sum512(append([]byte(password), salt...))
	return "$6$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum[:])
}

func TestMosquitto64ByteSalt(t *testing.T) {
	salt := bytes.Repeat([]byte{7}, 64)
	h, err := auth.ParseHash(sha512Hash("pw", salt))
	require.NoError(t, err)
	require.True(t, h.Verify([]byte("pw")))
	_, err = auth.ParseHash(sha512Hash("pw", salt[:16]))
	require.ErrorIs(t, err, auth.ErrMalformedHash)
}

func TestBcryptVariants(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("hunter2hunter2"), bcrypt.MinCost)
	require.NoError(t, err)
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		t.Run(prefix, func(t *testing.T) {
			s := prefix + string(b[4:])
			h, err := auth.ParseHash(s)
			require.NoError(t, err)
			require.Equal(t, auth.Bcrypt, h.Scheme())
			require.True(t, h.Verify([]byte("hunter2hunter2")))
			require.False(t, h.Verify([]byte("hunter2hunter3")))
		})
	}
}

// Some generators make bcrypt salts from random characters, leaving the
// unused bits of the salt's last character set; bcrypt accepts such hashes
// and so do we.
func TestBcryptNonCanonicalSalt(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	require.NoError(t, err)
	s := []byte(string(b))
	// Salt characters are s[7:29]; set an unused low bit of the last one.
	const alphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	idx := strings.IndexByte(alphabet, s[28])
	s[28] = alphabet[idx|1]
	require.NoError(t, bcrypt.CompareHashAndPassword(s, []byte("pw")), "bcrypt itself accepts it")
	h, err := auth.ParseHash(string(s))
	require.NoError(t, err)
	require.True(t, h.Verify([]byte("pw")))
}

func TestHashPassword(t *testing.T) {
	for _, opt := range []auth.HashOptions{
		{BcryptCost: bcrypt.MinCost},
		{Scheme: auth.Argon2id, Argon2: auth.Argon2Params{Memory: 64, Time: 1}},
		{Scheme: auth.Argon2id},
		{Scheme: auth.MosquittoPBKDF2, PBKDF2Iterations: 1000},
	} {
		t.Run(opt.Scheme.String(), func(t *testing.T) {
			h, err := auth.HashPassword([]byte("correct horse"), opt)
			require.NoError(t, err)
			require.True(t, h.Verify([]byte("correct horse")))
			require.False(t, h.Verify([]byte("correct horsE")))
			again, err := auth.ParseHash(h.String())
			require.NoError(t, err)
			require.True(t, again.Verify([]byte("correct horse")))
			other, err := auth.HashPassword([]byte("correct horse"), opt)
			require.NoError(t, err)
			require.NotEqual(t, h.String(), other.String(), "salt must be random")
		})
	}
	t.Run("default is bcrypt", func(t *testing.T) {
		h, err := auth.HashPassword([]byte("x"), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.Equal(t, auth.Bcrypt, h.Scheme())
		require.True(t, strings.HasPrefix(h.String(), "$2a$04$"), h.String())
	})
	t.Run("bcrypt 72-byte limit", func(t *testing.T) {
		_, err := auth.HashPassword(bytes.Repeat([]byte("a"), 73), auth.HashOptions{BcryptCost: 4})
		require.ErrorIs(t, err, auth.ErrPasswordTooLong)
		h, err := auth.HashPassword(bytes.Repeat([]byte("a"), 72), auth.HashOptions{BcryptCost: 4})
		require.NoError(t, err)
		require.True(t, h.Verify(bytes.Repeat([]byte("a"), 72)))
		// bcrypt ignores bytes after 72; we never let such a password match.
		require.False(t, h.Verify(bytes.Repeat([]byte("a"), 73)))
	})
	t.Run("bcrypt cost over the verification bound", func(t *testing.T) {
		_, err := auth.HashPassword([]byte("x"), auth.HashOptions{BcryptCost: 17})
		require.ErrorIs(t, err, auth.ErrConfig)
	})
	// Bad argon2id parameters are refused before they are used: a negative
	// length would panic, a huge memory size would exhaust the process.
	for name, a := range map[string]auth.Argon2Params{
		"negative salt": {Memory: 64, Time: 1, SaltLen: -1},
		"negative key":  {Memory: 64, Time: 1, KeyLen: -1},
		"short salt":    {Memory: 64, Time: 1, SaltLen: 4},
		"4 GiB":         {Memory: 4 << 20, Time: 1},
		"huge time":     {Memory: 64 << 10, Time: 1 << 30},
		"low memory":    {Memory: 8, Time: 1, Threads: 4},
	} {
		t.Run("argon2id "+name, func(t *testing.T) {
			_, err := auth.HashPassword([]byte("x"), auth.HashOptions{Scheme: auth.Argon2id, Argon2: a})
			require.ErrorIs(t, err, auth.ErrConfig)
		})
	}
	t.Run("sha512 refused", func(t *testing.T) {
		_, err := auth.HashPassword([]byte("x"), auth.HashOptions{Scheme: auth.MosquittoSHA512})
		require.ErrorIs(t, err, auth.ErrConfig)
	})
	t.Run("bad cost", func(t *testing.T) {
		_, err := auth.HashPassword([]byte("x"), auth.HashOptions{BcryptCost: 3})
		require.ErrorIs(t, err, auth.ErrConfig)
	})
}

func TestParseHashMalformed(t *testing.T) {
	good7 := "$7$101$552PqRKIBes5embQ$5YZQ0uPohXxx8ISETXjeQ6wTI0X9JzDmSfsFQ1LhZG2p9HrHwB6G1ynYpVO/uieQS+YXHxsUDDjs9/znU8nrwQ=="
	_, err := auth.ParseHash(good7)
	require.NoError(t, err)
	goodB := "$2b$04$" + strings.Repeat("a", 53)
	for name, s := range map[string]string{
		"empty":                     "",
		"plaintext":                 "secret",
		"unknown scheme":            "$5$abc$def",
		"md5 crypt":                 "$1$abc$def",
		"argon2i":                   "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"7 no fields":               "$7$",
		"7 zero iterations":         strings.Replace(good7, "$101$", "$0$", 1),
		"7 leading zero":            strings.Replace(good7, "$101$", "$0101$", 1),
		"7 signed":                  strings.Replace(good7, "$101$", "$+101$", 1),
		"7 huge iterations":         strings.Replace(good7, "$101$", "$99999999999$", 1),
		"7 extra field":             good7 + "$x",
		"7 unpadded hash":           strings.TrimSuffix(good7, "=="),
		"7 url base64":              strings.Replace(good7, "/", "_", 1),
		"7 short salt":              strings.Replace(good7, "552PqRKIBes5embQ", "552PqRKI", 1),
		"6 missing hash":            "$6$552PqRKIBes5embQ",
		"6 short hash":              "$6$552PqRKIBes5embQ$AAAA",
		"bcrypt short":              goodB[:59],
		"bcrypt long":               goodB + "a",
		"bcrypt cost 3":             strings.Replace(goodB, "$04$", "$03$", 1),
		"bcrypt cost 32":            strings.Replace(goodB, "$04$", "$32$", 1),
		"bcrypt cost 31 (a day)":    strings.Replace(goodB, "$04$", "$31$", 1),
		"bcrypt cost 17":            strings.Replace(goodB, "$04$", "$17$", 1),
		"bcrypt 2x":                 strings.Replace(goodB, "$2b$", "$2x$", 1),
		"bcrypt bad char":           goodB[:59] + "!",
		"bcrypt non-canonical hash": goodB[:59] + "b",
		"argon2id v16":              "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id order":            "$argon2id$v=19$t=1,m=64,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id padded":           "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id p0":               "$argon2id$v=19$m=64,t=1,p=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id low mem":          "$argon2id$v=19$m=7,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id huge mem":         "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id 4 GiB":            "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id 257 MiB":          "$argon2id$v=19$m=263168,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id 256 MiB x 1000":   "$argon2id$v=19$m=262144,t=1000,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id 64 MiB x 33":      "$argon2id$v=19$m=65536,t=33,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id keyid":            "$argon2id$v=19$m=64,t=1,p=1,keyid=x$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"too long":                  "$7$" + strings.Repeat("A", 2000),
		"leading space":             " " + good7,
		"trailing newline":          good7 + "\n",
		"inner newline":             good7[:20] + "\n" + good7[20:],
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.ParseHash(s)
			require.ErrorIs(t, err, auth.ErrMalformedHash)
			if len(s) > 8 {
				require.NotContains(t, err.Error(), s[len(s)-8:], "error must not quote the hash")
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	var p auth.Policy
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"alice", "tiny1", false},
		{"alice", "correct horse battery", true},
		{"alice", "Password123", false},           // too short
		{"alice", "passwordpassword", false},      // common
		{"alice", "PasswordPassword", false},      // common, any case
		{"longusername1", "LongUserName1", false}, // equals user name
		{"alice", "ääääääääääää", true},           // 12 characters, 24 bytes
		{"alice", "äääääääääää", false},           // 11 characters
	} {
		err := p.Check(tc.user, []byte(tc.pw))
		if tc.ok {
			require.NoError(t, err, tc.pw)
		} else {
			require.ErrorIs(t, err, auth.ErrWeakPassword, tc.pw)
			require.NotContains(t, err.Error(), tc.pw)
		}
	}
	loose := auth.Policy{MinLength: -1, AllowCommon: true, AllowUsername: true}
	require.NoError(t, loose.Check("admin", []byte("admin")))
}
