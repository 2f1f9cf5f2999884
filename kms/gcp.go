package kms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"os"
	"strings"

	gcpkms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/clawhold/clawhold/config"
)

// GCPKMS is a root key that lives in Google Cloud KMS. Wrap and Unwrap call
// projects.locations.keyRings.cryptoKeys.encrypt and decrypt over REST with
// aad as additional_authenticated_data, and check the CRC32C integrity
// fields both ways as Google's data-integrity guidelines describe.
//
// Credentials come from root_key.gcp_kms.credentials_file (checked like the
// root key file) or else from Application Default Credentials.
type GCPKMS struct {
	id     string
	name   string
	client *gcpkms.KeyManagementClient
}

// OpenGCPKMS checks cfg and builds a REST client. It makes no KMS request; a
// wrong key or credentials show in the first Wrap or Unwrap. opts are
// appended to the client options clawhold derives from cfg.
func OpenGCPKMS(ctx context.Context, cfg config.GCPKMS, opts ...option.ClientOption) (*GCPKMS, error) {
	if cfg.KeyName == "" {
		return nil, errors.New("root_key.gcp_kms.key_name is empty: set it to projects/P/locations/L/keyRings/R/cryptoKeys/K")
	}
	if !validGCPKeyName(cfg.KeyName) {
		return nil, fmt.Errorf("root_key.gcp_kms.key_name %q is not of the form projects/P/locations/L/keyRings/R/cryptoKeys/K: name the crypto key, not a key version", cfg.KeyName)
	}
	var copts []option.ClientOption
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("root_key.gcp_kms.endpoint %q is not an http(s) URL: set it to a REST endpoint such as https://cloudkms.googleapis.com or remove it", cfg.Endpoint)
		}
		copts = append(copts, option.WithEndpoint(cfg.Endpoint))
	}
	if cfg.CredentialsFile != "" {
		o, err := gcpCredentials(cfg.CredentialsFile)
		if err != nil {
			return nil, err
		}
		copts = append(copts, o)
	}
	client, err := gcpkms.NewKeyManagementRESTClient(ctx, append(copts, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("gcp kms client: %w", err)
	}
	return &GCPKMS{id: "gcp-kms:" + cfg.KeyName, name: cfg.KeyName, client: client}, nil
}

// validGCPKeyName reports whether name is
// projects/P/locations/L/keyRings/R/cryptoKeys/K with no part empty.
func validGCPKeyName(name string) bool {
	p := strings.Split(name, "/")
	if len(p) != 8 || p[0] != "projects" || p[2] != "locations" || p[4] != "keyRings" || p[6] != "cryptoKeys" {
		return false
	}
	for _, s := range p {
		if s == "" || strings.ContainsAny(s, "?#% ") {
			return false
		}
	}
	return true
}

// gcpCredentials reads a credentials file after the root-key file checks
// (it holds a private key or refresh token) and names its type explicitly,
// as Google asks of callers that load credential configurations themselves.
// The bytes are handed to the client library, which keeps them, so they are
// not cleared here.
func gcpCredentials(path string) (option.ClientOption, error) {
	b, err := readSecretFile("gcp credentials file", path, true)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("gcp credentials file %s does not exist: fix root_key.gcp_kms.credentials_file or remove it to use Application Default Credentials", path)
		}
		return nil, err
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		clear(b)
		return nil, fmt.Errorf("gcp credentials file %s is not JSON: set root_key.gcp_kms.credentials_file to a service account key or credential configuration file", path)
	}
	var t option.CredentialsType
	switch head.Type {
	case "service_account":
		t = option.ServiceAccount
	case "authorized_user":
		t = option.AuthorizedUser
	case "external_account":
		t = option.ExternalAccount
	case "impersonated_service_account":
		t = option.ImpersonatedServiceAccount
	default:
		clear(b)
		return nil, fmt.Errorf("gcp credentials file %s has type %q: want service_account, authorized_user, external_account or impersonated_service_account", path, head.Type)
	}
	return option.WithAuthCredentialsJSON(t, b), nil
}

// ID returns "gcp-kms:" followed by the crypto key's resource name.
func (g *GCPKMS) ID() string { return g.id }

// Close releases the client's connections.
func (g *GCPKMS) Close() error { return g.client.Close() }

// Wrap encrypts plaintext with the crypto key's primary version, bound to aad.
func (g *GCPKMS) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	req := &kmspb.EncryptRequest{
		Name:            g.name,
		Plaintext:       plaintext,
		PlaintextCrc32C: crc32c(plaintext),
	}
	if len(aad) > 0 {
		req.AdditionalAuthenticatedData = aad
		req.AdditionalAuthenticatedDataCrc32C = crc32c(aad)
	}
	resp, err := g.client.Encrypt(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("root key %s: wrap: %w", g.id, err)
	}
	switch {
	case !resp.VerifiedPlaintextCrc32C:
		return nil, fmt.Errorf("root key %s: wrap: KMS did not verify the plaintext checksum: request corrupted in transit", g.id)
	case len(aad) > 0 && !resp.VerifiedAdditionalAuthenticatedDataCrc32C:
		return nil, fmt.Errorf("root key %s: wrap: KMS did not verify the associated data checksum: request corrupted in transit", g.id)
	case resp.CiphertextCrc32C == nil || resp.CiphertextCrc32C.Value != crc32c(resp.Ciphertext).Value:
		return nil, fmt.Errorf("root key %s: wrap: ciphertext checksum mismatch: response corrupted in transit", g.id)
	case !strings.HasPrefix(resp.Name, g.name+"/cryptoKeyVersions/"):
		return nil, fmt.Errorf("root key %s: wrap: KMS used key %q, not a version of the configured key", g.id, resp.Name)
	case len(resp.Ciphertext) == 0:
		return nil, fmt.Errorf("root key %s: wrap: KMS returned no ciphertext", g.id)
	}
	return append([]byte{remoteVersion}, resp.Ciphertext...), nil
}

// Unwrap decrypts what Wrap returned.
func (g *GCPKMS) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) < 2 || wrapped[0] != remoteVersion {
		return nil, fmt.Errorf("root key %s: unwrap: not a GCP KMS wrapped key", g.id)
	}
	ct := wrapped[1:]
	req := &kmspb.DecryptRequest{
		Name:             g.name,
		Ciphertext:       ct,
		CiphertextCrc32C: crc32c(ct),
	}
	if len(aad) > 0 {
		req.AdditionalAuthenticatedData = aad
		req.AdditionalAuthenticatedDataCrc32C = crc32c(aad)
	}
	resp, err := g.client.Decrypt(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("root key %s: unwrap: %w", g.id, err)
	}
	if resp.PlaintextCrc32C == nil || resp.PlaintextCrc32C.Value != crc32c(resp.Plaintext).Value {
		clear(resp.Plaintext)
		return nil, fmt.Errorf("root key %s: unwrap: plaintext checksum mismatch: response corrupted in transit", g.id)
	}
	return resp.Plaintext, nil
}

// crc32c is the Castagnoli CRC-32 of b in the wrapper type KMS uses.
func crc32c(b []byte) *wrapperspb.Int64Value {
	return wrapperspb.Int64(int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))))
}
