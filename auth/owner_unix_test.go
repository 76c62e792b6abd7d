//go:build unix

package auth_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec/auth"
)

// Rewriting a file the broker's user owns (as root does for a file that
// Mosquitto's packaging makes root:mosquitto 0640, or mosquitto:mosquitto
// 0600) keeps its owner, group and group read permission: a new root-only
// file would leave the running broker unable to reload it, with the old
// users still in force.
func TestPasswordFileWriteKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file another owner")
	}
	h, err := auth.ParseHash(fakeBcrypt)
	require.NoError(t, err)
	f := auth.NewPasswordFile()
	require.NoError(t, f.Set("alice", h))
	for _, tc := range []struct {
		name       string
		mode, want os.FileMode
	}{
		{"group readable", 0o640, 0o640},
		{"owner only", 0o600, 0o600},
		{"world readable", 0o644, 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "passwd")
			require.NoError(t, f.WriteFile(path))
			require.NoError(t, os.Chown(path, 4242, 4343))
			require.NoError(t, os.Chmod(path, tc.mode))
			require.NoError(t, f.WriteFile(path))
			st, err := os.Stat(path)
			require.NoError(t, err)
			sys := st.Sys().(*syscall.Stat_t)
			require.Equal(t, [2]uint32{4242, 4343}, [2]uint32{sys.Uid, sys.Gid}, "owner and group")
			require.Equal(t, tc.want, st.Mode().Perm())
		})
	}
}

// A symbolic link that another user planted (in a shared directory, say)
// is not followed: it could point the write at any file of the caller's.
func TestPasswordFileRefusesForeignSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the link another owner")
	}
	h, err := auth.ParseHash(fakeBcrypt)
	require.NoError(t, err)
	f := auth.NewPasswordFile()
	require.NoError(t, f.Set("alice", h))
	victim := filepath.Join(t.TempDir(), "victim")
	require.NoError(t, os.WriteFile(victim, []byte("precious\n"), 0o600))
	link := filepath.Join(t.TempDir(), "passwd")
	require.NoError(t, os.Symlink(victim, link))
	require.NoError(t, os.Lchown(link, 4242, 4242))

	require.Error(t, f.WriteFile(link))
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "precious\n", string(b))
	st, err := os.Lstat(link)
	require.NoError(t, err)
	require.NotZero(t, st.Mode()&os.ModeSymlink)
}

// Every hop is checked: the caller's own link that points at another
// user's link, and another user's link to a folder on the way, are refused
// as well as a foreign link at the end.
func TestPasswordFileRefusesForeignSymlinkHops(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the link another owner")
	}
	h, err := auth.ParseHash(fakeBcrypt)
	require.NoError(t, err)
	f := auth.NewPasswordFile()
	require.NoError(t, f.Set("alice", h))
	untouched := func(t *testing.T, victim string) {
		t.Helper()
		b, err := os.ReadFile(victim)
		require.NoError(t, err)
		require.Equal(t, "precious\n", string(b))
	}

	t.Run("second hop", func(t *testing.T) {
		victim := filepath.Join(t.TempDir(), "victim")
		require.NoError(t, os.WriteFile(victim, []byte("precious\n"), 0o600))
		shared := t.TempDir()
		foreign := filepath.Join(shared, "planted")
		require.NoError(t, os.Symlink(victim, foreign))
		require.NoError(t, os.Lchown(foreign, 4242, 4242))
		own := filepath.Join(t.TempDir(), "passwd")
		require.NoError(t, os.Symlink(foreign, own)) // the caller's link

		require.Error(t, f.WriteFile(own))
		untouched(t, victim)
	})
	t.Run("folder on the way", func(t *testing.T) {
		victimDir := t.TempDir()
		victim := filepath.Join(victimDir, "passwd")
		require.NoError(t, os.WriteFile(victim, []byte("precious\n"), 0o600))
		shared := t.TempDir()
		dirLink := filepath.Join(shared, "conf")
		require.NoError(t, os.Symlink(victimDir, dirLink))
		require.NoError(t, os.Lchown(dirLink, 4242, 4242))

		require.Error(t, f.WriteFile(filepath.Join(dirLink, "passwd")))
		untouched(t, victim)
	})
	t.Run("own chain is followed", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "real")
		require.NoError(t, os.WriteFile(target, []byte("old\n"), 0o600))
		require.NoError(t, os.Symlink("real", filepath.Join(dir, "hop")))
		require.NoError(t, os.Symlink(filepath.Join(dir, "hop"), filepath.Join(dir, "passwd")))
		require.NoError(t, f.WriteFile(filepath.Join(dir, "passwd")))
		back, err := auth.LoadPasswordFile(target)
		require.NoError(t, err)
		require.Equal(t, []string{"alice"}, back.Users())
		st, err := os.Lstat(filepath.Join(dir, "passwd"))
		require.NoError(t, err)
		require.NotZero(t, st.Mode()&os.ModeSymlink, "the links are kept")
	})
}
