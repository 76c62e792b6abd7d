//go:build unix

package auth

import (
	"os"
	"syscall"
)

// keepOwner gives tmp the owner and group of old, the file it replaces, as
// far as the caller is allowed to, and reports whether tmp now has old's
// group.
func keepOwner(tmp *os.File, old os.FileInfo) bool {
	st, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	if tmp.Chown(int(st.Uid), int(st.Gid)) == nil {
		return true
	}
	return tmp.Chown(-1, int(st.Gid)) == nil
}

// trustedLink reports whether the symbolic link described by link (from
// Lstat) may be followed for writing: it belongs to the caller or to root.
// Like the kernel's protected_symlinks, this stops another user's link in a
// shared directory from redirecting the write to a file of the caller's.
func trustedLink(link os.FileInfo) bool {
	st, ok := link.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return st.Uid == 0 || int(st.Uid) == os.Geteuid()
}
