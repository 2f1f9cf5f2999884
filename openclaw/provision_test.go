//go:build unix

package openclaw

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestProvisionUpToDate provisions into the warm install the tests use
// (made by scripts/install-openclaw.sh): the fast path must not need npm,
// must be quick and must agree with FindInstall.
func TestProvisionUpToDate(t *testing.T) {
	dir, err := LocateInstallDir(".")
	if err != nil {
		t.Fatal(err)
	}
	want, err := FindInstall(dir)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no OpenClaw install in CI: %v", err)
		}
		t.Skipf("no warm OpenClaw install (run scripts/install-openclaw.sh): %v", err)
	}
	start := time.Now()
	in, err := Provision(context.Background(), ProvisionOptions{
		Dir:    dir,
		NPM:    filepath.Join(t.TempDir(), "no-npm-here"), // the fast path must not need it
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Provision(%s): %v", dir, err)
	}
	t.Logf("up-to-date Provision took %v", took)
	if *in != *want {
		t.Errorf("Provision = %+v, FindInstall = %+v", in, want)
	}
	if took > 20*time.Second {
		t.Errorf("the up-to-date path took %v", took)
	}
}

func TestProvisionPins(t *testing.T) {
	p, err := loadPins()
	if err != nil {
		t.Fatal(err)
	}
	if p.openclaw != Version {
		t.Errorf("pinned openclaw %s, Version %s", p.openclaw, Version)
	}
	if !strings.HasPrefix(p.nodeIntegrity, "sha512-") {
		t.Errorf("node integrity %q", p.nodeIntegrity)
	}
}

func TestProvisionNoNPM(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Provision(context.Background(), ProvisionOptions{Dir: filepath.Join(t.TempDir(), "oc")})
	if err == nil || !strings.Contains(err.Error(), "npm not found") || !strings.Contains(err.Error(), "install Node.js") {
		t.Fatalf("Provision without npm: %v, want an error saying to install Node.js with npm", err)
	}
}

func TestProvisionCheckIntegrity(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pkg.tgz")
	data := []byte("pretend tarball")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(data)
	good := "sha512-" + base64.StdEncoding.EncodeToString(sum[:])
	if err := checkIntegrity(file, good); err != nil {
		t.Fatalf("matching hash refused: %v", err)
	}
	other := sha512.Sum512([]byte("other bytes"))
	wrong := "sha512-" + base64.StdEncoding.EncodeToString(other[:])
	if err := checkIntegrity(file, wrong); err == nil || !strings.Contains(err.Error(), good) {
		t.Errorf("wrong hash: %v, want a refusal naming the actual hash", err)
	}
	flipped := []byte(good)
	flipped[len(flipped)-5] ^= 1 // still valid base64, different bytes
	if err := checkIntegrity(file, string(flipped)); err == nil {
		t.Error("hash with one flipped character accepted")
	}
	s256 := sha256.Sum256(data)
	b64 := base64.StdEncoding.EncodeToString(sum[:])
	for _, sri := range []string{
		"",
		"sha512",
		"sha512-",
		"sha512-!!!!",
		"SHA512-" + b64,
		"sha256-" + base64.StdEncoding.EncodeToString(s256[:]),
		"sha512-" + base64.StdEncoding.EncodeToString(sum[:32]), // too short
		"sha512-" + strings.TrimRight(b64, "="),                 // unpadded
		"sha512-" + base64.URLEncoding.EncodeToString(sum[:]),
		good + " " + good, // several hashes: not what a lockfile holds
		good + "?opt",
		" " + good,
	} {
		if err := checkIntegrity(file, sri); err == nil {
			t.Errorf("malformed integrity %q accepted", sri)
		}
	}
	if err := checkIntegrity(filepath.Join(t.TempDir(), "missing"), good); err == nil {
		t.Error("missing file accepted")
	}
}

type tarEntry struct {
	name, body, link string
	typ              byte
}

func writeTgz(t *testing.T, entries ...tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: e.name, Typeflag: typ, Mode: 0o755, Linkname: e.link}
		if typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pkg.tgz")
	if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProvisionExtractNode(t *testing.T) {
	ok := writeTgz(t,
		tarEntry{name: "package/package.json", body: "{}"},
		tarEntry{name: "package/bin/node", body: "ELF"},
		tarEntry{name: "package/bin/other", body: "x"},
	)
	dest := t.TempDir()
	got, err := extractNode(ok, dest)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(got); err != nil || string(b) != "ELF" {
		t.Errorf("extracted %q, %v", b, err)
	}
	if fi, err := os.Stat(got); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("extracted node mode: %v, %v", fi.Mode(), err)
	}
	if ents, _ := os.ReadDir(dest); len(ents) != 1 {
		t.Errorf("extracted %d files, want only node", len(ents))
	}

	for name, tgz := range map[string]string{
		"dotdot":         writeTgz(t, tarEntry{name: "../evil", body: "x"}, tarEntry{name: "package/bin/node", body: "ELF"}),
		"inner dotdot":   writeTgz(t, tarEntry{name: "package/bin/../../../evil", body: "x"}),
		"dotdot to node": writeTgz(t, tarEntry{name: "package/x/../bin/node", body: "ELF"}),
		"absolute":       writeTgz(t, tarEntry{name: "/etc/evil", body: "x"}),
		"symlink node":   writeTgz(t, tarEntry{name: "package/bin/node", typ: tar.TypeSymlink, link: "/bin/sh"}),
		"hardlink node":  writeTgz(t, tarEntry{name: "package/bin/node", typ: tar.TypeLink, link: "package/package.json"}),
		"dir node":       writeTgz(t, tarEntry{name: "package/bin/node", typ: tar.TypeDir}),
		"no node":        writeTgz(t, tarEntry{name: "package/package.json", body: "{}"}),
		"two nodes":      writeTgz(t, tarEntry{name: "package/bin/node", body: "A"}, tarEntry{name: "./package/bin/node", body: "B"}),
	} {
		dest := t.TempDir()
		if p, err := extractNode(tgz, dest); err == nil {
			t.Errorf("%s: extracted %s, want a refusal", name, p)
		}
		if name == "two nodes" {
			continue // the first copy was written before the second was seen
		}
		if ents, _ := os.ReadDir(dest); len(ents) != 0 {
			t.Errorf("%s: refused archive left %d files", name, len(ents))
		}
	}
	if _, err := extractNode(writeTgz(t), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("empty archive accepted")
	}
	notGzip := filepath.Join(t.TempDir(), "x.tgz")
	os.WriteFile(notGzip, []byte("plain"), 0o600)
	if _, err := extractNode(notGzip, t.TempDir()); err == nil {
		t.Error("non-gzip accepted")
	}
}

func TestProvisionFixPerms(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "outside")
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private := mk("a/private", 0o600)
	exe := mk("a/exe", 0o700)
	open := mk("a/b/open", 0o777)
	cached := mk(".npm-cache/x", 0o600)
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "a", "link")); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "a"), 0o700)
	os.Chmod(dir, 0o777)
	if err := fixPerms(dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		dir: 0o755, filepath.Join(dir, "a"): 0o755, private: 0o644, exe: 0o755, open: 0o755,
		cached: 0o600, outside: 0o600,
	} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}

func TestProvisionChildEnv(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://proxy:3128")
	t.Setenv("npm_config_registry", "https://mirror.example/")
	t.Setenv("CLAWHOLD_SECRET", "s3cret")
	t.Setenv("npm_config_userconfig", "/home/x/.npmrc")
	env := childEnv("/boot/bin:/usr/bin", "/d/home", "/d/.npm-cache")
	for _, want := range []string{
		"PATH=/boot/bin:/usr/bin", "HOME=/d/home", "TMPDIR=/d/home/tmp", "npm_config_cache=/d/.npm-cache",
		"HTTPS_PROXY=http://proxy:3128", "npm_config_registry=https://mirror.example/",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, env)
		}
	}
	for _, e := range env {
		if strings.Contains(e, "s3cret") || strings.HasPrefix(e, "npm_config_userconfig=") {
			t.Errorf("env leaks %s", e)
		}
	}
}
