package egress

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"sync"
	"testing"
	"time"
)

func TestCAPEMRoundTrip(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ca.Certificate().Subject.CommonName, "clawhold egress test"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	c := ca.Certificate()
	if !c.IsCA || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA=%v MaxPathLen=%d MaxPathLenZero=%v, want a CA with path length 0", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d > caValidity+caBackdate {
		t.Errorf("CA validity %v, want at most %v", d, caValidity+caBackdate)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := ParseCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca2.Certificate().Raw, ca.Certificate().Raw) {
		t.Error("parsed CA certificate differs")
	}
	// A leaf signed by the parsed CA chains to the original.
	leaf, err := ca2.Leaf("api.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: "api.example.test"}); err != nil {
		t.Errorf("leaf from parsed CA does not verify: %v", err)
	}
}

func TestParseCAErrors(t *testing.T) {
	ca1, err := NewCA("one")
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := NewCA("two")
	if err != nil {
		t.Fatal(err)
	}
	key1, _ := ca1.KeyPEM()
	key2, _ := ca2.KeyPEM()
	leaf, err := ca1.Leaf("host.example.test")
	if err != nil {
		t.Fatal(err)
	}
	leafPEM := caTestPEM(leaf.Certificate[0])
	tests := []struct {
		name          string
		cert, key     []byte
		wantErrSubstr string
	}{
		{"mismatched key", ca1.CertPEM(), key2, "does not match"},
		{"not a CA", leafPEM, key1, "not a CA"},
		{"garbage cert", []byte("nope"), key1, "no PEM"},
		{"garbage key", ca1.CertPEM(), []byte("nope"), "no PEM"},
		{"cert as key", ca1.CertPEM(), ca1.CertPEM(), "unexpected PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCA(tt.cert, tt.key)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErrSubstr)) {
				t.Errorf("ParseCA error = %v, want one containing %q", err, tt.wantErrSubstr)
			}
		})
	}
}

func TestCALeaf(t *testing.T) {
	ca, err := NewCA("leaf")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host    string // as asked for
		name    string // what it must verify for
		wrong   string // what it must not verify for
		wantIP  bool
		wantKey string // cache key
	}{
		{"api.example.test", "api.example.test", "other.example.test", false, "api.example.test"},
		{"API.Example.Test.", "api.example.test", "example.test", false, "api.example.test"},
		{"127.0.0.1", "127.0.0.1", "127.0.0.2", true, "127.0.0.1"},
		{"[::1]", "::1", "::2", true, "::1"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			c, err := ca.Leaf(tt.host)
			if err != nil {
				t.Fatal(err)
			}
			l := c.Leaf
			if l.IsCA {
				t.Error("leaf is a CA")
			}
			if n := len(l.DNSNames) + len(l.IPAddresses); n != 1 {
				t.Errorf("leaf has %d SANs (%v %v), want exactly 1", n, l.DNSNames, l.IPAddresses)
			}
			if tt.wantIP != (len(l.IPAddresses) == 1) {
				t.Errorf("IP SANs = %v, want IP SAN %v", l.IPAddresses, tt.wantIP)
			}
			if _, err := l.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: tt.name}); err != nil {
				t.Errorf("Verify(%q): %v", tt.name, err)
			}
			if _, err := l.Verify(x509.VerifyOptions{Roots: ca.CertPool(), DNSName: tt.wrong}); err == nil {
				t.Errorf("Verify(%q) succeeded, want failure", tt.wrong)
			}
			if d := l.NotAfter.Sub(l.NotBefore); d > caLeafValidity+caBackdate {
				t.Errorf("leaf validity %v, want at most %v", d, caLeafValidity+caBackdate)
			}
			if len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[1], ca.Certificate().Raw) {
				t.Error("leaf chain does not end in the CA certificate")
			}
			again, err := ca.Leaf(tt.wantKey)
			if err != nil {
				t.Fatal(err)
			}
			if again != c {
				t.Error("second Leaf call did not return the cached certificate")
			}
		})
	}
	if _, err := ca.Leaf(""); err == nil {
		t.Error("Leaf(\"\") succeeded")
	}
}

func TestCALeafRenewAndBound(t *testing.T) {
	ca, err := NewCA("bound")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Leaf("renew.example.test")
	if err != nil {
		t.Fatal(err)
	}
	// Pretend the cached leaf is about to expire: it must be replaced.
	ca.mu.Lock()
	stale := *c
	staleLeaf := *c.Leaf
	staleLeaf.NotAfter = time.Now().Add(caLeafRenew / 2)
	stale.Leaf = &staleLeaf
	ca.leaves["renew.example.test"] = &stale
	ca.mu.Unlock()
	c2, err := ca.Leaf("renew.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if c2 == &stale {
		t.Error("leaf due for renewal was reused")
	}

	for i := range caMaxLeaves + 10 {
		if _, err := ca.Leaf(string(rune('a'+i%26)) + "-" + time.Duration(i).String() + ".example.test"); err != nil {
			t.Fatal(err)
		}
	}
	ca.mu.Lock()
	n := len(ca.leaves)
	ca.mu.Unlock()
	if n > caMaxLeaves {
		t.Errorf("cache holds %d leaves, want at most %d", n, caMaxLeaves)
	}
}

func TestCALeafConcurrent(t *testing.T) {
	ca, err := NewCA("concurrent")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]any, 16)
	for i := range got {
		wg.Go(func() {
			c, err := ca.Leaf("same.example.test")
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = c
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("concurrent Leaf calls returned different certificates")
		}
	}
}

func caTestPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
