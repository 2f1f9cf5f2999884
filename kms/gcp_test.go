package kms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clawhold/clawhold/config"
)

// No GCP KMS server can run here: Google ships no emulator for Cloud KMS.
// fakeCloudKMS is a recorded-response stand-in instead. It speaks the
// documented cloudkms v1 REST surface the Go client uses
// (POST /v1/{name}:encrypt and :decrypt, protojson bodies, int64 wrappers as
// strings, google.rpc error bodies) and the service-account JWT-bearer token
// exchange, checks the requests the way Cloud KMS does (CRC32C of plaintext,
// ciphertext and AAD; AAD bound by AES-GCM), and answers in the documented
// response shapes. A fault switch corrupts responses to exercise the
// client-side integrity checks Google's data-integrity guidelines ask for.
type fakeCloudKMS struct {
	srv     *httptest.Server
	keyName string
	aead    cipher.AEAD
	email   string
	token   string // the access token /token issues

	mu       sync.Mutex
	saKey    *rsa.PublicKey // the service account's key
	fault    string
	requests []map[string]json.RawMessage
}

func newFakeCloudKMS(t *testing.T, keyName string, saKey *rsa.PublicKey, email string) *fakeCloudKMS {
	k := make([]byte, 32)
	rand.Read(k)
	block, _ := aes.NewCipher(k)
	aead, _ := cipher.NewGCM(block)
	tok := make([]byte, 16)
	rand.Read(tok)
	f := &fakeCloudKMS{keyName: keyName, aead: aead, saKey: saKey, email: email, token: "ya29.test-" + fmt.Sprintf("%x", tok)}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCloudKMS) setFault(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fault = s
}

func (f *fakeCloudKMS) lastRequest() map[string]json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

// googleError writes a google.rpc.Status error body as the REST API does.
func googleError(w http.ResponseWriter, code int, status, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": msg, "status": status}})
}

func (f *fakeCloudKMS) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		f.serveToken(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		googleError(w, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
		return
	}
	name, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1/"), ":")
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v1/") || !ok {
		googleError(w, 404, "NOT_FOUND", "unknown method")
		return
	}
	if name != f.keyName {
		googleError(w, 404, "NOT_FOUND", fmt.Sprintf("CryptoKey %s not found.", name))
		return
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		googleError(w, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
		return
	}
	f.mu.Lock()
	f.requests = append(f.requests, body)
	fault := f.fault
	f.mu.Unlock()

	// bytesField decodes a bytes field and checks its CRC32C field, as KMS
	// does when the CRC is present. crcRequired makes a missing CRC for
	// non-empty data an error: Cloud KMS accepts that, clawhold must not do it.
	bytesField := func(field, crcField string, crcRequired bool) ([]byte, bool) {
		var b []byte
		if raw, ok := body[field]; ok {
			if err := json.Unmarshal(raw, &b); err != nil {
				googleError(w, 400, "INVALID_ARGUMENT", "bad "+field)
				return nil, false
			}
		}
		raw, ok := body[crcField]
		if !ok {
			if crcRequired && len(b) > 0 {
				// A real KMS accepts this; clawhold must always send it.
				googleError(w, 400, "INVALID_ARGUMENT", "test server: "+crcField+" missing")
				return nil, false
			}
			return b, true
		}
		var s string // protojson writes Int64Value as a JSON string
		if err := json.Unmarshal(raw, &s); err != nil {
			googleError(w, 400, "INVALID_ARGUMENT", "bad "+crcField)
			return nil, false
		}
		if s != strconv.FormatInt(int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))), 10) {
			googleError(w, 400, "INVALID_ARGUMENT", fmt.Sprintf("The checksum in field %s did not match the data in field %s.", crcField, field))
			return nil, false
		}
		return b, true
	}
	crc := func(b []byte) string {
		return strconv.FormatInt(int64(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))), 10)
	}
	w.Header().Set("Content-Type", "application/json")

	aad, ok := bytesField("additionalAuthenticatedData", "additionalAuthenticatedDataCrc32c", true)
	if !ok {
		return
	}
	switch method {
	case "encrypt":
		pt, ok := bytesField("plaintext", "plaintextCrc32c", true)
		if !ok {
			return
		}
		nonce := make([]byte, f.aead.NonceSize())
		rand.Read(nonce)
		ct := f.aead.Seal(nonce, nonce, pt, aad)
		resp := map[string]any{
			"name":                    f.keyName + "/cryptoKeyVersions/1",
			"ciphertext":              ct,
			"ciphertextCrc32c":        crc(ct),
			"verifiedPlaintextCrc32c": true,
			"verifiedAdditionalAuthenticatedDataCrc32c": len(aad) > 0,
			"protectionLevel": 1, // SOFTWARE; the client asks for enum-encoding=int
		}
		switch fault {
		case "ciphertext crc":
			resp["ciphertextCrc32c"] = crc(append(ct, 0))
		case "ciphertext corrupted":
			resp["ciphertext"] = flip(ct, len(ct)/2)
		case "plaintext unverified":
			resp["verifiedPlaintextCrc32c"] = false
		case "aad unverified":
			resp["verifiedAdditionalAuthenticatedDataCrc32c"] = false
		case "other key":
			resp["name"] = "projects/p/locations/global/keyRings/r/cryptoKeys/other/cryptoKeyVersions/1"
		}
		json.NewEncoder(w).Encode(resp)
	case "decrypt":
		ct, ok := bytesField("ciphertext", "ciphertextCrc32c", true)
		if !ok {
			return
		}
		if len(ct) < f.aead.NonceSize() {
			googleError(w, 400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
			return
		}
		pt, err := f.aead.Open(nil, ct[:f.aead.NonceSize()], ct[f.aead.NonceSize():], aad)
		if err != nil {
			googleError(w, 400, "INVALID_ARGUMENT", "Decryption failed: the ciphertext is invalid.")
			return
		}
		resp := map[string]any{
			"plaintext":       pt,
			"plaintextCrc32c": crc(pt),
			"usedPrimary":     true,
			"protectionLevel": 1,
		}
		switch fault {
		case "plaintext crc":
			resp["plaintextCrc32c"] = crc(append(pt, 0))
		case "plaintext corrupted":
			resp["plaintext"] = flip(pt, 0)
		}
		json.NewEncoder(w).Encode(resp)
	default:
		googleError(w, 404, "NOT_FOUND", "unknown method "+method)
	}
}

// serveToken implements the OAuth 2.0 JWT-bearer grant (RFC 7523) that a
// service-account key uses: it verifies the RS256 assertion against the
// service account's public key and issues f.token.
func (f *fakeCloudKMS) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		http.Error(w, `{"error":"unsupported_grant_type"}`, 400)
		return
	}
	parts := strings.Split(r.PostForm.Get("assertion"), ".")
	if len(parts) != 3 {
		http.Error(w, `{"error":"invalid_grant"}`, 400)
		return
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	f.mu.Lock()
	pub := f.saKey
	f.mu.Unlock()
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) != nil {
		http.Error(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`, 400)
		return
	}
	var claims struct {
		Iss, Aud, Scope string
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(payload, &claims)
	if claims.Iss != f.email || claims.Aud != f.srv.URL+"/token" || !strings.Contains(claims.Scope, "https://www.googleapis.com/auth/cloudkms") {
		http.Error(w, `{"error":"invalid_grant"}`, 400)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": f.token, "token_type": "Bearer", "expires_in": 3600})
}

// gcpTestSetup starts the stand-in and writes a service-account key file
// whose token_uri points at it.
func gcpTestSetup(t *testing.T) (*fakeCloudKMS, config.GCPKMS, []byte) {
	t.Helper()
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	const keyName = "projects/clawhold-test/locations/global/keyRings/clawhold/cryptoKeys/root"
	const email = "clawhold@clawhold-test.iam.gserviceaccount.com"
	f := newFakeCloudKMS(t, keyName, &saKey.PublicKey, email)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	sa, _ := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "clawhold-test",
		"private_key_id": "0123456789abcdef",
		"private_key":    string(pemKey),
		"client_email":   email,
		"client_id":      "100000000000000000000",
		"token_uri":      f.srv.URL + "/token",
	})
	credFile := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(credFile, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	return f, config.GCPKMS{KeyName: keyName, CredentialsFile: credFile, Endpoint: f.srv.URL}, der
}

func TestGCPKMSRecordedResponses(t *testing.T) {
	f, cfg, saDER := gcpTestSetup(t)
	ctx := context.Background()
	r, err := Open(ctx, config.RootKey{Backend: "gcp-kms", GCPKMS: cfg}, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.(*GCPKMS).Close() })
	if r.ID() != "gcp-kms:"+cfg.KeyName {
		t.Errorf("ID = %q", r.ID())
	}
	exerciseRoot(t, r, saDER, []byte(f.token))

	// The request carried the AAD and CRC32C fields Google documents.
	dek := []byte("0123456789abcdef0123456789abcdef")
	aad := []byte("tenant=acme")
	if _, err := r.Wrap(ctx, dek, aad); err != nil {
		t.Fatal(err)
	}
	req := f.lastRequest()
	for field, want := range map[string]string{
		"name":                              strconv.Quote(cfg.KeyName),
		"plaintext":                         strconv.Quote(base64.StdEncoding.EncodeToString(dek)),
		"plaintextCrc32c":                   strconv.Quote(strconv.FormatUint(uint64(crc32.Checksum(dek, crc32.MakeTable(crc32.Castagnoli))), 10)),
		"additionalAuthenticatedData":       strconv.Quote(base64.StdEncoding.EncodeToString(aad)),
		"additionalAuthenticatedDataCrc32c": strconv.Quote(strconv.FormatUint(uint64(crc32.Checksum(aad, crc32.MakeTable(crc32.Castagnoli))), 10)),
	} {
		if got := string(req[field]); got != want {
			t.Errorf("encrypt request %s = %s, want %s", field, got, want)
		}
	}
	w, err := r.Wrap(ctx, dek, aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Unwrap(ctx, w, aad); err != nil {
		t.Fatal(err)
	}
	if req := f.lastRequest(); req["ciphertextCrc32c"] == nil || req["additionalAuthenticatedDataCrc32c"] == nil {
		t.Errorf("decrypt request lacks CRC32C fields: %v", req)
	}

	// Responses corrupted in transit are caught by the client-side checks.
	faults := []struct {
		fault string
		op    string
		want  string
	}{
		{"ciphertext crc", "wrap", "ciphertext checksum mismatch"},
		{"ciphertext corrupted", "wrap", "ciphertext checksum mismatch"},
		{"plaintext unverified", "wrap", "did not verify the plaintext checksum"},
		{"aad unverified", "wrap", "did not verify the associated data checksum"},
		{"other key", "wrap", "not a version of the configured key"},
		{"plaintext crc", "unwrap", "plaintext checksum mismatch"},
		{"plaintext corrupted", "unwrap", "plaintext checksum mismatch"},
	}
	for _, tc := range faults {
		t.Run(tc.fault, func(t *testing.T) {
			f.setFault(tc.fault)
			defer f.setFault("")
			var got []byte
			var err error
			if tc.op == "wrap" {
				got, err = r.Wrap(ctx, dek, aad)
			} else {
				got, err = r.Unwrap(ctx, w, aad)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v, want error containing %q", tc.op, err, tc.want)
			}
			if got != nil {
				t.Error("bytes returned with the error")
			}
			assertNoSecret(t, err, dek, []byte(f.token), saDER)
		})
	}
}

func TestGCPKMSCredentialsFile(t *testing.T) {
	f, cfg, _ := gcpTestSetup(t)
	ctx := context.Background()

	t.Run("mode 0644 refused", func(t *testing.T) {
		os.Chmod(cfg.CredentialsFile, 0o644)
		defer os.Chmod(cfg.CredentialsFile, 0o600)
		_, err := OpenGCPKMS(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), "is mode 0644") || !strings.Contains(err.Error(), "chmod 600 "+cfg.CredentialsFile) {
			t.Fatalf("OpenGCPKMS: %v", err)
		}
	})
	t.Run("unknown type refused", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "cred.json")
		os.WriteFile(p, []byte(`{"type":"api_key"}`), 0o600)
		c := cfg
		c.CredentialsFile = p
		_, err := OpenGCPKMS(ctx, c)
		if err == nil || !strings.Contains(err.Error(), `has type "api_key"`) {
			t.Fatalf("OpenGCPKMS: %v", err)
		}
	})
	t.Run("wrong signer rejected by token endpoint", func(t *testing.T) {
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.saKey = &other.PublicKey
		f.mu.Unlock()
		r, err := OpenGCPKMS(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = r.Wrap(ctx, []byte("x"), nil)
		if err == nil {
			t.Fatal("Wrap succeeded although the token endpoint refused the assertion")
		}
		if bytes.Contains([]byte(err.Error()), []byte(f.token)) {
			t.Fatal("error contains an access token")
		}
	})
}
