package lint

import (
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
)

// memFS is a fileSystem over a map, so that fuzzing never reads the
// machine's files (a fuzzed configuration names any path it likes).
type memFS map[string]string

func (m memFS) readFile(p string) ([]byte, error) {
	if s, ok := m[p]; ok {
		return []byte(s), nil
	}
	return nil, fs.ErrNotExist
}

func (m memFS) readDir(dir string) ([]string, error) {
	var out []string
	for p := range m {
		if path.Dir(p) == dir {
			out = append(out, path.Base(p))
		}
	}
	if out == nil {
		return nil, fs.ErrNotExist
	}
	return out, nil
}

func (m memFS) mode(p string) (fs.FileMode, error) {
	if _, ok := m[p]; ok {
		return 0o600, nil
	}
	return 0, fs.ErrNotExist
}

// FuzzParseConf parses arbitrary configurations and lints them with the
// files they reference, and checks what parseConf promises: every
// directive comes from a line of the input, with a key that is neither
// empty, a comment nor white space, and a value without surrounding white
// space; linting never panics, every finding names a known rule, a file
// and a line within it.
func FuzzParseConf(f *testing.F) {
	for _, name := range []string{"testdata/weak/mosquitto.conf", "testdata/good/mosquitto.conf", "testdata/perlistener/mosquitto.conf"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("listener 1883\r\n  allow_anonymous   true  \n#x\n\n")
	f.Add("include_dir d\nacl_file a\npassword_file p\n")
	f.Add("connection\naddress\nbridge_insecure\nlistener\nport\n")
	f.Add("per_listener_settings true\nallow_anonymous true\nlistener 0 /tmp/s\nmax_connections -1\n")
	f.Fuzz(func(t *testing.T, conf string) {
		lines := strings.Split(conf, "\n")
		for _, d := range parseConf("c.conf", []byte(conf)) {
			if d.line < 1 || d.line > len(lines) {
				t.Fatalf("line %d of %d", d.line, len(lines))
			}
			if d.key == "" || d.key[0] == '#' || strings.ContainsAny(d.key, " \t") {
				t.Fatalf("bad key %q", d.key)
			}
			if strings.Trim(d.value, " \t") != d.value {
				t.Fatalf("untrimmed value %q", d.value)
			}
			if !strings.Contains(lines[d.line-1], d.key) {
				t.Fatalf("key %q not on line %d", d.key, d.line)
			}
		}
		// The same text as every referenced file too: acl_file, password
		// file and include_dir all lead back to fuzzed content.
		m := memFS{"c.conf": conf, "a": conf, "p": conf, "d/x.conf": conf}
		l := newLinter(m)
		if err := l.mosquittoConf("c.conf", []byte(conf)); err != nil {
			t.Fatal(err)
		}
		l.read("p")
		l.read("a")
		l.passwordFile("p", []byte(conf))
		_ = l.mosquittoACL("a", []byte(conf), aclContext{fromConf: true})
		_ = l.casbinPolicy("a", []byte(conf))
		rep := l.report()
		for _, fd := range rep.Findings {
			if _, ok := rules[fd.ID]; !ok {
				t.Fatalf("unknown rule %q", fd.ID)
			}
			if !slices.Contains(rep.Files, fd.File) && fd.File != "c.conf" {
				t.Fatalf("finding in unread file %q", fd.File)
			}
			if n := len(strings.Split(m[fd.File], "\n")); fd.Line < 0 || fd.Line > n {
				t.Fatalf("%s line %d of %d", fd.File, fd.Line, n)
			}
		}
	})
}
