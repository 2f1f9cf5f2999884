// Package kms provides clawhold's root key (the key-encryption key, KEK): the
// implementations of [keys.Root].
//
// Local backends hold 32 random bytes in this process and wrap with
// AES-256-GCM:
//
//   - file: a base64 key file (default <data_dir>/root.key), which must be a
//     regular file owned by clawhold's user with mode 0600 or 0400; see
//     [OpenFile] and [GenerateFile].
//   - env: a base64 key in an environment variable, removed from the
//     environment once read; see [OpenEnv].
//   - systemd-credential: a credential systemd passes through
//     $CREDENTIALS_DIRECTORY; see [OpenSystemdCredential].
//
// Remote backends keep the key inside a key management service and ask it
// to wrap and unwrap: vault-transit ([VaultTransit]), aws-kms ([AWSKMS]) and
// gcp-kms ([GCPKMS]).
//
// Wrapped keys start with a format version byte. Errors name the
// configuration key at fault and the fix, and never contain key material or
// credentials.
package kms

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/keys"
)

// Open returns the root key rk describes. dataDir locates the default key
// file (<dataDir>/root.key) for the file backend. Open never creates a key:
// a missing key file is an error; use [GenerateFile] for that.
func Open(ctx context.Context, rk config.RootKey, dataDir string) (keys.Root, error) {
	switch rk.Backend {
	case "", "file":
		path := rk.File
		if path == "" {
			if dataDir == "" {
				return nil, fmt.Errorf("root_key.file is empty and data_dir is not set: set one of them")
			}
			path = filepath.Join(dataDir, "root.key")
		}
		return OpenFile(path)
	case "env":
		return OpenEnv(rk.Env)
	case "systemd-credential":
		return OpenSystemdCredential(rk.SystemdCredential)
	case "vault-transit":
		return OpenVaultTransit(ctx, rk.Vault)
	case "aws-kms":
		return OpenAWSKMS(ctx, rk.AWSKMS)
	case "gcp-kms":
		return OpenGCPKMS(ctx, rk.GCPKMS)
	default:
		return nil, fmt.Errorf("root_key.backend %q is unknown: use file, env, systemd-credential, vault-transit, aws-kms or gcp-kms", rk.Backend)
	}
}

// Each backend implements keys.Root.
var (
	_ keys.Root = (*Local)(nil)
	_ keys.Root = (*VaultTransit)(nil)
	_ keys.Root = (*AWSKMS)(nil)
	_ keys.Root = (*GCPKMS)(nil)
)
