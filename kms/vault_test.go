package kms

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/clawhold/clawhold/config"
)

// vaultServer is a real Vault dev server (in-memory, unsealed) with transit
// mounted at "transit" and two AEAD keys, "clawhold" and "other".
type vaultServer struct {
	addr   string
	token  string // root token
	caCert string // with TLS: the dev CA's PEM file
	admin  *vault.Client
}

// clearVaultEnv keeps this machine's VAULT_* settings out of the test.
func clearVaultEnv(t *testing.T) {
	for _, k := range []string{"VAULT_ADDR", "VAULT_AGENT_ADDR", "VAULT_TOKEN", "VAULT_CACERT", "VAULT_CAPATH", "VAULT_SKIP_VERIFY", "VAULT_NAMESPACE", "VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"} {
		t.Setenv(k, "")
	}
}

func startVault(t *testing.T, withTLS bool) *vaultServer {
	t.Helper()
	bin := serverBin(t, "CLAWHOLD_TEST_VAULT_BIN", "vault")
	clearVaultEnv(t)
	tok := make([]byte, 16)
	rand.Read(tok)
	// Vault refuses custom root token ids with its own "hvs." prefix.
	v := &vaultServer{token: "clawhold-test-" + hex.EncodeToString(tok)}
	port := freePort(t)
	args := []string{"server", "-dev", "-dev-root-token-id=" + v.token, fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-dev-no-store-token"}
	client := http.DefaultClient
	scheme := "http"
	if withTLS {
		certDir := t.TempDir()
		args = append(args, "-dev-tls", "-dev-tls-cert-dir="+certDir)
		scheme = "https"
		v.caCert = filepath.Join(certDir, "vault-ca.pem")
	}
	s := startServer(t, bin, args, []string{"VAULT_LOG_LEVEL=warn"}, []string{v.token})
	v.addr = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)

	if withTLS {
		deadline := time.Now().Add(60 * time.Second)
		var pem []byte
		for len(pem) == 0 && time.Now().Before(deadline) {
			select {
			case <-s.done:
				t.Fatal("vault exited before it was ready")
			case <-time.After(100 * time.Millisecond):
			}
			pem, _ = os.ReadFile(v.caCert)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatal("vault -dev-tls wrote no CA certificate")
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	waitReady(t, s, client, v.addr+"/v1/sys/health", func(r *http.Response) bool { return r.StatusCode == http.StatusOK })

	cfg := vault.DefaultConfig()
	cfg.Address = v.addr
	if withTLS {
		if err := cfg.ConfigureTLS(&vault.TLSConfig{CACert: v.caCert}); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(v.token)
	v.admin = admin
	ctx := context.Background()
	if err := admin.Sys().MountWithContext(ctx, "transit", &vault.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("enable transit: %v", err)
	}
	for _, k := range []string{"clawhold", "other"} {
		if _, err := admin.Logical().WriteWithContext(ctx, "transit/keys/"+k, map[string]any{"type": "aes256-gcm96"}); err != nil {
			t.Fatalf("create transit key %s: %v", k, err)
		}
	}
	return v
}

// writeToken writes tok to a new 0600 file.
func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vault-token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// childToken creates a token that may only use transit.
func (v *vaultServer) childToken(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	policy := `path "transit/encrypt/*" { capabilities = ["update"] }
path "transit/decrypt/*" { capabilities = ["update"] }`
	if err := v.admin.Sys().PutPolicyWithContext(ctx, "clawhold-root-key", policy); err != nil {
		t.Fatal(err)
	}
	s, err := v.admin.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{Policies: []string{"clawhold-root-key"}, NoParent: true})
	if err != nil {
		t.Fatal(err)
	}
	return s.Auth.ClientToken
}

func TestVaultTransitDevServer(t *testing.T) {
	v := startVault(t, false)
	ctx := context.Background()
	tok := v.childToken(t)
	tokenFile := writeToken(t, tok)
	rk := config.RootKey{Backend: "vault-transit", Vault: config.Vault{Address: v.addr, Key: "clawhold", TokenFile: tokenFile}}

	r, err := Open(ctx, rk, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if want := "vault-transit:" + v.addr + "/transit/keys/clawhold"; r.ID() != want {
		t.Errorf("ID = %q, want %q", r.ID(), want)
	}
	exerciseRoot(t, r, []byte(tok), []byte(v.token))

	dek := []byte("0123456789abcdef0123456789abcdef")
	aad := []byte("tenant=acme")
	w, err := r.Wrap(ctx, dek, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(w[1:]), "vault:v1:") {
		t.Errorf("wrapped key is not a transit ciphertext: %q", w[:10])
	}

	t.Run("VAULT_TOKEN and mount spelling", func(t *testing.T) {
		t.Setenv("VAULT_TOKEN", tok)
		r2, err := OpenVaultTransit(ctx, config.Vault{Address: v.addr + "/", Mount: "/transit/", Key: "clawhold"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := r2.Unwrap(ctx, w, aad)
		if err != nil || string(got) != string(dek) {
			t.Fatalf("Unwrap through VAULT_TOKEN: %v", err)
		}
	})

	t.Run("other key cannot unwrap", func(t *testing.T) {
		r2, err := OpenVaultTransit(ctx, config.Vault{Address: v.addr, Key: "other", TokenFile: tokenFile})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r2.Unwrap(ctx, w, aad); err == nil {
			t.Fatal("transit key \"other\" unwrapped a ciphertext of key \"clawhold\"")
		}
	})

	t.Run("token file re-read", func(t *testing.T) {
		// Rotate the token the way Vault Agent does, revoke the old one:
		// the same VaultTransit keeps working.
		rr, err := OpenVaultTransit(ctx, rk.Vault)
		if err != nil {
			t.Fatal(err)
		}
		newTok := v.childToken(t)
		os.WriteFile(tokenFile, []byte(newTok), 0o600)
		if err := v.admin.Auth().Token().RevokeTreeWithContext(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := rr.Unwrap(ctx, w, aad); err != nil {
			t.Fatalf("Unwrap after token rotation: %v", err)
		}
	})

	t.Run("bad token", func(t *testing.T) {
		bad := "hvs.not-a-real-token-0123456789"
		rb, err := OpenVaultTransit(ctx, config.Vault{Address: v.addr, Key: "clawhold", TokenFile: writeToken(t, bad)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = rb.Wrap(ctx, dek, aad)
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("Wrap with a bad token: %v, want 403", err)
		}
		assertNoSecret(t, err, []byte(bad), dek, []byte(v.token))
	})

	t.Run("token file checks", func(t *testing.T) {
		loose := writeToken(t, tok)
		os.Chmod(loose, 0o640)
		empty := writeToken(t, "")
		tests := []struct {
			name string
			cfg  config.Vault
			want string
		}{
			{"mode 0640", config.Vault{Address: v.addr, Key: "clawhold", TokenFile: loose}, "vault token file " + loose + " is mode 0640: other users can read it; run: chmod 600 " + loose},
			{"missing", config.Vault{Address: v.addr, Key: "clawhold", TokenFile: loose + ".none"}, "does not exist"},
			{"empty", config.Vault{Address: v.addr, Key: "clawhold", TokenFile: empty}, "is empty"},
			{"no token at all", config.Vault{Address: v.addr, Key: "clawhold"}, "no Vault token: set root_key.vault.token_file"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := OpenVaultTransit(ctx, tc.cfg)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("OpenVaultTransit: %v, want error containing %q", err, tc.want)
				}
				assertNoSecret(t, err, []byte(tok))
			})
		}
	})
}

func TestVaultTransitTLS(t *testing.T) {
	v := startVault(t, true)
	ctx := context.Background()
	tokenFile := writeToken(t, v.childToken(t))

	t.Run("ca_cert", func(t *testing.T) {
		r, err := OpenVaultTransit(ctx, config.Vault{Address: v.addr, Key: "clawhold", TokenFile: tokenFile, CACert: v.caCert})
		if err != nil {
			t.Fatal(err)
		}
		exerciseRoot(t, r)
	})
	t.Run("unknown CA", func(t *testing.T) {
		r, err := OpenVaultTransit(ctx, config.Vault{Address: v.addr, Key: "clawhold", TokenFile: tokenFile})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Wrap(ctx, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("Wrap against a server signed by an unknown CA: %v, want a certificate error", err)
		}
	})
	t.Run("VAULT_SKIP_VERIFY refused", func(t *testing.T) {
		t.Setenv("VAULT_SKIP_VERIFY", "true")
		_, err := OpenVaultTransit(ctx, config.Vault{Address: v.addr, Key: "clawhold", TokenFile: tokenFile})
		if err == nil || !strings.Contains(err.Error(), "VAULT_SKIP_VERIFY is set") {
			t.Fatalf("OpenVaultTransit: %v", err)
		}
	})
	t.Run("bad ca_cert", func(t *testing.T) {
		_, err := OpenVaultTransit(ctx, config.Vault{Address: v.addr, Key: "clawhold", TokenFile: tokenFile, CACert: tokenFile})
		if err == nil || !strings.Contains(err.Error(), "root_key.vault.ca_cert") {
			t.Fatalf("OpenVaultTransit: %v", err)
		}
	})
}
