package auth_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
)

func TestLoadPasswordFile(t *testing.T) {
	f, err := auth.LoadPasswordFile("testdata/mixed.passwd")
	require.NoError(t, err)
	require.Equal(t, []string{"alice", "bob"}, f.Users())
	h, ok := f.Lookup("alice")
	require.True(t, ok)
	require.True(t, h.Verify([]byte("secret1")))
	h, ok = f.Lookup("bob")
	require.True(t, ok)
	require.True(t, h.Verify([]byte("s2")))
	_, ok = f.Lookup("carol")
	require.False(t, ok)

	// Written back byte for byte, comments and blank lines included.
	var buf bytes.Buffer
	_, err = f.WriteTo(&buf)
	require.NoError(t, err)
	orig, err := os.ReadFile("testdata/mixed.passwd")
	require.NoError(t, err)
	require.Equal(t, string(orig), buf.String())
}

func TestParsePasswordFileErrors(t *testing.T) {
	good := fakeBcrypt
	for _, tc := range []struct {
		name, text string
		line       int
		want       error
	}{
		{"no colon", "# c\nalice\n", 2, auth.ErrMalformedFile},
		{"empty user", ":" + good, 1, auth.ErrMalformedFile},
		{"empty hash", "alice:\n", 1, auth.ErrMalformedFile},
		{"plaintext", "alice:good\nbob:secret\n", 1, auth.ErrMalformedHash},
		{"bad hash line 3", "a:" + good + "\n\nc:$7$1$x$y\n", 3, auth.ErrMalformedHash},
		{"duplicate", "a:" + good + "\n# x\na:" + good + "\n", 3, auth.ErrDuplicateUser},
		{"control char", "a\x01b:" + good, 1, auth.ErrInvalidUsername},
		{"not utf8", "a\xffb:" + good, 1, auth.ErrInvalidUsername},
		{"long line", "a:" + strings.Repeat("x", 70000), 1, auth.ErrMalformedFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := auth.ParsePasswordFile(strings.NewReader(tc.text), "users.txt")
			require.ErrorIs(t, err, tc.want)
			var pe *auth.ParseError
			require.True(t, errors.As(err, &pe))
			require.Equal(t, tc.line, pe.Line)
			require.Contains(t, err.Error(), "users.txt:")
			require.NotContains(t, err.Error(), "secret")
			require.NotContains(t, err.Error(), "aaaaaaaa")
		})
	}
}

func TestParsePasswordFileCRLFAndSpaces(t *testing.T) {
	good := fakeBcrypt
	f, err := auth.ParsePasswordFile(strings.NewReader("  # indented comment\r\nuser one:"+good+" \r\n"), "")
	require.NoError(t, err)
	_, ok := f.Lookup("user one")
	require.True(t, ok)
}

func TestPasswordFileEdit(t *testing.T) {
	f := auth.NewPasswordFile()
	h1, err := auth.HashPassword([]byte("one"), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	h2, err := auth.HashPassword([]byte("two"), auth.HashOptions{BcryptCost: 4})
	require.NoError(t, err)
	require.NoError(t, f.Set("a", h1))
	require.NoError(t, f.Set("b", h1))
	require.NoError(t, f.Set("c", h1))
	require.NoError(t, f.Set("b", h2))
	require.ErrorIs(t, f.Set("x:y", h1), auth.ErrInvalidUsername)
	require.ErrorIs(t, f.Set("", h1), auth.ErrInvalidUsername)
	require.Equal(t, []string{"a", "b", "c"}, f.Users())
	require.NoError(t, f.Delete("a"))
	require.ErrorIs(t, f.Delete("a"), auth.ErrUnknownUser)
	require.Equal(t, []string{"b", "c"}, f.Users())
	h, _ := f.Lookup("c")
	require.True(t, h.Verify([]byte("one")))
	h, _ = f.Lookup("b")
	require.True(t, h.Verify([]byte("two")))

	path := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, f.WriteFile(path))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	back, err := auth.LoadPasswordFile(path)
	require.NoError(t, err)
	require.Equal(t, f.Users(), back.Users())
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")
}

// fakeBcrypt is a well-formed bcrypt hash that no password matches.
var fakeBcrypt = "$2b$04$" + strings.Repeat("a", 21) + "." + strings.Repeat("a", 31)

func TestFakeBcryptParses(t *testing.T) {
	_, err := auth.ParseHash(fakeBcrypt)
	require.NoError(t, err)
}

// Writing through a symbolic link replaces the file it points to and keeps
// the link: replacing the link itself would leave a broker that reads the
// target with the old users.
func TestPasswordFileWriteThroughSymlink(t *testing.T) {
	h, err := auth.ParseHash(fakeBcrypt)
	require.NoError(t, err)
	realDir, linkDir := t.TempDir(), t.TempDir()
	target := filepath.Join(realDir, "passwd")
	link := filepath.Join(linkDir, "passwd")
	old := auth.NewPasswordFile()
	require.NoError(t, old.Set("alice", h))
	require.NoError(t, old.WriteFile(target))
	require.NoError(t, os.Symlink(target, link))

	f, err := auth.LoadPasswordFile(link)
	require.NoError(t, err)
	require.NoError(t, f.Delete("alice"))
	require.NoError(t, f.Set("bob", h))
	require.NoError(t, f.WriteFile(link))

	st, err := os.Lstat(link)
	require.NoError(t, err)
	require.NotZero(t, st.Mode()&os.ModeSymlink, "the link must stay a link")
	back, err := auth.LoadPasswordFile(target)
	require.NoError(t, err)
	require.Equal(t, []string{"bob"}, back.Users(), "the target must hold the new users")
	entries, err := os.ReadDir(realDir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")
}

// Set refuses every name the file format cannot carry back: written and
// read again, it would be a comment, a blank line, another name (blanks
// around a name are trimmed, as Mosquitto does) or a parse error that
// locks every user out. Every name Set accepts reads back as itself.
func TestPasswordFileSetRefusesNamesThatDoNotRoundTrip(t *testing.T) {
	h, err := auth.ParseHash(fakeBcrypt)
	require.NoError(t, err)
	for _, name := range []string{
		"#alice", "#", "\u00a0#x", " #x", // comments
		"", " ", "\t", "\u3000", // blank lines
		" alice", "alice ", "alice\t", "\u00a0alice", "alice\u2003", // trimmed to another name
		"a:b", ":", "al\nice", "al\rice", "a\x00b", "a\x7fb", "a\u0085b", "a\xffb", // the separator, controls, not UTF-8
	} {
		f := auth.NewPasswordFile()
		require.ErrorIs(t, f.Set(name, h), auth.ErrInvalidUsername, "%q", name)
	}
	for _, name := range []string{"alice", "a#b", "user one", "ütf-8 ✓", "$SYS", "*", "a/b+c", strings.Repeat("x", 65535)} {
		f := auth.NewPasswordFile()
		require.NoError(t, f.Set(name, h), "%q", name)
		var buf bytes.Buffer
		_, err := f.WriteTo(&buf)
		require.NoError(t, err)
		back, err := auth.ParsePasswordFile(&buf, "")
		require.NoError(t, err, "%.20q", name)
		require.Equal(t, []string{name}, back.Users())
	}
	require.ErrorIs(t, auth.NewPasswordFile().Set(strings.Repeat("x", 65536), h), auth.ErrInvalidUsername)
}

// Blanks around a name are not part of it, as for Mosquitto: the same file
// names the same users for both brokers.
func TestParsePasswordFileTrimsNames(t *testing.T) {
	f, err := auth.ParsePasswordFile(strings.NewReader(" alice :"+fakeBcrypt+"\n\tbob\t:"+fakeBcrypt+"\n"), "")
	require.NoError(t, err)
	require.Equal(t, []string{"alice", "bob"}, f.Users())
	_, err = auth.ParsePasswordFile(strings.NewReader("alice:"+fakeBcrypt+"\nalice :"+fakeBcrypt+"\n"), "")
	require.ErrorIs(t, err, auth.ErrDuplicateUser)
}
