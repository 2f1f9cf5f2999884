package cellfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CipherPath returns where the file at rel (a slash-separated path inside
// the volume, as the mount shows it) is stored under cipherDir. It reads
// only directory IVs, so it works without a mount: an operator answering
// a tamper event ("which file on disk do I restore?") and tests that
// damage a chosen file need it.
func (v *Volume) CipherPath(cipherDir, rel string) (string, error) {
	p := cipherDir
	for _, name := range strings.Split(strings.Trim(filepath.ToSlash(rel), "/"), "/") {
		iv, err := os.ReadFile(filepath.Join(p, dirIVName))
		if err != nil {
			return "", fmt.Errorf("cellfs: directory IV of %s: %w", p, err)
		}
		enc, err := v.EncryptName(iv, name)
		if err != nil {
			return "", err
		}
		lower, _ := lowerName(enc)
		p = filepath.Join(p, lower)
	}
	return p, nil
}

// Block returns where ciphertext block i of the content file at path
// lies: its offset and length on disk (the length depends on the file's
// algorithm, named in its header). Forensics and tamper tests need it.
func (v *Volume) Block(path string, i int64) (off, n int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("cellfs: %w", err)
	}
	fl, err := v.OpenFile(f)
	if err != nil {
		f.Close()
		return 0, 0, err
	}
	defer fl.Close()
	return fl.cipherOff(i), fl.cbs, nil
}
