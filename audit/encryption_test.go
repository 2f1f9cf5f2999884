package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/frontdoor/tlsconf"
	"github.com/clawhold/clawhold/instance"
)

// clawholdData creates a real clawhold data dir for f: a config file, a
// local root key, the system keyring and the given tenants, as `clawhold
// init` and `clawhold secrets set --tenant` leave them, and points the
// fixture's target at it.
func clawholdData(f *fixture, yaml string, tenants ...string) *instance.Instance {
	f.t.Helper()
	dir := filepath.Join(f.home, "clawhold")
	cfgPath := filepath.Join(f.home, "clawhold.yaml")
	if yaml == "" {
		yaml = "log:\n  level: info\n"
	}
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		f.t.Fatal(err)
	}
	ctx := context.Background()
	in, err := instance.Open(ctx, instance.Options{DataDir: dir, ConfigPath: cfgPath, CreateRootKey: true})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { in.Close() })
	for _, tn := range tenants {
		if err := in.EnsureTenant(ctx, tn); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := in.Keyrings(ctx); err != nil {
		f.t.Fatal(err)
	}
	f.target.DataDir, f.target.ClawholdConfig = dir, cfgPath
	return in
}

// writeCert writes a self-signed certificate valid until notAfter to
// path, with an ECDSA P-256 key, or an RSA key of rsaBits when non-zero.
func writeCert(t *testing.T, path string, notAfter time.Time, rsaBits int) {
	t.Helper()
	var pub, priv any
	if rsaBits > 0 {
		k, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			t.Fatal(err)
		}
		pub, priv = &k.PublicKey, k
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, priv = &k.PublicKey, k
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "claw.example.test"},
		DNSNames: []string{"claw.example.test"}, NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func selfSignedPath(f *fixture) string {
	return filepath.Join(f.target.DataDir, "frontdoor-tls", tlsconf.SelfSignedCertFile)
}

// encryptionCases break the baseline for each encryption rule.
func encryptionCases() []ruleCase {
	days := func(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }
	return []ruleCase{
		{"encryption.state_unencrypted", "plain install with a credential file", func(f *fixture) {
			if encryptedFS(f.stateDir) != "" {
				f.t.Skip("the test's temp dir is on an encrypted filesystem")
			}
			f.write("credentials/telegram-allowFrom.json", "[]", 0o600)
		}},
		{"encryption.state_unencrypted", "cell without encrypted state", func(f *fixture) {
			clawholdData(f, "")
			l := cell.NewLayout(f.target.DataDir, "acme")
			if err := os.MkdirAll(l.Home, 0o700); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"encryption.state_unencrypted", "cells.encrypted_state false", func(f *fixture) {
			clawholdData(f, "cells:\n  encrypted_state: false\n")
			if err := os.MkdirAll(cell.NewLayout(f.target.DataDir, "acme").Home, 0o700); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"encryption.key_age", "85 days: warn", func(f *fixture) {
			clawholdData(f, "")
			f.target.Now = time.Now().Add(days(85))
		}},
		{"encryption.key_age", "95 days: critical", func(f *fixture) {
			clawholdData(f, "", "acme")
			f.target.Now = time.Now().Add(days(95))
		}},
		{"encryption.root_key_file", "", func(f *fixture) { clawholdData(f, "") }},
		{"encryption.frontdoor_tls_expiry", "self-signed, 5 days left", func(f *fixture) {
			clawholdData(f, "")
			writeCert(f.t, selfSignedPath(f), time.Now().Add(days(5)), 0)
		}},
		{"encryption.frontdoor_tls_expiry", "files, expired", func(f *fixture) {
			cert := filepath.Join(f.home, "tls", "cert.pem")
			clawholdData(f, "frontdoor:\n  tls:\n    mode: files\n    cert_file: "+cert+"\n    key_file: "+filepath.Join(f.home, "tls", "key.pem")+"\n")
			writeCert(f.t, cert, time.Now().Add(-days(1)), 0)
		}},
		{"encryption.frontdoor_tls_weak", "RSA 1024", func(f *fixture) {
			clawholdData(f, "")
			writeCert(f.t, selfSignedPath(f), time.Now().Add(days(300)), 1024)
		}},
	}
}

// TestKeyAgeSeverity: the active version is clean until 80 days, warn
// from 80, critical from 90, on a real data dir with the clock moved.
func TestKeyAgeSeverity(t *testing.T) {
	f := newFixture(t)
	clawholdData(f, "", "acme")
	for _, c := range []struct {
		days int
		want Severity
	}{{10, 0}, {79, 0}, {81, Warn}, {91, Critical}} {
		f.target.Now = time.Now().Add(time.Duration(c.days) * 24 * time.Hour)
		var got Severity
		n := 0
		for _, g := range findingsOf(f.run(), "encryption.key_age") {
			got = max(got, g.Severity)
			n++
		}
		if got != c.want {
			t.Errorf("%d days: severity %v, want %v", c.days, got, c.want)
		}
		if c.want != 0 && n != 2 {
			t.Errorf("%d days: %d findings, want 2 (system and tenant:acme)", c.days, n)
		}
	}
}

// Encrypted cells suppress the state dir finding; a cert far from expiry
// is clean.
func TestEncryptionClean(t *testing.T) {
	f := newFixture(t)
	f.write("credentials/telegram-allowFrom.json", "[]", 0o600)
	clawholdData(f, "")
	l := cell.NewLayout(f.target.DataDir, "acme")
	if err := os.MkdirAll(l.CipherHome, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.CipherHome, "cellfs.conf"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeCert(t, selfSignedPath(f), time.Now().Add(300*24*time.Hour), 0)
	rep := f.run()
	for _, id := range []string{"encryption.state_unencrypted", "encryption.frontdoor_tls_expiry", "encryption.frontdoor_tls_weak", "encryption.key_age"} {
		if got := findingsOf(rep, id); len(got) > 0 {
			t.Errorf("%s: %+v", id, got)
		}
	}
	if len(rep.Errors) > 0 {
		t.Errorf("errors: %v", rep.Errors)
	}
}

func TestParseMountinfo(t *testing.T) {
	m, ok := parseMountinfo(`36 35 98:0 /mnt1 /mnt/my\040state rw,noatime master:1 - fuse.cellfs cellfs rw,user_id=0`)
	if !ok || m.point != "/mnt/my state" || m.fstype != "fuse.cellfs" {
		t.Errorf("got %+v %v", m, ok)
	}
	if !pathUnder("/mnt/my state/.openclaw", m.point) || pathUnder("/mnt/my statex", m.point) {
		t.Error("pathUnder")
	}
}

func encryptionQuietCases() []ruleCase {
	return []ruleCase{
		{"encryption.state_unencrypted", "clawhold's encrypted cells active", func(f *fixture) {
			clawholdData(f, "")
			l := cell.NewLayout(f.target.DataDir, "acme")
			if err := os.MkdirAll(l.CipherHome, 0o700); err != nil {
				f.t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(l.CipherHome, "cellfs.conf"), []byte("{}"), 0o600); err != nil {
				f.t.Fatal(err)
			}
		}},
	}
}
