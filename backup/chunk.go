package backup

import (
	"bufio"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// sealed is what sealing one file produced.
type sealed struct {
	size, blobSize  int64
	sha256, blobSum string
	chunks          int64
}

// sealStream reads r to its end and writes it to w as sealed chunks bound
// to (id, path). Only plaintext is hashed into sha256, only w's bytes into
// blobSum.
func sealStream(a cipher.AEAD, random io.Reader, id, path string, chunk int, r io.Reader, w io.Writer) (sealed, error) {
	var out sealed
	br := bufio.NewReaderSize(r, chunk)
	plain := make([]byte, chunk)
	defer clear(plain)
	buf := make([]byte, 0, nonceSize+chunk+tagSize)
	ph, bh := sha256.New(), sha256.New()
	bw := io.MultiWriter(w, bh)
	for index := uint64(0); ; index++ {
		n, err := io.ReadFull(br, plain)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return out, fmt.Errorf("reading %s: %w", path, err)
		}
		// The chunk is the last one when the source has nothing more; a
		// full chunk needs a peek to know.
		last := n < chunk
		if !last {
			if _, perr := br.Peek(1); perr == io.EOF {
				last = true
			} else if perr != nil {
				return out, fmt.Errorf("reading %s: %w", path, perr)
			}
		}
		buf = buf[:nonceSize]
		if _, err := io.ReadFull(random, buf); err != nil {
			return out, fmt.Errorf("reading a nonce: %w", err)
		}
		buf = a.Seal(buf, buf[:nonceSize], plain[:n], chunkAAD(id, path, index, last))
		if _, err := bw.Write(buf); err != nil {
			return out, fmt.Errorf("writing the blob of %s: %w", path, err)
		}
		ph.Write(plain[:n])
		out.size += int64(n)
		out.blobSize += int64(len(buf))
		out.chunks++
		if last {
			break
		}
	}
	out.sha256 = hex.EncodeToString(ph.Sum(nil))
	out.blobSum = hex.EncodeToString(bh.Sum(nil))
	return out, nil
}

// corrupt wraps ErrCorrupt with the entry at fault.
func corrupt(e Entry, format string, args ...any) error {
	return fmt.Errorf("%w: %s (%s): %s", ErrCorrupt, e.Path, e.Blob, fmt.Sprintf(format, args...))
}

// openStream reads e's sealed blob from r and writes its plaintext to w,
// chunk by chunk, each authenticated before it is written. It fails with
// ErrCorrupt, naming e, on any mismatch: a chunk that does not
// authenticate, a blob of the wrong size, a hash that differs. w sees only
// authenticated chunks, but the caller must discard what it wrote when
// openStream fails, since the file as a whole was not verified.
func openStream(a cipher.AEAD, id string, chunk int, e Entry, r io.Reader, w io.Writer) error {
	if e.Size < 0 || e.BlobSize != sealedSize(e.Size, chunk) {
		return corrupt(e, "the manifest gives inconsistent sizes")
	}
	bh := sha256.New()
	src := io.TeeReader(io.LimitReader(r, e.BlobSize), bh)
	var ph hash.Hash = sha256.New()
	n := chunkCount(e.Size, chunk)
	buf := make([]byte, nonceSize+chunk+tagSize)
	var plain []byte
	defer func() { clear(plain) }()
	remaining := e.Size
	for index := int64(0); index < n; index++ {
		want := int64(chunk)
		if remaining < want {
			want = remaining
		}
		b := buf[:nonceSize+want+tagSize]
		if _, err := io.ReadFull(src, b); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return corrupt(e, "the blob is truncated in chunk %d of %d", index+1, n)
			}
			return fmt.Errorf("reading the blob of %s: %w", e.Path, err)
		}
		var err error
		plain, err = a.Open(plain[:0], b[:nonceSize], b[nonceSize:], chunkAAD(id, e.Path, uint64(index), index == n-1))
		if err != nil {
			return corrupt(e, "chunk %d of %d fails authentication", index+1, n)
		}
		ph.Write(plain)
		if _, err := w.Write(plain); err != nil {
			return fmt.Errorf("writing %s: %w", e.Path, err)
		}
		remaining -= want
	}
	// Anything after the last chunk is an addition.
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k > 0 {
		return corrupt(e, "the blob has bytes after its last chunk")
	}
	if got := hex.EncodeToString(bh.Sum(nil)); got != e.BlobSHA256 {
		return corrupt(e, "the blob's SHA-256 differs from the manifest")
	}
	if got := hex.EncodeToString(ph.Sum(nil)); got != e.SHA256 {
		return corrupt(e, "the plaintext's SHA-256 differs from the manifest")
	}
	return nil
}
