//go:build !unix

package auth

import "os"

// keepOwner does nothing where files have no Unix owner and group.
func keepOwner(*os.File, os.FileInfo) bool { return false }
