//go:build !unix

package config

import "io/fs"

// foreignOwner reports no owner where file ownership is not Unix's.
func foreignOwner(fs.FileInfo) (string, bool) { return "", false }

// checkModes is false where permission bits are not Unix's (Windows).
const checkModes = false
