//go:build unix

package config

import (
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// foreignOwner returns the owner of a file that belongs neither to root
// nor to the effective user, and whether it does.
func foreignOwner(st fs.FileInfo) (string, bool) {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok || s.Uid == 0 || int(s.Uid) == os.Geteuid() {
		return "", false
	}
	id := strconv.FormatUint(uint64(s.Uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return strconv.Quote(u.Username), true
	}
	return id, true
}

// checkModes is true where permission bits mean what Check expects.
const checkModes = true
