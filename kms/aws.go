package kms

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/clawhold/clawhold/config"
)

// awsAADKey is the encryption context key that carries the caller's aad.
const awsAADKey = "clawhold-aad"

// AWSKMS is a root key that lives in AWS KMS (or a KMS-compatible endpoint).
// Wrap and Unwrap call Encrypt and Decrypt on a symmetric key; aad travels as
// the encryption context {"clawhold-aad": base64(aad)}, which KMS binds to
// the ciphertext and records in CloudTrail (aad is not secret). Credentials
// and, unless configured, the region come from the standard AWS chain
// (environment, shared config files, SSO, web identity, instance role).
type AWSKMS struct {
	id     string
	keyID  string
	client *awskms.Client
}

// OpenAWSKMS checks cfg and loads the AWS configuration. It makes no KMS
// request; wrong credentials or key show in the first Wrap or Unwrap.
func OpenAWSKMS(ctx context.Context, cfg config.AWSKMS) (*AWSKMS, error) {
	if cfg.KeyID == "" {
		return nil, errors.New("root_key.aws_kms.key_id is empty: set it to the KMS key's ARN, key id or alias/NAME")
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("root_key.aws_kms.endpoint %q is not an http(s) URL: set it to the KMS endpoint's URL or remove it", cfg.Endpoint)
		}
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration: %w", err)
	}
	if ac.Region == "" {
		return nil, errors.New("no AWS region: set root_key.aws_kms.region (e.g. eu-west-1) or AWS_REGION")
	}
	client := awskms.NewFromConfig(ac, func(o *awskms.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &AWSKMS{id: "aws-kms:" + cfg.KeyID, keyID: cfg.KeyID, client: client}, nil
}

// ID returns "aws-kms:" followed by the configured key id, ARN or alias.
func (k *AWSKMS) ID() string { return k.id }

// Wrap encrypts plaintext under the KMS key, bound to aad.
func (k *AWSKMS) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	out, err := k.client.Encrypt(ctx, &awskms.EncryptInput{
		KeyId:             aws.String(k.keyID),
		Plaintext:         plaintext,
		EncryptionContext: awsContext(aad),
	})
	if err != nil {
		return nil, fmt.Errorf("root key %s: wrap: %w", k.id, err)
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, fmt.Errorf("root key %s: wrap: KMS returned no ciphertext", k.id)
	}
	return append([]byte{remoteVersion}, out.CiphertextBlob...), nil
}

// Unwrap decrypts what Wrap returned. The key id is passed along, so KMS
// refuses a ciphertext made under any other key.
func (k *AWSKMS) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if len(wrapped) < 2 || wrapped[0] != remoteVersion {
		return nil, fmt.Errorf("root key %s: unwrap: not an AWS KMS wrapped key", k.id)
	}
	out, err := k.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId:             aws.String(k.keyID),
		CiphertextBlob:    wrapped[1:],
		EncryptionContext: awsContext(aad),
	})
	if err != nil {
		return nil, fmt.Errorf("root key %s: unwrap: %w", k.id, err)
	}
	return out.Plaintext, nil
}

// awsContext is the encryption context for aad. KMS rejects empty values, so
// an empty aad means no context.
func awsContext(aad []byte) map[string]string {
	if len(aad) == 0 {
		return nil
	}
	return map[string]string{awsAADKey: base64.StdEncoding.EncodeToString(aad)}
}
