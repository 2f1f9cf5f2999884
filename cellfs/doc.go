// Package cellfs keeps an OpenClaw cell's state directory on disk only as
// ciphertext and serves it as plaintext through FUSE (go-fuse v2). The
// design follows gocryptfs (per-file header with a random 16-byte file ID,
// 4 KiB blocks each sealed with a random nonce and AD = header | block
// number, per-directory IV files, encrypted names, long-name side files)
// and differs where gocryptfs has known gaps:
//
//   - Truncation: every block's sealed payload carries a "final" flag and
//     its length, and a file always has at least one block (an empty file
//     has one final block of length 0). Cutting whole blocks off leaves a
//     last block without the flag, which fails; gocryptfs cannot see a
//     cut at a block boundary. Cost: when a file grows past its last
//     block, that block is resealed without the flag (one extra block
//     encryption, written in the same pwrite as the new blocks).
//   - Sizes: every block, the last included, is padded to 4 KiB, so the
//     ciphertext reveals sizes only to 4 KiB granularity (gocryptfs leaks
//     the exact size). Cost: stat decrypts the last block (cached per
//     inode), and a small file takes 4 KiB + 48 bytes on disk.
//   - Holes: growing writes encrypted zero blocks instead of holes, since
//     gocryptfs's all-zero holes are unauthenticated. Files are not sparse.
//   - Keys: a per-file key HKDF(generation key, salt=fileID) instead of one
//     content key, so the 2^32 random-nonce budget of AES-GCM is per file.
//     The volume key has generations (Options.Keys): new files use the
//     newest, the header names a file's generation, so a key rotation
//     reaches new files without rewriting old ones; gocryptfs has one
//     master key for the life of the volume. AES-256-GCM with AES
//     hardware, XChaCha20-Poly1305 otherwise, named per file in the header.
//   - Names: HMAC-SHA256 SIV + AES-256-CTR (see names.go) instead of EME;
//     no vetted EME/SIV library is in the module graph.
//   - Creation is atomic: files get their header in an O_TMPFILE before
//     being linked in, directories get their IV before being renamed in.
//
// Crash behaviour: a write is one pwrite of whole ciphertext blocks, so a
// killed server leaves the old or the new blocks. Grow and shrink are
// ordered so that the crash window between their two syscalls leaves a
// non-final block with the final flag, which readers accept (it enables
// nothing beyond whole-block rollback, which no per-block scheme detects).
// A torn block after power loss (the lower file system does not make a
// 4 KiB+ write atomic) reads as EIO and is reported as tampering, and it
// can damage bytes written before the last fsync that share the block:
// SQLite's "powersafe overwrite" assumption then does not hold. Use a lower
// file system with atomic/journaled data writes if that matters. fsync
// reaches the lower file's fsync.
//
// Not detected: rollback of a whole file or of single blocks to an older
// version of themselves, and swapping whole files (contents are not bound
// to paths, hard links make that impossible). Leaked: directory structure,
// file counts, name lengths to 16 bytes, sizes to 4 KiB, timestamps,
// ownership, modes, access patterns.
package cellfs
