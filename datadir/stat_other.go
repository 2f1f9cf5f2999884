//go:build !unix

package datadir

import "io/fs"

// fileUID reports that ownership is unknown: clawhold's checks need Unix
// file ownership, so every check fails closed here.
func fileUID(fs.FileInfo) (uid int, ok bool) {
	return 0, false
}
