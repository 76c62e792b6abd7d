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
