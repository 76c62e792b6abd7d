package lint_test

import (
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/lint"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// copyTree copies testdata/name into a temporary folder, with mode
// secretMode for key and password files and 0600 for the others (git
// does not keep modes), and returns the folder.
func copyTree(t *testing.T, name string, secretMode fs.FileMode) string {
	t.Helper()
	src := filepath.Join("testdata", name)
	dst := t.TempDir()
	require.NoError(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o600)
		if strings.HasSuffix(p, ".key") || filepath.Base(p) == "passwd" {
			mode = secretMode
		}
		if err := os.WriteFile(out, data, mode); err != nil {
			return err
		}
		return os.Chmod(out, mode)
	}))
	return dst
}

// TestGolden lints the fixtures in testdata and compares the JSON report
// with testdata/NAME.golden.json (go test -run TestGolden -update
// rewrites them; review the diff).
func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name       string
		files      []string
		secretMode fs.FileMode
	}{
		{"weak", []string{"mosquitto.conf"}, 0o644},
		{"good", []string{"mosquitto.conf"}, 0o600},
		{"perlistener", []string{"mosquitto.conf"}, 0o600},
		{"standalone", []string{"policy.csv", "acl_file", "passwd"}, 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden, err := filepath.Abs(filepath.Join("testdata", tc.name+".golden.json"))
			require.NoError(t, err)
			dir := copyTree(t, tc.name, tc.secretMode)
			t.Chdir(dir)
			rep, err := lint.Files(tc.files, lint.Options{})
			require.NoError(t, err)
			got, err := json.MarshalIndent(rep, "", "  ")
			require.NoError(t, err)
			got = append(got, '\n')
			if *update {
				require.NoError(t, os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
			for _, f := range rep.Findings {
				require.Equal(t, lint.StatusFail, f.Status)
				// Passwords, and pieces of the fixtures' hashes and salts.
				for _, secret := range []string{"hunter2", "not-a-real-secret", "sJZj8k", "MDEyMzQ1", "PI4xvhv8", "34EWwucX", "1rD0kSYK"} {
					require.NotContains(t, f.Evidence, secret, "%s:%d %s leaks a secret", f.File, f.Line, f.ID)
				}
			}
		})
	}
}

// TestWeakFindings names the findings the issue requires of a weak
// configuration, so that a golden file rewritten carelessly cannot drop
// one.
func TestWeakFindings(t *testing.T) {
	t.Chdir(copyTree(t, "weak", 0o644))
	rep, err := lint.Files([]string{"mosquitto.conf"}, lint.Options{})
	require.NoError(t, err)
	type at struct {
		file string
		line int
	}
	got := map[string][]at{}
	for _, f := range rep.Findings {
		got[f.ID] = append(got[f.ID], at{f.File, f.Line})
	}
	for id, want := range map[string][]at{
		"allow-anonymous":              {{"mosquitto.conf", 3}},
		"plaintext-listener":           {{"mosquitto.conf", 9}, {filepath.Join("conf.d", "10-local.conf"), 5}},
		"tls-version":                  {{"mosquitto.conf", 14}, {"mosquitto.conf", 32}},
		"tls-ciphers":                  {{"mosquitto.conf", 15}},
		"identity-without-certificate": {{"mosquitto.conf", 16}},
		"retain-source-unchecked":      {{"mosquitto.conf", 6}},
		"bridge-no-ca":                 {{"mosquitto.conf", 22}},
		"bridge-plaintext-password":    {{"mosquitto.conf", 25}},
		"bridge-insecure":              {{"mosquitto.conf", 31}},
		"bridge-plaintext":             {{"mosquitto.conf", 21}, {"mosquitto.conf", 35}},
		"bridge-invalid":               {{"mosquitto.conf", 28}},
		"anonymous-wildcard-acl":       {{"acl", 2}},
		"clientid-pattern-unbound":     {{"acl", 8}},
		"pattern-without-placeholder":  {{"acl", 9}},
		"acl-shadowed":                 {{"acl", 3}, {"acl", 7}},
		"password-not-hashed":          {{"passwd", 1}, {"passwd", 7}},
		"weak-password-hash":           {{"passwd", 2}, {"passwd", 3}, {"passwd", 4}, {"passwd", 5}},
		"world-readable-file":          {{"mosquitto.conf", 4}, {"mosquitto.conf", 13}, {"mosquitto.conf", 23}},
		"no-connection-limit":          {{"mosquitto.conf", 9}, {"mosquitto.conf", 11}, {filepath.Join("conf.d", "10-local.conf"), 5}},
		"no-message-size-limit":        {{"mosquitto.conf", 0}},
		"no-queue-limit":               {{"mosquitto.conf", 0}},
		"no-keepalive-limit":           nil, // conf.d sets max_keepalive
		"no-acl":                       nil, // there is an acl_file
	} {
		require.ElementsMatch(t, want, got[id], id)
	}
	require.Equal(t, []string{"mosquitto.conf", filepath.Join("conf.d", "10-local.conf"), "passwd", "acl"}, rep.Files)
}

func TestGoodHasNoFindings(t *testing.T) {
	t.Chdir(copyTree(t, "good", 0o600))
	rep, err := lint.Files([]string{"mosquitto.conf"}, lint.Options{})
	require.NoError(t, err)
	require.Empty(t, rep.Findings)
}

func TestFormats(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	yaml := write("mqttsec.yaml", "listeners: []\n")
	_, err := lint.Files([]string{yaml}, lint.Options{})
	require.ErrorIs(t, err, lint.ErrFormat)

	unknown := write("notes.txt", "hello world\n")
	_, err = lint.Files([]string{unknown}, lint.Options{})
	require.ErrorIs(t, err, lint.ErrFormat)
	_, err = lint.Files([]string{unknown}, lint.Options{Format: "nginx"})
	require.ErrorIs(t, err, lint.ErrFormat)

	// A Mosquitto "user" line alone is an acl_file, with other keys a
	// configuration.
	acl := write("a", "user alice\ntopic read x/#\n")
	conf := write("b", "user mosquitto\nlistener 1883\n")
	rep, err := lint.Files([]string{acl, conf}, lint.Options{})
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, f := range rep.Findings {
		ids[f.ID] = true
	}
	require.True(t, ids["plaintext-listener"], "%+v", rep.Findings)

	// A file given that does not parse is an error naming it.
	bad := write("bad_acl", "topic read a/#/b\n")
	_, err = lint.Files([]string{bad}, lint.Options{Format: "mosquitto-acl"})
	require.ErrorContains(t, err, "bad_acl")

	_, err = lint.Files([]string{filepath.Join(dir, "missing.conf")}, lint.Options{})
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.Equal(t, []string{"mosquitto", "mosquitto-passwd", "mosquitto-acl", "casbin"}, lint.Formats())
}

// TestReferencedErrors: files a configuration names but that are missing
// or do not parse are findings at the line that names them, and an
// include_dir cycle ends.
func TestReferencedErrors(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "acl"), []byte("topic sideways x\n"), 0o600))
	conf := filepath.Join(dir, "mosquitto.conf")
	require.NoError(t, os.WriteFile(conf, []byte("include_dir .\npassword_file nowhere\nacl_file acl\ninclude_dir missing.d\n"), 0o600))
	rep, err := lint.Files([]string{conf}, lint.Options{})
	require.NoError(t, err)
	var lines []int
	for _, f := range rep.Findings {
		if f.ID == "file-error" {
			lines = append(lines, f.Line)
		}
	}
	require.Equal(t, []int{2, 3, 4}, lines, "%+v", rep.Findings)
}

func TestRules(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range lint.Rules() {
		require.False(t, seen[r.ID])
		seen[r.ID] = true
		require.NotEmpty(t, r.Title)
		require.NotEmpty(t, r.Remediation)
	}
	// The IDs the contract promises.
	for _, id := range []string{"allow-anonymous", "plaintext-listener", "tls-version", "bridge-insecure",
		"bridge-plaintext-password", "no-acl", "anonymous-wildcard-acl", "weak-password-hash"} {
		require.True(t, seen[id], id)
	}
}
