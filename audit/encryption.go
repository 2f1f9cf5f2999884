package audit

import (
	"bufio"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/frontdoor/tlsconf"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/keys"
)

// Key age limits: clawhold rotates at 80 days and a version stops
// encrypting at 90 (keys.MaxAgeLimit); the audit flags the same ages.
const (
	keyAgeWarn     = 80 * 24 * time.Hour
	keyAgeCritical = keys.MaxAgeLimit
	// tlsExpiryWarn is how close to its end a front door certificate is
	// reported.
	tlsExpiryWarn = 14 * 24 * time.Hour
)

var encryptionRules = []Rule{
	{ID: "encryption.state_unencrypted", Area: Encryption, Severity: Warn,
		// OpenClaw stores OAuth tokens, API keys and transcripts in plaintext
		// files and SQLite (docs/gateway/secrets/secret-store-and-egress.md).
		// A plain install fires only when credential files are on disk (the
		// SQLite stores are not opened by the native audit); clawhold
		// installs fire per cell whose state is not on cellfs.
		Title:       "OpenClaw state (credentials, transcripts) is stored unencrypted on disk",
		Remediation: "run OpenClaw under clawhold with cells.encrypted_state: true (each cell's state on cellfs), or put the state dir on an encrypted volume (LUKS, fscrypt)"},
	{ID: "encryption.key_age", Area: Encryption, Severity: Warn,
		Title:       "clawhold key version is older than 80 days (critical at 90: it no longer encrypts)",
		Remediation: "clawhold keys rotate, then clawhold keys rewrap (clawhold up rotates automatically at keys.rotate_after)"},
	{ID: "encryption.root_key_file", Area: Encryption, Severity: Warn,
		Title:       "clawhold's root key is a local file (no KMS): whoever copies the data dir with it can decrypt everything",
		Remediation: "configure root_key.backend (vault, systemd-credential or env) and run clawhold keys rewrap-root; then remove the root key file"},
	{ID: "encryption.frontdoor_tls_expiry", Area: Encryption, Severity: Warn,
		Title:       "Front door TLS certificate expires within 14 days (critical when expired)",
		Remediation: "renew the certificate in frontdoor.tls.cert_file (files mode), or restart clawhold so the self-signed or ACME certificate is renewed"},
	{ID: "encryption.frontdoor_tls_weak", Area: Encryption, Severity: Warn,
		// The minimum TLS version is not configurable: frontdoor/tlsconf
		// fixes it at TLS 1.2, so the certificate is what can be weak.
		Title:       "Front door TLS certificate uses a weak key or signature (RSA under 2048 bits, SHA-1 or MD5)",
		Remediation: "issue a certificate with an ECDSA P-256 or RSA 2048+ key signed with SHA-256 and set it in frontdoor.tls"},
}

func encryptionChecks() []check {
	return []check{{name: "encryption", rules: encryptionRules, run: runEncryption}}
}

func runEncryption(ctx context.Context, t *Target, r *results) {
	var cfg *config.Config
	if t.DataDir != "" {
		var err error
		if cfg, err = clawholdConfig(t); err != nil {
			r.fail("clawhold config: %v", err)
		}
	}
	stateEncryption(t, cfg, r)
	if t.DataDir == "" || cfg == nil {
		return
	}
	frontdoorTLS(t, cfg, r)
	in, err := openClawhold(ctx, t)
	if err != nil {
		r.fail("clawhold data dir %s: %v", t.DataDir, err)
		return
	}
	defer in.Close()
	if p := in.RootKeyPath(); p != "" {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			r.add("encryption.root_key_file", Location{File: p},
				fmt.Sprintf("root_key.backend is %q and the root key is the file %s", backendName(in.Config.RootKey.Backend), p))
		}
	}
	keyAges(ctx, t, in, r)
}

func backendName(b string) string {
	if b == "" {
		return "file"
	}
	return b
}

// clawholdConfig loads clawhold's config as the CLI does: the named file,
// else the default path (absent means defaults).
func clawholdConfig(t *Target) (*config.Config, error) {
	if t.ClawholdConfig != "" {
		return config.Load(t.ClawholdConfig)
	}
	return config.LoadDefault()
}

// openClawhold opens clawhold's installation as `clawhold keys status`
// does. It never creates the data dir or a root key; opening a keyring
// that has no version yet creates its first (as status does).
func openClawhold(ctx context.Context, t *Target) (*instance.Instance, error) {
	// instance.Open creates a missing data dir: an audit must not.
	if _, err := os.Stat(t.DataDir); err != nil {
		return nil, err
	}
	return instance.Open(ctx, instance.Options{DataDir: t.DataDir, ConfigPath: t.ClawholdConfig})
}

// cellDirs lists the tenant cells under the data dir.
func cellDirs(dataDir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, "cells"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// cellEncrypted reports whether a cell keeps its state on cellfs.
func cellEncrypted(l cell.Layout) bool {
	_, err := os.Stat(filepath.Join(l.CipherHome, "cellfs.conf"))
	return err == nil
}

// stateEncryption reports OpenClaw state stored in plaintext: per cell of
// a clawhold install, and the audited state dir unless clawhold's
// encrypted cell storage is active or it lies on an encrypted filesystem.
func stateEncryption(t *Target, cfg *config.Config, r *results) {
	encryptedCells := false
	if cfg != nil {
		tenants, err := cellDirs(t.DataDir)
		if err != nil {
			r.fail("cells: %v", err)
		}
		for _, tenant := range tenants {
			l := cell.NewLayout(t.DataDir, tenant)
			switch {
			case cellEncrypted(l):
				encryptedCells = encryptedCells || cfg.Cells.EncryptedState
			case !cfg.Cells.EncryptedState:
				loc := Location{File: cfg.Path, Key: "cells.encrypted_state"}
				if cfg.Path == "" {
					loc = Location{File: l.Home}
				}
				r.add("encryption.state_unencrypted", loc,
					fmt.Sprintf("cells.encrypted_state is false: cell %s keeps its OpenClaw state in plaintext at %s", tenant, l.Home))
			default:
				if _, err := os.Stat(l.Home); err == nil {
					r.add("encryption.state_unencrypted", Location{File: l.Home},
						fmt.Sprintf("cell %s has no encrypted state (%s missing): its OpenClaw state is plaintext at %s", tenant, l.CipherHome, l.Home))
				}
			}
		}
	}
	if encryptedCells || t.StateDir == "" {
		return
	}
	if _, err := os.Stat(t.StateDir); err != nil {
		return
	}
	if how := encryptedFS(t.StateDir); how != "" {
		return
	}
	// OpenClaw's SQLite stores hold its credentials, approvals and
	// transcripts (openclaw-integration.md §6).
	var files []string
	stores, _ := filepath.Glob(filepath.Join(t.StateDir, "agents", "*", "agent", "openclaw-agent.sqlite"))
	for _, p := range append([]string{filepath.Join(t.StateDir, "state", "openclaw.sqlite")}, stores...) {
		if _, err := os.Stat(p); err == nil {
			rel, _ := filepath.Rel(t.StateDir, p)
			files = append(files, rel)
		}
	}
	files = append(files, credentialFiles(t, 5)...)
	if len(files) > 5 {
		files = files[:5]
	}
	if len(files) == 0 {
		return
	}
	ev := fmt.Sprintf("state dir %s is on an unencrypted filesystem and holds credential files in plaintext (%s", t.StateDir, strings.Join(files, ", "))
	if len(files) == 5 {
		ev += ", ..."
	}
	r.add("encryption.state_unencrypted", Location{File: t.StateDir}, ev+")")
}

// credentialFiles returns up to max regular files under the credential
// roots, relative to the state dir.
func credentialFiles(t *Target, max int) []string {
	var out []string
	for _, root := range credentialRoots(t) {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || len(out) >= max {
				return filepath.SkipAll
			}
			if d.Type().IsRegular() && !isSQLiteStore(d.Name()) {
				if rel, err := filepath.Rel(t.StateDir, p); err == nil && !strings.HasPrefix(rel, "..") {
					p = rel
				}
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// encryptedFSTypes are filesystems that keep their contents encrypted on
// disk.
var encryptedFSTypes = map[string]bool{
	"fuse.cellfs": true, "ecryptfs": true, "fuse.gocryptfs": true, "fuse.cryfs": true, "fuse.encfs": true,
}

// encryptedFS says how path's filesystem is encrypted ("" when it is not
// or that cannot be told): an encrypting filesystem in
// /proc/self/mountinfo (cellfs, eCryptfs, gocryptfs), or a block device
// that is, or sits on, dm-crypt. fscrypt per-directory encryption is not
// detected.
func encryptedFS(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if m, ok := mountOf(path); ok && encryptedFSTypes[m.fstype] {
		return m.fstype + " at " + m.point
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	dev := fmt.Sprintf("%d:%d", (st.Dev>>8)&0xfff|((st.Dev>>32)&^0xfff), (st.Dev&0xff)|((st.Dev>>12)&^0xff))
	if dmCrypt(filepath.Join("/sys/dev/block", dev), 0) {
		return "dm-crypt"
	}
	return ""
}

// dmCrypt reports whether the block device at sysDir is a dm-crypt
// mapping or is built on one (LVM on LUKS), following slaves.
func dmCrypt(sysDir string, depth int) bool {
	if depth > 8 {
		return false
	}
	if b, err := os.ReadFile(filepath.Join(sysDir, "dm", "uuid")); err == nil && strings.HasPrefix(string(b), "CRYPT-") {
		return true
	}
	ents, _ := os.ReadDir(filepath.Join(sysDir, "slaves"))
	for _, e := range ents {
		if dmCrypt(filepath.Join(sysDir, "slaves", e.Name()), depth+1) {
			return true
		}
	}
	return false
}

type mountEntry struct{ point, fstype string }

// mountOf returns the mount that holds path, from /proc/self/mountinfo
// (the longest mount point that is a prefix of path; the last one listed
// wins, as it is mounted on top).
func mountOf(path string) (mountEntry, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountEntry{}, false
	}
	defer f.Close()
	var best mountEntry
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m, ok := parseMountinfo(sc.Text())
		if !ok || !pathUnder(path, m.point) {
			continue
		}
		if !found || len(m.point) >= len(best.point) {
			best, found = m, true
		}
	}
	return best, found
}

// parseMountinfo reads one line of /proc/self/mountinfo: the mount point
// is field 5, the filesystem type follows the " - " separator.
func parseMountinfo(line string) (mountEntry, bool) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return mountEntry{}, false
	}
	f := strings.Fields(pre)
	g := strings.Fields(post)
	if len(f) < 5 || len(g) < 1 {
		return mountEntry{}, false
	}
	return mountEntry{point: unescapeMount(f[4]), fstype: g[0]}, true
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func pathUnder(path, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// keyAges reports key versions past the rotation age: the active version
// of every keyring (warn at 80 days, critical at 90, when it no longer
// encrypts), and an older version still sealing records past 90 days.
func keyAges(ctx context.Context, t *Target, in *instance.Instance, r *results) {
	krs, err := in.Keyrings(ctx)
	if err != nil {
		r.fail("keyrings: %v", err)
		return
	}
	for _, k := range krs {
		st, err := k.Status(ctx)
		if err != nil {
			r.fail("%v", err)
			continue
		}
		for _, v := range st.Versions {
			if v.State == keys.StateDestroyed {
				continue
			}
			age := t.Now.Sub(v.Created)
			days := int(age / (24 * time.Hour))
			loc := Location{File: in.DataDir, Key: fmt.Sprintf("%s v%d", st.Keyring, v.Version)}
			switch {
			case v.Version == st.Active && age >= keyAgeCritical:
				f := r.add("encryption.key_age", loc, fmt.Sprintf("keyring %s: active version %d was created %s, %d days ago (limit 90)",
					st.Keyring, v.Version, v.Created.Format(time.DateOnly), days))
				f.Severity = Critical
			case v.Version == st.Active && age >= keyAgeWarn:
				r.add("encryption.key_age", loc, fmt.Sprintf("keyring %s: active version %d was created %s, %d days ago (rotation due at 80)",
					st.Keyring, v.Version, v.Created.Format(time.DateOnly), days))
			case v.Version != st.Active && v.Records > 0 && age >= keyAgeCritical:
				r.add("encryption.key_age", loc, fmt.Sprintf("keyring %s: version %d, %d days old, still seals %d record(s)",
					st.Keyring, v.Version, days, v.Records))
			}
		}
	}
}

// frontdoorCertFiles returns the files holding the certificate the front
// door serves, by frontdoor.tls.mode.
func frontdoorCertFiles(t *Target, cfg *config.Config) []string {
	switch cfg.Frontdoor.TLS.Mode {
	case "files":
		return []string{cfg.Frontdoor.TLS.CertFile}
	case "acme":
		// autocert's cache: one file per name, key and chain in PEM.
		m, _ := filepath.Glob(filepath.Join(t.DataDir, "acme", "*"))
		return m
	default:
		return []string{filepath.Join(t.DataDir, "frontdoor-tls", tlsconf.SelfSignedCertFile)}
	}
}

// frontdoorTLS judges each certificate the door would serve: its expiry
// against t.Now and its key and signature strength. A certificate that is
// not there yet (the door never started) is no finding.
func frontdoorTLS(t *Target, cfg *config.Config, r *results) {
	for _, p := range frontdoorCertFiles(t, cfg) {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			r.fail("front door certificate: %v", err)
			continue
		}
		leaf := firstCert(b)
		clear(b) // an ACME cache file holds the private key too
		if leaf == nil {
			if cfg.Frontdoor.TLS.Mode != "acme" {
				r.fail("front door certificate %s: no PEM certificate in it", p)
			}
			continue
		}
		name := leaf.Subject.CommonName
		if len(leaf.DNSNames) > 0 {
			name = leaf.DNSNames[0]
		}
		loc := Location{File: p}
		switch left := leaf.NotAfter.Sub(t.Now); {
		case left <= 0:
			f := r.add("encryption.frontdoor_tls_expiry", loc, fmt.Sprintf("certificate for %s expired on %s (mode %s)",
				name, leaf.NotAfter.UTC().Format(time.DateOnly), cfg.Frontdoor.TLS.Mode))
			f.Severity = Critical
		case left < tlsExpiryWarn:
			r.add("encryption.frontdoor_tls_expiry", loc, fmt.Sprintf("certificate for %s expires on %s, in %d days (mode %s)",
				name, leaf.NotAfter.UTC().Format(time.DateOnly), int(left/(24*time.Hour)), cfg.Frontdoor.TLS.Mode))
		}
		if weak := weakCert(leaf); weak != "" {
			r.add("encryption.frontdoor_tls_weak", loc, fmt.Sprintf("certificate for %s: %s", name, weak))
		}
	}
}

// firstCert parses the first CERTIFICATE block of a PEM file (the leaf).
func firstCert(b []byte) *x509.Certificate {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}

// weakCert describes what is weak in c, or "".
func weakCert(c *x509.Certificate) string {
	var out []string
	if k, ok := c.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < 2048 {
		out = append(out, fmt.Sprintf("RSA key of %d bits", k.N.BitLen()))
	}
	switch c.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
		out = append(out, "signed with "+c.SignatureAlgorithm.String())
	}
	return strings.Join(out, ", ")
}
