package ratelimit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrMalformedBans is returned for a ban list that does not parse; the
// error names the line.
var ErrMalformedBans = errors.New("ratelimit: malformed ban list")

// maxBanLine bounds a line of a ban list: a quoted 65535-byte client ID
// with every byte escaped fits.
const maxBanLine = 1 << 20

// ParseBans reads a ban list in the format [WriteBans] writes: one ban per
// line,
//
//	KIND VALUE UNTIL [REASON]
//
// where KIND is "client_id", "subject" or "ip"; VALUE is a Go-quoted string
// (a client ID or subject) or, for "ip", a bare address or CIDR prefix;
// UNTIL is "never" or an RFC 3339 time; REASON is an optional Go-quoted
// string. Blank lines and lines starting with '#' are ignored. Parsing is
// strict: anything else, an invalid value ([ErrInvalidBan]) or a second ban
// of the same value is an error wrapping [ErrMalformedBans] that names the
// line, and no ban is returned.
func ParseBans(r io.Reader) ([]Ban, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxBanLine)
	seen := map[[2]string]bool{}
	var out []Ban
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		b, err := parseBanLine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrMalformedBans, n, err)
		}
		k := [2]string{b.Kind.String(), b.Value}
		if seen[k] {
			return nil, fmt.Errorf("%w: line %d: a second ban of %s %q", ErrMalformedBans, n, b.Kind, b.Value)
		}
		seen[k] = true
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedBans, err)
	}
	return out, nil
}

func parseBanLine(line string) (Ban, error) {
	var b Ban
	f, rest, err := banField(line)
	if err != nil {
		return b, err
	}
	if b.Kind, err = ParseBanKind(f); err != nil {
		return b, err
	}
	quoted := strings.HasPrefix(rest, `"`)
	if f, rest, err = banField(rest); err != nil {
		return b, err
	}
	if !quoted && b.Kind != BanAddr {
		return b, fmt.Errorf("a %s must be quoted", b.Kind)
	}
	b.Value = f
	if strings.HasPrefix(rest, `"`) {
		return b, errors.New("the expiry must not be quoted")
	}
	if f, rest, err = banField(rest); err != nil {
		return b, err
	}
	switch f {
	case "":
		return b, errors.New("missing expiry")
	case "never":
	default:
		if b.Until, err = time.Parse(time.RFC3339Nano, f); err != nil {
			return b, fmt.Errorf("expiry %q is not \"never\" or an RFC 3339 time", f)
		}
	}
	if rest != "" {
		if !strings.HasPrefix(rest, `"`) {
			return b, errors.New("the reason must be quoted")
		}
		if b.Reason, rest, err = banField(rest); err != nil {
			return b, err
		}
		if rest != "" {
			return b, errors.New("text after the reason")
		}
	}
	nb, _, err := normalize(b)
	if err != nil {
		return b, err
	}
	if nb.Value != b.Value {
		return b, fmt.Errorf("address %q is not in canonical form %q", b.Value, nb.Value)
	}
	return nb, nil
}

// banField splits the next field off s: a Go-quoted string or a run of
// characters other than space, tab and '"'. rest starts at the next field.
func banField(s string) (field, rest string, err error) {
	if s == "" {
		return "", "", nil
	}
	if s[0] == '"' {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", errors.New("unterminated or invalid quoted string")
		}
		field, _ = strconv.Unquote(q)
		rest = s[len(q):]
	} else {
		i := strings.IndexAny(s, " \t\"")
		if i < 0 {
			i = len(s)
		}
		field, rest = s[:i], s[i:]
	}
	trimmed := strings.TrimLeft(rest, " \t")
	if rest != "" && len(trimmed) == len(rest) {
		return "", "", errors.New("fields must be separated by spaces")
	}
	return field, trimmed, nil
}

// WriteBans writes bans in the format [ParseBans] reads, one per line in
// the order given, after a comment line. A ban that [Bans.Add] would refuse
// is an error wrapping [ErrInvalidBan].
func WriteBans(w io.Writer, bans []Ban) error {
	var buf bytes.Buffer
	buf.WriteString("# mqttsec ban list: kind value until [reason]\n")
	for _, b := range bans {
		nb, _, err := normalize(b)
		if err != nil {
			return err
		}
		buf.WriteString(nb.Kind.String())
		buf.WriteByte(' ')
		if nb.Kind == BanAddr {
			buf.WriteString(nb.Value)
		} else {
			buf.WriteString(strconv.Quote(nb.Value))
		}
		buf.WriteByte(' ')
		if nb.Until.IsZero() {
			buf.WriteString("never")
		} else {
			buf.WriteString(nb.Until.UTC().Format(time.RFC3339Nano))
		}
		if nb.Reason != "" {
			buf.WriteByte(' ')
			buf.WriteString(strconv.Quote(nb.Reason))
		}
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// BanFile returns a [BanStore] that keeps the bans in the file at path, in
// the format of [ParseBans]. A missing file holds no bans. Saving writes a
// temporary file with mode 0600 in the same directory, syncs it and renames
// it over path, so a reader sees the old list or the new one.
func BanFile(path string) BanStore { return banFile{path: path} }

type banFile struct{ path string }

func (f banFile) LoadBans(ctx context.Context) ([]Ban, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	file, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	bans, err := ParseBans(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	return bans, nil
}

func (f banFile) SaveBans(ctx context.Context, bans []Ban) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := WriteBans(&buf, bans); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(buf.Bytes()); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}
