package cellfs

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/clawhold/clawhold/keys"
)

// On-disk content format (see doc.go for the rationale):
//
//	header  = version(2, BE, =1) | algorithm(1) | reserved(1, =0) | fileID(16)
//	block i = nonce | AEAD(key_file, nonce, inner, AD = header | i(8, BE))
//	inner   = flags(1) | reserved(1) | len(2, BE) | data(BlockSize, zero padded)
//
// Every block, including the last, is padded to the full BlockSize, so the
// ciphertext length reveals the plaintext size only to BlockSize
// granularity. flags bit 0 marks the final block; a file always has at
// least one block (an empty file has one final block with len 0), so
// cutting any number of whole blocks off leaves a final block without the
// flag, which is detected.
const (
	// BlockSize is the plaintext payload of one block.
	BlockSize = 4096

	formatVersion = 1
	headerLen     = 20
	fileIDLen     = 16
	innerLen      = 4
	tagLen        = 16
	flagFinal     = 1

	// maxBlocksPerWrite bounds one pwrite when a write or truncate fills a
	// gap; larger growth is done in steps that each leave a valid file.
	maxBlocksPerWrite = 256
)

// File is one encrypted file opened through a Volume. Its methods are safe
// for concurrent use: reads share a lock, writes and truncates hold it
// exclusively around the read-modify-write of whole blocks.
type File struct {
	v    *Volume
	f    *os.File
	path string

	mu   sync.RWMutex
	hdr  [headerLen]byte
	aead cipher.AEAD
	cbs  int64 // ciphertext bytes per block
	size int64 // plaintext size
	// damaged is set when the final block did not authenticate at open:
	// the size is then unknown, so reads and writes fail until a Truncate
	// rewrites the end of the file.
	damaged error
}

// OpenFile opens an existing encrypted file. The caller keeps ownership of
// f only until Close, which closes it. f must be open for reading (and for
// writing, to write). A file whose header is missing or unreadable is an
// error wrapping ErrTampered; a bad final block is not (the size is then
// an estimate and reading that block fails), so that such a file can still
// be truncated or removed.
func (v *Volume) OpenFile(f *os.File) (*File, error) { return v.openFileAs(f, f.Name()) }

// openFileAs is OpenFile for a file that tamper reports and errors call
// name: the FUSE layer names files by their plaintext path in the volume,
// which is what an operator can act on.
func (v *Volume) openFileAs(f *os.File, name string) (*File, error) {
	fl := &File{v: v, f: f, path: name}
	n, err := f.ReadAt(fl.hdr[:], 0)
	if err != nil && !(errors.Is(err, io.EOF) && n == headerLen) {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %s: short header (%d bytes)", ErrTampered, fl.path, n)
			v.tamper(fl.path, -1, err)
		}
		return nil, fmt.Errorf("cellfs: read header of %s: %w", fl.path, err)
	}
	if err := fl.initCipher(); err != nil {
		v.tamper(fl.path, -1, err)
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cellfs: stat %s: %w", fl.path, err)
	}
	fl.size = fl.sizeFromDisk(st.Size())
	return fl, nil
}

// CreateFile turns f (which must be empty and writable) into a new empty
// encrypted file with a fresh random file ID, in a single write.
func (v *Volume) CreateFile(f *os.File) (*File, error) {
	fl := &File{v: v, f: f, path: f.Name()}
	binary.BigEndian.PutUint16(fl.hdr[0:2], formatVersion)
	fl.hdr[2] = byte(v.alg)
	fl.hdr[3] = byte(len(v.contents) - 1) // the newest key generation
	rand.Read(fl.hdr[4:headerLen])
	if err := fl.initCipher(); err != nil {
		return nil, err
	}
	buf := append([]byte(nil), fl.hdr[:]...)
	buf = fl.seal(buf, 0, make([]byte, BlockSize), 0, true)
	if _, err := f.WriteAt(buf, 0); err != nil {
		return nil, fmt.Errorf("cellfs: write header of %s: %w", fl.path, err)
	}
	return fl, nil
}

func (fl *File) initCipher() error {
	if v := binary.BigEndian.Uint16(fl.hdr[0:2]); v != formatVersion {
		return fmt.Errorf("%w: %s: unknown header version %d", ErrTampered, fl.path, v)
	}
	alg := keys.Algorithm(fl.hdr[2])
	a, err := fl.v.fileAEAD(alg, int(fl.hdr[3]), fl.hdr[4:headerLen])
	if err != nil {
		return fmt.Errorf("cellfs: %s: %w", fl.path, err)
	}
	fl.aead = a
	fl.cbs = int64(a.NonceSize() + innerLen + BlockSize + a.Overhead())
	return nil
}

// sizeFromDisk reads the final block to learn the exact plaintext size.
// On failure it reports tampering and estimates the size from the number
// of blocks, so that the damaged block itself reads as EIO.
func (fl *File) sizeFromDisk(csize int64) int64 {
	nb := (csize - headerLen + fl.cbs - 1) / fl.cbs
	if nb <= 0 {
		err := fmt.Errorf("%w: %s: no final block (truncated)", ErrTampered, fl.path)
		fl.v.tamper(fl.path, 0, err)
		fl.damaged = err
		return 0
	}
	last := nb - 1
	_, final, n, err := fl.readBlock(last)
	if err == nil && !final {
		err = fmt.Errorf("%w: %s: block %d is last but not marked final (truncated)", ErrTampered, fl.path, last)
		fl.v.tamper(fl.path, last, err)
	}
	if err != nil {
		fl.damaged = err
		return nb * BlockSize
	}
	return last*BlockSize + int64(n)
}

func (fl *File) cipherOff(i int64) int64 { return headerLen + i*fl.cbs }

// lastIdx is the index of the final block of a file of plaintext size s.
func lastIdx(s int64) int64 {
	if s == 0 {
		return 0
	}
	return (s - 1) / BlockSize
}

func (fl *File) ad(i int64) []byte {
	ad := make([]byte, headerLen+8)
	copy(ad, fl.hdr[:])
	binary.BigEndian.PutUint64(ad[headerLen:], uint64(i))
	return ad
}

// seal appends the ciphertext of block i to dst. data must be BlockSize
// long with everything past n zero.
func (fl *File) seal(dst []byte, i int64, data []byte, n int, final bool) []byte {
	ns := fl.aead.NonceSize()
	start := len(dst)
	dst = append(dst, make([]byte, ns)...)
	rand.Read(dst[start:])
	nonce := dst[start : start+ns]
	inner := make([]byte, innerLen, innerLen+BlockSize)
	if final {
		inner[0] = flagFinal
	}
	binary.BigEndian.PutUint16(inner[2:], uint16(n))
	inner = append(inner, data[:BlockSize]...)
	return fl.aead.Seal(dst, nonce, inner, fl.ad(i))
}

// open decrypts one ciphertext block in place, overwriting ct. It returns
// the BlockSize data area, the final flag and the payload length. ad is
// scratch space from fl.ad, reused across blocks to save an allocation each.
func (fl *File) open(ct []byte, i int64, ad []byte) ([]byte, bool, int, error) {
	ns := fl.aead.NonceSize()
	if int64(len(ct)) != fl.cbs {
		return nil, false, 0, fmt.Errorf("%w: %s: block %d is %d bytes, want %d", ErrTampered, fl.path, i, len(ct), fl.cbs)
	}
	binary.BigEndian.PutUint64(ad[headerLen:], uint64(i))
	inner, err := fl.aead.Open(ct[ns:ns], ct[:ns], ct[ns:], ad)
	if err != nil {
		return nil, false, 0, fmt.Errorf("%w: %s: block %d: %v", ErrTampered, fl.path, i, err)
	}
	n := int(binary.BigEndian.Uint16(inner[2:]))
	if len(inner) != innerLen+BlockSize || n > BlockSize {
		return nil, false, 0, fmt.Errorf("%w: %s: block %d: bad inner length", ErrTampered, fl.path, i)
	}
	return inner[innerLen:], inner[0]&flagFinal != 0, n, nil
}

// readBlock reads and decrypts block i, reporting failures.
func (fl *File) readBlock(i int64) ([]byte, bool, int, error) {
	ct := make([]byte, fl.cbs)
	m, err := fl.f.ReadAt(ct, fl.cipherOff(i))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, false, 0, fmt.Errorf("cellfs: read %s block %d: %w", fl.path, i, err)
	}
	data, final, n, err := fl.open(ct[:m], i, fl.ad(i))
	if err != nil {
		fl.v.tamper(fl.path, i, err)
	}
	return data, final, n, err
}

// checkBlock applies the position rules (see finalErr) and reports a
// violation.
func (fl *File) checkBlock(i int64, final bool, n int) error {
	err := fl.finalErr(i, final, n)
	if err != nil {
		fl.v.tamper(fl.path, i, err)
	}
	return err
}

// finalErr applies the position rules: the file's final block must carry
// the final flag and the expected length. A non-final block may carry the
// flag: that is the benign state left by a crash between the two steps of
// an extend or shrink, and accepting it enables nothing beyond the rollback
// of a whole block, which no per-block scheme can detect anyway.
func (fl *File) finalErr(i int64, final bool, n int) error {
	if i != lastIdx(fl.size) {
		return nil
	}
	if want := int(fl.size - i*BlockSize); !final || n != want {
		return fmt.Errorf("%w: %s: final block %d: final=%v len=%d, want final len=%d (truncated or reordered)",
			ErrTampered, fl.path, i, final, n, want)
	}
	return nil
}

// Size is the plaintext size.
func (fl *File) Size() int64 {
	fl.mu.RLock()
	defer fl.mu.RUnlock()
	return fl.size
}

// ReadAt implements io.ReaderAt over the plaintext.
func (fl *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("cellfs: read %s: negative offset", fl.path)
	}
	fl.mu.RLock()
	defer fl.mu.RUnlock()
	if fl.damaged != nil {
		return 0, fl.damaged
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), fl.size)
	if end <= off {
		return 0, nil
	}
	b0, b1 := off/BlockSize, (end-1)/BlockSize
	buf := fl.v.readBuf(b1-b0+1, fl.cbs)
	defer fl.v.putReadBuf(buf, fl.cbs)
	ct := *buf
	m, err := fl.f.ReadAt(ct, fl.cipherOff(b0))
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("cellfs: read %s: %w", fl.path, err)
	}
	if bad, err := fl.openRange(p, ct[:m], b0, b1, off, end); err != nil {
		fl.v.tamper(fl.path, bad, err)
		return int(max(bad*BlockSize-off, 0)), err
	}
	done := int(end - off)
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// parallelBlocks is the smallest read split across two goroutines; smaller
// reads (SQLite's pages) are not worth starting one.
const parallelBlocks = 16

// openRange authenticates and decrypts blocks b0..b1 in place in ct (the
// ciphertext from block b0 on) and copies the plaintext of [off, end) to p.
// A large range is split in two halves so that an idle core can decrypt
// one (FUSE sends a sequential read as 128 KiB requests, one or two at a
// time). Whichever goroutine claims the upper half first decrypts it, so a
// helper that gets no CPU in time costs only its start, never a wait. On failure
// it returns the lowest failing block and its error; every block of the
// range is authenticated before success is returned.
func (fl *File) openRange(p, ct []byte, b0, b1, off, end int64) (int64, error) {
	if b1-b0+1 < parallelBlocks {
		return fl.openBlocks(p, ct, b0, b0, b1, off, end)
	}
	mid := b0 + (b1-b0+1)/2
	var (
		claimed atomic.Bool
		done    = make(chan struct{})
		hiBad   int64
		hiErr   error
	)
	go func() {
		if claimed.CompareAndSwap(false, true) {
			hiBad, hiErr = fl.openBlocks(p, ct, b0, mid, b1, off, end)
			close(done)
		}
	}()
	bad, err := fl.openBlocks(p, ct, b0, b0, mid-1, off, end)
	if claimed.CompareAndSwap(false, true) {
		hiBad, hiErr = fl.openBlocks(p, ct, b0, mid, b1, off, end)
	} else {
		<-done
	}
	if err != nil {
		return bad, err
	}
	return hiBad, hiErr
}

// openBlocks is openRange for blocks from..to of a ct that starts at block
// b0; it stops at the first block that fails.
func (fl *File) openBlocks(p, ct []byte, b0, from, to, off, end int64) (int64, error) {
	ad := fl.ad(from)
	for i := from; i <= to; i++ {
		s := min((i-b0)*fl.cbs, int64(len(ct)))
		data, final, n, err := fl.open(ct[s:min(s+fl.cbs, int64(len(ct)))], i, ad)
		if err == nil {
			err = fl.finalErr(i, final, n)
		}
		if err != nil {
			return i, err
		}
		bs := i * BlockSize
		lo, hi := max(off, bs), min(end, bs+BlockSize)
		copy(p[lo-off:hi-off], data[lo-bs:hi-bs])
	}
	return 0, nil
}

// Read buffers are allocated for a whole FUSE read (128 KiB, 33 blocks
// when unaligned), so that small and large reads share them; larger ones
// come only from direct ReadAt callers and are not kept.
const (
	fuseReadBlocks   = 128<<10/BlockSize + 1
	pooledReadBlocks = 64
)

// readBuf returns a buffer for nb ciphertext blocks of cbs bytes from the
// volume's pool; the caller passes it to putReadBuf when done.
func (v *Volume) readBuf(nb, cbs int64) *[]byte {
	n := nb * cbs
	if b, ok := v.readBufs.Get().(*[]byte); ok && int64(cap(*b)) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(nb, fuseReadBlocks)*cbs)
	return &b
}

func (v *Volume) putReadBuf(b *[]byte, cbs int64) {
	if int64(cap(*b)) <= pooledReadBlocks*cbs {
		v.readBufs.Put(b)
	}
}

// WriteAt implements io.WriterAt. All affected blocks, including the old
// final block when the file grows (it must be resealed without the final
// flag) and zero blocks filling a gap, go out in one pwrite, so a killed
// process leaves either the old or the new file.
func (fl *File) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("cellfs: write %s: negative offset", fl.path)
	}
	if len(p) == 0 {
		return 0, nil
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.damaged != nil {
		return 0, fl.damaged
	}
	if off > fl.size && (off/BlockSize-lastIdx(fl.size)) > maxBlocksPerWrite {
		if err := fl.growLocked(off); err != nil {
			return 0, err
		}
	}
	if err := fl.writeLocked(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeLocked writes p at off (p may be empty when growing to off).
func (fl *File) writeLocked(p []byte, off int64) error {
	end := off + int64(len(p))
	oldSize := fl.size
	newSize := max(oldSize, end)
	oldLast, newLast := lastIdx(oldSize), lastIdx(newSize)
	first := off / BlockSize
	last := first
	if len(p) > 0 {
		last = (end - 1) / BlockSize
	}
	if newSize > oldSize {
		first = min(first, oldLast)
		last = newLast
	}
	buf := make([]byte, 0, (last-first+1)*fl.cbs)
	data := make([]byte, BlockSize)
	for i := first; i <= last; i++ {
		bs := i * BlockSize
		oldLen := min(max(oldSize-bs, 0), BlockSize)
		clear(data)
		if i <= oldLast && oldLen > 0 && !(off <= bs && end >= bs+oldLen) {
			old, final, n, err := fl.readBlock(i)
			if err != nil {
				return err
			}
			if err := fl.checkBlock(i, final, n); err != nil {
				return err
			}
			copy(data, old[:oldLen])
		}
		if lo, hi := max(off, bs), min(end, bs+BlockSize); lo < hi {
			copy(data[lo-bs:hi-bs], p[lo-off:hi-off])
		}
		n := int(min(newSize-bs, BlockSize))
		buf = fl.seal(buf, i, data, n, i == newLast)
	}
	if _, err := fl.f.WriteAt(buf, fl.cipherOff(first)); err != nil {
		return fmt.Errorf("cellfs: write %s blocks %d-%d: %w", fl.path, first, last, err)
	}
	fl.size = newSize
	return nil
}

// growLocked extends the file with zeros in steps of at most
// maxBlocksPerWrite blocks; each step is one pwrite and leaves a valid
// file, so a crash mid-way leaves a shorter, still readable file.
func (fl *File) growLocked(n int64) error {
	for fl.size < n {
		target := min(n, (lastIdx(fl.size)+maxBlocksPerWrite)*BlockSize)
		if target <= fl.size {
			target = n
		}
		if err := fl.writeLocked(nil, target); err != nil {
			return err
		}
	}
	return nil
}

// Truncate changes the plaintext size. Shrinking first reseals the new
// final block (same ciphertext length, since blocks are padded), then cuts
// the ciphertext: a crash between the two leaves the old size with a
// benign mid-file final flag. Growing writes encrypted zero blocks: the
// file is not sparse, by design (holes would be unauthenticated).
func (fl *File) Truncate(n int64) error {
	if n < 0 {
		return fmt.Errorf("cellfs: truncate %s: negative size", fl.path)
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.damaged != nil {
		if n > 0 {
			return fl.damaged
		}
		// Truncating a damaged file to zero repairs it.
		fl.size, fl.damaged = 1, nil
	}
	switch {
	case n == fl.size:
		return nil
	case n > fl.size:
		return fl.growLocked(n)
	}
	k := lastIdx(n)
	data := make([]byte, BlockSize)
	keep := int(n - k*BlockSize)
	if keep > 0 {
		old, final, m, err := fl.readBlock(k)
		if err != nil {
			return err
		}
		if err := fl.checkBlock(k, final, m); err != nil {
			return err
		}
		copy(data, old[:keep])
	}
	buf := fl.seal(nil, k, data, keep, true)
	if _, err := fl.f.WriteAt(buf, fl.cipherOff(k)); err != nil {
		return fmt.Errorf("cellfs: truncate %s: reseal block %d: %w", fl.path, k, err)
	}
	if err := fl.f.Truncate(fl.cipherOff(k + 1)); err != nil {
		return fmt.Errorf("cellfs: truncate %s: %w", fl.path, err)
	}
	fl.size = n
	return nil
}

// extend grows the file to n if it is shorter (fallocate).
func (fl *File) extend(n int64) error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.damaged != nil {
		return fl.damaged
	}
	if n <= fl.size {
		return nil
	}
	return fl.growLocked(n)
}

// Sync flushes the ciphertext to stable storage (fsync of the lower file).
func (fl *File) Sync() error {
	if err := fl.f.Sync(); err != nil {
		return fmt.Errorf("cellfs: fsync %s: %w", fl.path, err)
	}
	return nil
}

// Close closes the underlying file.
func (fl *File) Close() error {
	if err := fl.f.Close(); err != nil {
		return fmt.Errorf("cellfs: close %s: %w", fl.path, err)
	}
	return nil
}

// PlainSize reports the plaintext size of the encrypted file at path
// without keeping it open (used for stat).
func (v *Volume) plainSize(path, name string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fl, err := v.openFileAs(f, name)
	if err != nil {
		return 0, err
	}
	return fl.size, nil
}
