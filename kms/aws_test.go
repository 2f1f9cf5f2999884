package kms

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/clawhold/clawhold/config"
)

const localKMSRegion = "eu-west-2"

// startLocalKMS runs local-kms (github.com/nsmithuk/local-kms, an AWS KMS
// API implementation) on a free port and returns its endpoint. The AWS
// credential chain is pointed at fixed test credentials and away from any
// real configuration on this machine.
func startLocalKMS(t *testing.T) string {
	bin := serverBin(t, "CLAWHOLD_TEST_LOCAL_KMS_BIN", "local-kms")
	port := freePort(t)
	s := startServer(t, bin, nil, []string{
		fmt.Sprintf("PORT=%d", port),
		"KMS_DATA_PATH=" + t.TempDir(),
		"KMS_SEED_PATH=" + filepath.Join(t.TempDir(), "none.yaml"),
		"KMS_REGION=" + localKMSRegion,
		"KMS_ACCOUNT_ID=111122223333",
	}, nil)
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitReady(t, s, http.DefaultClient, endpoint, func(*http.Response) bool { return true })

	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           "AKIDCLAWHOLDTEST",
		"AWS_SECRET_ACCESS_KEY":       "clawhold-test-secret",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_CONFIG_FILE":             empty,
		"AWS_SHARED_CREDENTIALS_FILE": empty,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
	return endpoint
}

// createAWSKey creates a symmetric key and returns its id and ARN.
func createAWSKey(t *testing.T, endpoint string) (id, arn string) {
	t.Helper()
	admin := awskms.NewFromConfig(aws.Config{
		Region:      localKMSRegion,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDCLAWHOLDTEST", "clawhold-test-secret", ""),
	}, func(o *awskms.Options) { o.BaseEndpoint = aws.String(endpoint) })
	out, err := admin.CreateKey(context.Background(), &awskms.CreateKeyInput{Description: aws.String("clawhold test root key")})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	id, arn = *out.KeyMetadata.KeyId, *out.KeyMetadata.Arn
	alias := "alias/clawhold-" + id[:8]
	if _, err := admin.CreateAlias(context.Background(), &awskms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(id)}); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	return id, arn
}

func TestAWSKMSLocalKMS(t *testing.T) {
	endpoint := startLocalKMS(t)
	id, arn := createAWSKey(t, endpoint)
	otherID, _ := createAWSKey(t, endpoint)
	ctx := context.Background()

	for _, keyID := range []string{id, arn, "alias/clawhold-" + id[:8]} {
		t.Run(keyID, func(t *testing.T) {
			r, err := Open(ctx, config.RootKey{Backend: "aws-kms", AWSKMS: config.AWSKMS{KeyID: keyID, Region: localKMSRegion, Endpoint: endpoint}}, "")
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if r.ID() != "aws-kms:"+keyID {
				t.Errorf("ID = %q", r.ID())
			}
			exerciseRoot(t, r, []byte("clawhold-test-secret"))
		})
	}

	t.Run("other key cannot unwrap", func(t *testing.T) {
		r1, err := OpenAWSKMS(ctx, config.AWSKMS{KeyID: id, Region: localKMSRegion, Endpoint: endpoint})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := OpenAWSKMS(ctx, config.AWSKMS{KeyID: otherID, Region: localKMSRegion, Endpoint: endpoint})
		if err != nil {
			t.Fatal(err)
		}
		w, err := r1.Wrap(ctx, []byte("0123456789abcdef0123456789abcdef"), []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r2.Unwrap(ctx, w, []byte("aad")); err == nil {
			t.Fatal("a different KMS key unwrapped the ciphertext")
		}
	})

	t.Run("region from AWS_REGION", func(t *testing.T) {
		t.Setenv("AWS_REGION", localKMSRegion)
		r, err := OpenAWSKMS(ctx, config.AWSKMS{KeyID: id, Endpoint: endpoint})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Wrap(ctx, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAWSKMSNoRegion(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	_, err := OpenAWSKMS(context.Background(), config.AWSKMS{KeyID: "alias/x"})
	if err == nil || !strings.Contains(err.Error(), "set root_key.aws_kms.region") {
		t.Fatalf("OpenAWSKMS without a region: %v", err)
	}
}
