package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/keys"
)

// newKey returns 32 random bytes and their base64 encoding.
func newKey(t *testing.T) ([]byte, string) {
	t.Helper()
	k := make([]byte, KeySize)
	rand.Read(k)
	return k, base64.StdEncoding.EncodeToString(k)
}

// writeKeyFile writes key, base64-encoded, to a new file in a fresh
// directory with the given mode.
func writeKeyFile(t *testing.T, key []byte, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "root.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
	return path
}

// assertNoSecret fails if err's message contains any secret, or its base64,
// base64url or hex encodings.
func assertNoSecret(t *testing.T, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	msg := err.Error()
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		for _, enc := range []string{
			string(s),
			base64.StdEncoding.EncodeToString(s),
			base64.RawStdEncoding.EncodeToString(s),
			base64.URLEncoding.EncodeToString(s),
			base64.RawURLEncoding.EncodeToString(s),
			hex.EncodeToString(s),
			strings.ToUpper(hex.EncodeToString(s)),
		} {
			if strings.Contains(msg, enc) {
				t.Fatalf("error message contains secret material (len %d)", len(s))
			}
		}
	}
}

// exerciseRoot checks the keys.Root contract on r: round trip, aad binding,
// tamper detection, nonce freshness. secrets must never show in errors.
func exerciseRoot(t *testing.T, r keys.Root, secrets ...[]byte) {
	t.Helper()
	ctx := context.Background()
	dek := make([]byte, 32)
	rand.Read(dek)
	secrets = append(secrets, dek)
	aad := []byte("clawhold keyring v1 tenant=acme version=7")

	w, err := r.Wrap(ctx, dek, aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	if bytes.Contains(w, dek) {
		t.Fatal("wrapped key contains the plaintext")
	}
	got, err := r.Unwrap(ctx, w, aad)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, dek) {
		t.Fatal("Unwrap returned different bytes than were wrapped")
	}

	w2, err := r.Wrap(ctx, dek, aad)
	if err != nil {
		t.Fatalf("second Wrap: %v", err)
	}
	if bytes.Equal(w, w2) {
		t.Fatal("two Wraps of the same key are identical: nonce reuse")
	}

	// Empty aad round-trips too, and is not interchangeable with a non-empty one.
	w0, err := r.Wrap(ctx, dek, nil)
	if err != nil {
		t.Fatalf("Wrap without aad: %v", err)
	}
	if got, err := r.Unwrap(ctx, w0, nil); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap without aad: %v", err)
	}

	bad := []struct {
		name    string
		wrapped []byte
		aad     []byte
	}{
		{"wrong aad", w, []byte("clawhold keyring v1 tenant=acme version=8")},
		{"missing aad", w, nil},
		{"aad added", w0, aad},
		{"truncated", w[:len(w)-1], aad},
		{"empty", nil, aad},
		{"version byte", flip(w, 0), aad},
		{"second byte", flip(w, 1), aad},
		// Not the middle: local-kms stores the key ARN unauthenticated at
		// the front of its ciphertext blob and ignores it when KeyId is given.
		{"ciphertext byte", flip(w, len(w)-20), aad},
		{"last byte", flip(w, len(w)-1), aad},
		{"extended", append(bytes.Clone(w), 0), aad},
	}
	for _, tc := range bad {
		got, err := r.Unwrap(ctx, tc.wrapped, tc.aad)
		if err == nil {
			t.Errorf("%s: Unwrap succeeded, want error", tc.name)
			continue
		}
		if got != nil {
			t.Errorf("%s: Unwrap returned bytes with its error", tc.name)
		}
		if !strings.Contains(err.Error(), r.ID()) {
			t.Errorf("%s: error %q does not name the root key", tc.name, err)
		}
		assertNoSecret(t, err, secrets...)
	}
}

// flip returns a copy of b with byte i changed. For printable bytes (the
// Vault transit ciphertext is text) it stays printable.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	switch {
	case c[i] >= 'a' && c[i] < 'z', c[i] >= 'A' && c[i] < 'Z', c[i] >= '0' && c[i] < '9':
		c[i]++
	case c[i] == 'z', c[i] == 'Z', c[i] == '9':
		c[i]--
	default:
		c[i] ^= 0x01
	}
	return c
}

func TestLocalBackends(t *testing.T) {
	key, b64 := newKey(t)
	fp := fingerprint(key)

	credDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(credDir, "raw"), key, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(credDir, DefaultSystemdCredential), []byte(b64+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	keyFile := writeKeyFile(t, key, 0o600)
	readOnly := writeKeyFile(t, key, 0o400)
	dataDir := filepath.Dir(keyFile)

	tests := []struct {
		name   string
		rk     config.RootKey
		env    map[string]string
		wantID string
	}{
		{"file default path", config.RootKey{}, nil, "file:" + keyFile + "#" + fp},
		{"file explicit", config.RootKey{Backend: "file", File: keyFile}, nil, "file:" + keyFile + "#" + fp},
		{"file mode 0400", config.RootKey{Backend: "file", File: readOnly}, nil, "file:" + readOnly + "#" + fp},
		{"env default", config.RootKey{Backend: "env"}, map[string]string{DefaultEnv: b64}, "env:CLAWHOLD_ROOT_KEY#" + fp},
		{"env named", config.RootKey{Backend: "env", Env: "MY_KEK"}, map[string]string{"MY_KEK": b64 + "\n"}, "env:MY_KEK#" + fp},
		{"systemd base64", config.RootKey{Backend: "systemd-credential"}, map[string]string{"CREDENTIALS_DIRECTORY": credDir}, "systemd-credential:clawhold-root-key#" + fp},
		{"systemd raw", config.RootKey{Backend: "systemd-credential", SystemdCredential: "raw"}, map[string]string{"CREDENTIALS_DIRECTORY": credDir}, "systemd-credential:raw#" + fp},
	}
	var wrapped [][]byte
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			r, err := Open(context.Background(), tc.rk, dataDir)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if r.ID() != tc.wantID {
				t.Errorf("ID = %q, want %q", r.ID(), tc.wantID)
			}
			if !regexp.MustCompile(`#[0-9a-f]{8}$`).MatchString(r.ID()) {
				t.Errorf("ID %q has no 8-hex-digit fingerprint", r.ID())
			}
			assertNoSecret(t, errors.New(r.ID()), key)
			exerciseRoot(t, r, key)
			w, err := r.Wrap(context.Background(), []byte("shared"), []byte("aad"))
			if err != nil {
				t.Fatal(err)
			}
			wrapped = append(wrapped, w)
		})
	}

	// Every backend holds the same key, so each opens what the others wrapped.
	r, err := OpenFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range wrapped {
		if got, err := r.Unwrap(context.Background(), w, []byte("aad")); err != nil || string(got) != "shared" {
			t.Errorf("%s: wrapped key not interchangeable: %v", tests[i].name, err)
		}
	}
}

func TestLocalFormat(t *testing.T) {
	key, _ := newKey(t)
	r, err := newLocal("test:x", bytes.Clone(key))
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.Wrap(context.Background(), make([]byte, 32), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w[0] != 1 {
		t.Errorf("version byte = %d, want 1", w[0])
	}
	if want := 1 + 12 + 32 + 16; len(w) != want {
		t.Errorf("wrapped length = %d, want %d (version+nonce+ciphertext+tag)", len(w), want)
	}
}

func TestLocalWrongKey(t *testing.T) {
	k1, _ := newKey(t)
	k2, _ := newKey(t)
	r1, err := newLocal("test:1", bytes.Clone(k1))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := newLocal("test:2", bytes.Clone(k2))
	if err != nil {
		t.Fatal(err)
	}
	if fingerprint(k1) == fingerprint(k2) {
		t.Fatal("different keys share a fingerprint")
	}
	w, err := r1.Wrap(context.Background(), []byte("dek"), []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r2.Unwrap(context.Background(), w, []byte("aad"))
	if err == nil {
		t.Fatal("Unwrap with a different root key succeeded")
	}
	assertNoSecret(t, err, k1, k2)
}

func TestNewLocalZeroesKey(t *testing.T) {
	key, _ := newKey(t)
	in := bytes.Clone(key)
	if _, err := newLocal("test:x", in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, make([]byte, KeySize)) {
		t.Fatal("newLocal left the key bytes in its input buffer")
	}
}

func TestLocalCanceledContext(t *testing.T) {
	key, _ := newKey(t)
	r, err := newLocal("test:x", key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Wrap(ctx, []byte("x"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Wrap with canceled context: %v, want context.Canceled", err)
	}
}

func TestFileRefusesUnsafe(t *testing.T) {
	key, _ := newKey(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) string
		want  []string
	}{
		{"mode 0644", func(t *testing.T) string { return writeKeyFile(t, key, 0o644) },
			[]string{"is mode 0644: other users can read it; run: chmod 600 "}},
		{"mode 0640", func(t *testing.T) string { return writeKeyFile(t, key, 0o640) },
			[]string{"is mode 0640: other users can read it; run: chmod 600 "}},
		{"mode 0604", func(t *testing.T) string { return writeKeyFile(t, key, 0o604) },
			[]string{"is mode 0604: other users can read it; run: chmod 600 "}},
		{"mode 0620", func(t *testing.T) string { return writeKeyFile(t, key, 0o620) },
			[]string{"is mode 0620: other users can write to it; run: chmod 600 "}},
		{"mode 0601", func(t *testing.T) string { return writeKeyFile(t, key, 0o601) },
			[]string{"is mode 0601: other users can run it; run: chmod 600 "}},
		{"symlink", func(t *testing.T) string {
			target := writeKeyFile(t, key, 0o600)
			link := filepath.Join(t.TempDir(), "link.key")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, []string{"is a symlink to ", "point clawhold at the real file"}},
		{"directory", func(t *testing.T) string {
			d := filepath.Join(t.TempDir(), "dir.key")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			return d
		}, []string{"is not a regular file"}},
		{"fifo", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "fifo.key")
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			return p
		}, []string{"is not a regular file"}},
		{"wrong owner", func(t *testing.T) string {
			if os.Geteuid() != 0 {
				t.Skip("changing a file's owner needs root")
			}
			p := writeKeyFile(t, key, 0o600)
			if err := os.Chown(p, 65534, 65534); err != nil { // nobody
				t.Fatal(err)
			}
			return p
		}, []string{"is owned by uid 65534, not 0 (you); run: chown 0 "}},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none.key") },
			[]string{"does not exist", "root_key.file"}},
		{"not base64", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "root.key")
			os.WriteFile(p, []byte("this is not base64!\n"), 0o600)
			return p
		}, []string{"not valid base64"}},
		{"short key", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "root.key")
			os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key[:16])+"\n"), 0o600)
			return p
		}, []string{"decodes to 16 bytes, want 32"}},
		{"huge", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "root.key")
			os.WriteFile(p, bytes.Repeat([]byte("A"), 1<<20), 0o600)
			return p
		}, []string{"larger than"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.setup(t)
			r, err := OpenFile(path)
			if err == nil {
				t.Fatalf("OpenFile succeeded (ID %s), want refusal", r.ID())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			assertNoSecret(t, err, key)
		})
	}
}

func TestGenerateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "root.key")
	if err := GenerateFile(path); err != nil {
		t.Fatalf("GenerateFile: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", fi.Mode().Perm())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode = %v (%v), want 0700", di.Mode().Perm(), err)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(text, []byte("\n")) {
		t.Error("key file does not end in a newline")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(text), "\n"))
	if err != nil || len(key) != KeySize {
		t.Fatalf("key file is not base64 of %d bytes: %d bytes, %v", KeySize, len(key), err)
	}
	if bytes.Equal(key, make([]byte, KeySize)) {
		t.Fatal("generated key is all zeros")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after GenerateFile, want only the key", len(entries))
	}
	r, err := OpenFile(path)
	if err != nil {
		t.Fatalf("OpenFile on a generated key: %v", err)
	}
	if want := "file:" + path + "#" + fingerprint(key); r.ID() != want {
		t.Errorf("ID = %q, want %q", r.ID(), want)
	}

	// A second GenerateFile must fail and leave the key alone.
	err = GenerateFile(path)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second GenerateFile: %v, want fs.ErrExist", err)
	}
	assertNoSecret(t, err, key)
	if again, _ := os.ReadFile(path); !bytes.Equal(again, text) {
		t.Fatal("second GenerateFile changed the existing key file")
	}

	// Nor may it replace anything else at that path, dangling symlinks included.
	other := filepath.Join(t.TempDir(), "other")
	os.WriteFile(other, []byte("not a key"), 0o600)
	dangling := filepath.Join(t.TempDir(), "dangling.key")
	os.Symlink(filepath.Join(t.TempDir(), "nowhere"), dangling)
	for _, p := range []string{other, dangling} {
		if err := GenerateFile(p); !errors.Is(err, fs.ErrExist) {
			t.Errorf("GenerateFile(%s): %v, want fs.ErrExist", p, err)
		}
	}
	if b, _ := os.ReadFile(other); string(b) != "not a key" {
		t.Error("GenerateFile overwrote an existing file")
	}
}

// TestGenerateFileRace checks that the final link, not the early existence
// check, is what guarantees no clobbering: of many concurrent generators,
// exactly one wins and the file holds the winner's key.
func TestGenerateFileRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = GenerateFile(path) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("GenerateFile: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent GenerateFile calls succeeded, want exactly 1", ok)
	}
	if _, err := OpenFile(path); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key (temporary files left behind)", len(entries))
	}
}

func TestEnvUnsetAfterOpen(t *testing.T) {
	key, b64 := newKey(t)
	tests := []struct {
		name    string
		value   string
		wantErr string
	}{
		{"valid", b64, ""},
		{"not base64", "s3cr3t-not-base64!!", "not valid base64"},
		{"short", base64.StdEncoding.EncodeToString(key[:31]), "decodes to 31 bytes, want 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TEST_CLAWHOLD_KEK", tc.value)
			r, err := Open(context.Background(), config.RootKey{Backend: "env", Env: "TEST_CLAWHOLD_KEK"}, "")
			if _, still := os.LookupEnv("TEST_CLAWHOLD_KEK"); still {
				t.Fatal("the variable is still in the environment after Open")
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				exerciseRoot(t, r, key)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Open: %v, want error containing %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), tc.value) {
				t.Fatal("error quotes the variable's value")
			}
			assertNoSecret(t, err, key, key[:31])
		})
	}

	t.Run("missing", func(t *testing.T) {
		t.Setenv(DefaultEnv, "") // restored after the test
		os.Unsetenv(DefaultEnv)
		_, err := OpenEnv("")
		if err == nil || !strings.Contains(err.Error(), "environment variable CLAWHOLD_ROOT_KEY is not set") || !strings.Contains(err.Error(), "root_key.env") {
			t.Fatalf("OpenEnv: %v", err)
		}
	})
}

func TestSystemdCredentialErrors(t *testing.T) {
	key, _ := newKey(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "short"), key[:20], 0o400)
	os.WriteFile(filepath.Join(dir, "text32"), []byte(base64.StdEncoding.EncodeToString(key[:24])), 0o400)
	tests := []struct {
		name     string
		credDir  string
		credName string
		want     []string
	}{
		{"no CREDENTIALS_DIRECTORY", "", "", []string{"CREDENTIALS_DIRECTORY is not set", "not running under systemd with LoadCredential=clawhold-root-key:PATH"}},
		{"credential missing", dir, "absent", []string{"systemd credential absent not found", "LoadCredential=absent:PATH"}},
		{"wrong length", dir, "short", []string{"systemd credential short", "raw or base64"}},
		{"32 bytes of base64 text", dir, "text32", []string{"systemd credential text32: decodes to 24 bytes, want 32"}},
		{"path in name", dir, "../etc/passwd", []string{"root_key.systemd_credential", "is not a credential name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CREDENTIALS_DIRECTORY", tc.credDir)
			if tc.credDir == "" {
				os.Unsetenv("CREDENTIALS_DIRECTORY")
			}
			_, err := OpenSystemdCredential(tc.credName)
			if err == nil {
				t.Fatal("OpenSystemdCredential succeeded, want error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			assertNoSecret(t, err, key[:20])
		})
	}
}

func TestOpenConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		rk      config.RootKey
		dataDir string
		want    string
	}{
		{"unknown backend", config.RootKey{Backend: "hsm"}, "/d", `root_key.backend "hsm" is unknown`},
		{"no file, no data dir", config.RootKey{}, "", "root_key.file is empty and data_dir is not set"},
		{"vault no address", config.RootKey{Backend: "vault-transit", Vault: config.Vault{Key: "k"}}, "", "root_key.vault.address is empty"},
		{"vault bad address", config.RootKey{Backend: "vault-transit", Vault: config.Vault{Address: "vault:8200", Key: "k"}}, "", "root_key.vault.address \"vault:8200\" is not an http(s) URL"},
		{"vault no key", config.RootKey{Backend: "vault-transit", Vault: config.Vault{Address: "https://v:8200"}}, "", "root_key.vault.key is empty: set it to the transit key name"},
		{"vault key with path", config.RootKey{Backend: "vault-transit", Vault: config.Vault{Address: "https://v:8200", Key: "transit/keys/k"}}, "", "root_key.vault.key \"transit/keys/k\" is not a transit key name"},
		{"aws no key", config.RootKey{Backend: "aws-kms"}, "", "root_key.aws_kms.key_id is empty"},
		{"aws bad endpoint", config.RootKey{Backend: "aws-kms", AWSKMS: config.AWSKMS{KeyID: "k", Endpoint: "localhost:4566"}}, "", "root_key.aws_kms.endpoint"},
		{"gcp no key", config.RootKey{Backend: "gcp-kms"}, "", "root_key.gcp_kms.key_name is empty"},
		{"gcp key version", config.RootKey{Backend: "gcp-kms", GCPKMS: config.GCPKMS{KeyName: "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1"}}, "", "is not of the form projects/P/locations/L/keyRings/R/cryptoKeys/K"},
		{"gcp empty part", config.RootKey{Backend: "gcp-kms", GCPKMS: config.GCPKMS{KeyName: "projects//locations/l/keyRings/r/cryptoKeys/k"}}, "", "is not of the form"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), tc.rk, tc.dataDir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want error containing %q", err, tc.want)
			}
		})
	}
}
