package kms

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	vault "github.com/hashicorp/vault/api"

	"github.com/clawhold/clawhold/config"
)

// remoteVersion is the first byte of everything the remote backends' Wrap
// returns; the service's own ciphertext follows.
const remoteVersion = 1

// VaultTransit is a root key that lives in a HashiCorp Vault (or OpenBao)
// transit secrets engine. Wrap and Unwrap call <mount>/encrypt/<key> and
// <mount>/decrypt/<key>, passing aad as associated_data, so the transit key
// must be an AEAD type (aes256-gcm96, the default, aes128-gcm96 or
// chacha20-poly1305).
//
// The token comes from root_key.vault.token_file, re-read on every call so a
// token rotated by Vault Agent is picked up, or else from VAULT_TOKEN. The
// other VAULT_* variables the Vault CLI reads (client certificates, proxy,
// retries) apply too, except that VAULT_SKIP_VERIFY is refused.
type VaultTransit struct {
	id        string
	client    *vault.Client
	tokenFile string
	encrypt   string // request paths, without the /v1/ prefix
	decrypt   string
}

// OpenVaultTransit checks cfg and builds a Vault client. It makes no request;
// a wrong address, token or key shows in the first Wrap or Unwrap.
func OpenVaultTransit(ctx context.Context, cfg config.Vault) (*VaultTransit, error) {
	if cfg.Address == "" {
		return nil, errors.New("root_key.vault.address is empty: set it to the Vault server's URL, e.g. https://vault.internal:8200")
	}
	u, err := url.Parse(cfg.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("root_key.vault.address %q is not an http(s) URL: set it to the Vault server's URL, e.g. https://vault.internal:8200", cfg.Address)
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = "transit"
	}
	if cfg.Key == "" {
		return nil, errors.New("root_key.vault.key is empty: set it to the transit key name")
	}
	if strings.ContainsAny(cfg.Key, "/?#") {
		return nil, fmt.Errorf("root_key.vault.key %q is not a transit key name: set it to the name alone, without the mount path", cfg.Key)
	}

	vc := vault.DefaultConfig() // reads VAULT_* like the Vault CLI does
	if vc.Error != nil {
		return nil, fmt.Errorf("vault client configuration from VAULT_* environment: %w", vc.Error)
	}
	vc.Address = cfg.Address
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&vault.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("root_key.vault.ca_cert %s: %w: set it to a PEM file of the CA that signed Vault's certificate", cfg.CACert, err)
		}
	}
	if t, ok := vc.HttpClient.Transport.(*http.Transport); ok && t.TLSClientConfig != nil && t.TLSClientConfig.InsecureSkipVerify {
		return nil, errors.New("VAULT_SKIP_VERIFY is set: clawhold does not send its root key requests over unverified TLS; unset it and set root_key.vault.ca_cert to Vault's CA certificate")
	}
	client, err := vault.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}

	v := &VaultTransit{
		client:    client,
		tokenFile: cfg.TokenFile,
		encrypt:   mount + "/encrypt/" + cfg.Key,
		decrypt:   mount + "/decrypt/" + cfg.Key,
	}
	if v.tokenFile != "" {
		if err := v.loadToken(); err != nil {
			return nil, err
		}
	} else if client.Token() == "" { // NewClient took VAULT_TOKEN if set
		return nil, errors.New("no Vault token: set root_key.vault.token_file to a file holding the token (mode 0600), or set VAULT_TOKEN")
	}

	ns := ""
	if cfg.Namespace != "" {
		ns = strings.Trim(cfg.Namespace, "/") + "/"
	}
	v.id = "vault-transit:" + strings.TrimRight(cfg.Address, "/") + "/" + ns + mount + "/keys/" + cfg.Key
	return v, nil
}

// loadToken reads the token file (checked like the root key file, except that
// a symlink is followed, as Kubernetes and Vault Agent rotate tokens through
// them) and installs the token on the client.
func (v *VaultTransit) loadToken() error {
	b, err := readSecretFile("vault token file", v.tokenFile, true)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("vault token file %s does not exist: write the token to it or fix root_key.vault.token_file", v.tokenFile)
		}
		return err
	}
	defer clear(b)
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return fmt.Errorf("vault token file %s is empty: write the Vault token to it", v.tokenFile)
	}
	v.client.SetToken(tok)
	return nil
}

// ID returns e.g. "vault-transit:https://vault.internal:8200/transit/keys/clawhold".
func (v *VaultTransit) ID() string { return v.id }

// Wrap encrypts plaintext with the transit key, aad as associated_data.
func (v *VaultTransit) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	data := map[string]any{"plaintext": base64.StdEncoding.EncodeToString(plaintext)}
	if len(aad) > 0 {
		data["associated_data"] = base64.StdEncoding.EncodeToString(aad)
	}
	s, err := v.write(ctx, v.encrypt, data)
	if err != nil {
		return nil, fmt.Errorf("root key %s: wrap: %w", v.id, err)
	}
	ct, _ := s.Data["ciphertext"].(string)
	if !strings.HasPrefix(ct, "vault:v") {
		return nil, fmt.Errorf("root key %s: wrap: Vault's response has no transit ciphertext", v.id)
	}
	return append([]byte{remoteVersion}, ct...), nil
}

// Unwrap decrypts what Wrap returned.
func (v *VaultTransit) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) < 1 || wrapped[0] != remoteVersion || !strings.HasPrefix(string(wrapped[1:]), "vault:v") {
		return nil, fmt.Errorf("root key %s: unwrap: not a Vault transit wrapped key", v.id)
	}
	data := map[string]any{"ciphertext": string(wrapped[1:])}
	if len(aad) > 0 {
		data["associated_data"] = base64.StdEncoding.EncodeToString(aad)
	}
	s, err := v.write(ctx, v.decrypt, data)
	if err != nil {
		return nil, fmt.Errorf("root key %s: unwrap: %w", v.id, err)
	}
	b64, _ := s.Data["plaintext"].(string)
	pt, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("root key %s: unwrap: Vault's response has no valid plaintext", v.id)
	}
	return pt, nil
}

func (v *VaultTransit) write(ctx context.Context, path string, data map[string]any) (*vault.Secret, error) {
	if v.tokenFile != "" {
		if err := v.loadToken(); err != nil {
			return nil, err
		}
	}
	s, err := v.client.Logical().WriteWithContext(ctx, path, data)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("empty response from Vault for %s", path)
	}
	return s, nil
}
