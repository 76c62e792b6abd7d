package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/config"
)

// TestCheckPermissions checks which file modes Check refuses: secrets
// readable by others, any file writable by its group or others; and that
// insecure_file_permissions accepts them.
func TestCheckPermissions(t *testing.T) {
	for _, tc := range []struct {
		name             string
		passwd, acl      os.FileMode
		want             string // "" means accepted
		insecureAccepted bool
	}{
		{"private", 0o600, 0o644, "", false},
		{"group may read the secret", 0o640, 0o640, "", false},
		{"secret readable by all", 0o644, 0o644, "m.yaml:2: auth.password_file: DIR/passwd is readable by every user (mode 0644); fix it (chmod 0640)", true},
		{"secret writable by group", 0o660, 0o644, "m.yaml:2: auth.password_file: DIR/passwd is writable by its group (mode 0660); fix it (chmod 0640)", true},
		{"policy writable by group", 0o600, 0o664, "m.yaml:3: acl.acl_file: DIR/aclfile is writable by its group (mode 0664); fix it (chmod 0644)", true},
		{"policy writable by all", 0o600, 0o646, "m.yaml:3: acl.acl_file: DIR/aclfile is writable by every user (mode 0646); fix it (chmod 0644)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "passwd", "", tc.passwd)
			write(t, dir, "aclfile", "", tc.acl)
			doc := "listeners: [{address: \"127.0.0.1:0\"}]\nauth: {password_file: passwd}\nacl: {acl_file: aclfile}\n"
			f, err := config.Parse([]byte(doc), filepath.Join(dir, "m.yaml"))
			require.NoError(t, err)
			err = f.Check()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, config.ErrPermissions)
			require.ErrorContains(t, err, replaceDir(tc.want, dir))
			f, err = config.Parse([]byte(doc+"insecure_file_permissions: true\n"), filepath.Join(dir, "m.yaml"))
			require.NoError(t, err)
			require.NoError(t, f.Check())
			require.Contains(t, f.Insecure(), "insecure_file_permissions: files others may read or change are accepted")
		})
	}
}

// TestCheckFiles checks missing files, folders and links.
func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "passwd", "", 0o600)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "folder"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(dir, "passwd"), filepath.Join(dir, "link")))
	require.NoError(t, os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "dangling")))
	for _, tc := range []struct{ passwd, acl, want string }{
		{"link", "passwd", ""},
		{"passwd", "missing", "m.yaml:3: acl.acl_file: no such file: DIR/missing"},
		{"passwd", "folder", "m.yaml:3: acl.acl_file: DIR/folder is not a regular file"},
		{"dangling", "passwd", "m.yaml:2: auth.password_file: no such file: DIR/dangling"},
	} {
		doc := "listeners: [{address: \"127.0.0.1:0\"}]\nauth: {password_file: " + tc.passwd + "}\nacl: {acl_file: " + tc.acl + "}\n"
		f, err := config.Parse([]byte(doc), filepath.Join(dir, "m.yaml"))
		require.NoError(t, err)
		err = f.Check()
		if tc.want == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorIs(t, err, config.ErrFile)
		require.ErrorContains(t, err, replaceDir(tc.want, dir))
	}
}

func write(t *testing.T, dir, name, data string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(data), mode))
	require.NoError(t, os.Chmod(p, mode))
	return p
}

// replaceDir puts dir in place of "DIR" and the configuration's path in
// place of "m.yaml".
func replaceDir(s, dir string) string {
	s = strings.ReplaceAll(s, "DIR", dir)
	return strings.Replace(s, "m.yaml", filepath.Join(dir, "m.yaml"), 1)
}

// TestCheckOwner refuses a file that belongs to another user (who could
// rewrite it), unless insecure_file_permissions is set.
func TestCheckOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	dir := t.TempDir()
	write(t, dir, "passwd", "", 0o600)
	p := write(t, dir, "aclfile", "", 0o644)
	require.NoError(t, os.Chown(p, 65534, 65534))
	doc := "listeners: [{address: \"127.0.0.1:0\"}]\nauth: {password_file: passwd}\nacl: {acl_file: aclfile}\n"
	f, err := config.Parse([]byte(doc), filepath.Join(dir, "m.yaml"))
	require.NoError(t, err)
	err = f.Check()
	require.ErrorIs(t, err, config.ErrPermissions)
	require.ErrorContains(t, err, "m.yaml:3: acl.acl_file: "+p+" belongs to user ")
	f, err = config.Parse([]byte(doc+"insecure_file_permissions: true\n"), filepath.Join(dir, "m.yaml"))
	require.NoError(t, err)
	require.NoError(t, f.Check())
}

// TestCheckConfigFile refuses a configuration file others may change: they
// could set its insecure switches.
func TestCheckConfigFile(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "passwd", "", 0o600)
	write(t, dir, "aclfile", "", 0o644)
	p := write(t, dir, "m.yaml", "listeners: [{address: \"127.0.0.1:0\"}]\nauth: {password_file: passwd}\nacl: {acl_file: aclfile}\n", 0o666)
	f, err := config.Load(p)
	require.NoError(t, err)
	err = f.Check()
	require.ErrorIs(t, err, config.ErrPermissions)
	require.ErrorContains(t, err, p+": "+p+" is writable by every user (mode 0666); fix it (chmod 0644)")
	require.NoError(t, os.Chmod(p, 0o644))
	f, err = config.Load(p)
	require.NoError(t, err)
	require.NoError(t, f.Check())
}
