package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxLine is the longest password file line accepted: the longest user
// name, ':' and the longest hash, so that whatever [PasswordFile.Set]
// accepts reads back.
const maxLine = maxUsername + 1 + maxHashString

// PasswordFile is a password file in Mosquitto's format: one
// "username:hash" entry per line, blank lines and lines starting with '#'
// ignored (and preserved when the file is written back), blanks around a
// user name ignored. Any hash accepted
// by [ParseHash] may appear, so a file written by mosquitto_passwd is
// read unchanged.
//
// A PasswordFile is not safe for concurrent modification; [Passwords] takes
// its own snapshot of it.
type PasswordFile struct {
	lines []fileLine
	index map[string]int
}

type fileLine struct {
	raw  string // a comment or blank line, when user is empty
	user string
	hash *Hash
}

// NewPasswordFile returns an empty password file.
func NewPasswordFile() *PasswordFile {
	return &PasswordFile{index: make(map[string]int)}
}

// ParsePasswordFile reads a password file. name is used in errors only.
// Every malformed line is reported as a [*ParseError] naming the line,
// wrapping [ErrMalformedFile] (and [ErrMalformedHash] for a bad hash) or
// [ErrDuplicateUser]. Errors never contain a hash.
func ParsePasswordFile(r io.Reader, name string) (*PasswordFile, error) {
	f := NewPasswordFile()
	br := bufio.NewReaderSize(r, 4096)
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == io.EOF {
			return f, nil
		}
		if err != nil {
			return nil, &ParseError{Name: name, Line: n, Err: err}
		}
		if err := f.parseLine(line); err != nil {
			return nil, &ParseError{Name: name, Line: n, Err: err}
		}
	}
}

var errLongLine = fmt.Errorf("%w: line longer than %d bytes", ErrMalformedFile, maxLine)

// readLine returns the next line without its "\n" and any "\r" before it,
// or io.EOF.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxLine+2 {
			return "", errLongLine
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(buf) == 0 {
				return "", io.EOF
			}
			break
		}
		if err != nil {
			return "", err
		}
		break
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	buf = bytes.TrimRight(buf, "\r")
	if len(buf) > maxLine {
		return "", errLongLine
	}
	return string(buf), nil
}

func (f *PasswordFile) parseLine(line string) error {
	trimmed := strings.TrimSpace(line)
	if trimmed == "" || trimmed[0] == '#' {
		f.lines = append(f.lines, fileLine{raw: line})
		return nil
	}
	user, hash, ok := strings.Cut(strings.TrimRight(line, " \t"), ":")
	if !ok {
		return fmt.Errorf("%w: want username:hash", ErrMalformedFile)
	}
	// Blanks around the name are not part of it, as for Mosquitto.
	user = strings.Trim(user, " \t")
	if err := validUsername(user); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedFile, err)
	}
	if hash == "" {
		return fmt.Errorf("%w: user %q has no hash", ErrMalformedFile, user)
	}
	h, err := ParseHash(hash)
	if err != nil {
		return fmt.Errorf("%w: user %q: %w", ErrMalformedFile, user, err)
	}
	if _, dup := f.index[user]; dup {
		return fmt.Errorf("%w: %q", ErrDuplicateUser, user)
	}
	f.index[user] = len(f.lines)
	f.lines = append(f.lines, fileLine{user: user, hash: h})
	return nil
}

// LoadPasswordFile reads and parses the password file at path.
func LoadPasswordFile(path string) (*PasswordFile, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	defer fd.Close()
	return ParsePasswordFile(fd, path)
}

// Len returns the number of users.
func (f *PasswordFile) Len() int { return len(f.index) }

// Lookup returns the hash of user.
func (f *PasswordFile) Lookup(user string) (*Hash, bool) {
	i, ok := f.index[user]
	if !ok {
		return nil, false
	}
	return f.lines[i].hash, true
}

// Users returns the user names in file order.
func (f *PasswordFile) Users() []string {
	users := make([]string, 0, len(f.index))
	for _, l := range f.lines {
		if l.user != "" {
			users = append(users, l.user)
		}
	}
	return users
}

// Set adds user with hash h, or replaces the hash of an existing user in
// place. It returns an error wrapping [ErrInvalidUsername] for a name that
// the file cannot carry back as itself: empty, longer than 65535 bytes,
// not UTF-8, with ':' or a control character (a newline would start
// another entry), starting with '#' (a comment), or with white space at
// either end (trimmed when read). It applies no strength policy: check the
// password with [Policy.Check] before hashing it.
func (f *PasswordFile) Set(user string, h *Hash) error {
	if err := storableUsername(user); err != nil {
		return err
	}
	if h == nil {
		return fmt.Errorf("%w: nil hash", ErrMalformedHash)
	}
	if i, ok := f.index[user]; ok {
		f.lines[i].hash = h
		return nil
	}
	f.index[user] = len(f.lines)
	f.lines = append(f.lines, fileLine{user: user, hash: h})
	return nil
}

// Delete removes user, or returns an error wrapping [ErrUnknownUser].
func (f *PasswordFile) Delete(user string) error {
	i, ok := f.index[user]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownUser, user)
	}
	f.lines = append(f.lines[:i], f.lines[i+1:]...)
	delete(f.index, user)
	for j := i; j < len(f.lines); j++ {
		if u := f.lines[j].user; u != "" {
			f.index[u] = j
		}
	}
	return nil
}

// WriteTo writes the file in Mosquitto's format, comments included.
func (f *PasswordFile) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	var n int64
	for _, l := range f.lines {
		var k int
		if l.user == "" {
			k, _ = bw.WriteString(l.raw)
		} else {
			k, _ = bw.WriteString(l.user + ":" + l.hash.String())
		}
		_ = bw.WriteByte('\n')
		n += int64(k) + 1
	}
	return n, bw.Flush()
}

// WriteFile writes the file to path atomically: to a temporary file in the
// same directory with mode 0600, synced, then renamed over path. A reader
// (or a [Watcher]) sees the old file or the new one, never a partial one.
// When path is a symbolic link, the file it points to is replaced (in that
// file's directory) and the link is kept, so a broker that reads the
// target sees the change. Every symbolic link on the way, the file's and
// its folders', the first hop and every later one, must belong to the
// caller or root: another user's link (planted in a shared folder, or
// pointed at by the caller's own link) could aim the write at any file of
// the caller's, so it is refused. A replaced file's owner and group are kept when
// the caller may set them (root editing a file the broker's user owns),
// and so is its group read permission when its group is kept, so that the
// broker can still read the new file; no other permission is ever given.
func (f *PasswordFile) WriteFile(path string) (err error) {
	if path, err = resolveTrusted(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	mode := os.FileMode(0o600)
	if old, serr := os.Stat(path); serr == nil && old.Mode().IsRegular() && keepOwner(tmp, old) {
		mode |= old.Mode().Perm() & 0o040
	}
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if _, err = f.WriteTo(tmp); err != nil {
		return fmt.Errorf("auth: write %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// maxLinks bounds the symbolic links followed while resolving a path, as
// the kernel's limit does.
const maxLinks = 40

// resolveTrusted returns the absolute path path names with every symbolic
// link resolved, as [filepath.EvalSymlinks] does, but checks each link it
// meets, in a folder or at the end, first hop or later, with trustedLink
// and refuses the path at the first untrusted one. The last component may
// not exist yet (a new file).
func resolveTrusted(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	vol := filepath.VolumeName(abs)
	root := vol + string(filepath.Separator)
	resolved := root
	rest := splitPath(abs[len(vol):])
	for links := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, name)
		st, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) && len(rest) == 0 {
			return next, nil
		}
		if err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
		if st.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if !trustedLink(st) {
			return "", fmt.Errorf("auth: %s is a symbolic link owned by another user; refusing to write through it", next)
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("auth: %s: too many symbolic links", path)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
		if filepath.IsAbs(target) {
			tv := filepath.VolumeName(target)
			resolved = tv + string(filepath.Separator)
			target = target[len(tv):]
		}
		rest = append(splitPath(target), rest...)
	}
	return resolved, nil
}

func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return os.IsPathSeparator(uint8(r)) && r < 0x80 })
}
