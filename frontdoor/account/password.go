package account

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultParams is OWASP's argon2id baseline (Password Storage Cheat Sheet):
// 19 MiB, 2 passes, 1 lane. OWASP lists it as equivalent to its other
// options (46 MiB/1 pass, 12 MiB/3, ...); we take it because unknown users
// cost a full hash too, so memory per unauthenticated request is what an
// attacker multiplies, and concurrent hashes are capped (Config.MaxHashes)
// to bound the total. Raise it with Config.Params: logins rehash.
func DefaultParams() Params { return Params{Memory: 19 * 1024, Time: 2, Threads: 1} }

const (
	saltLen = 16 // bytes; RFC 9106 recommends 16
	keyLen  = 32 // bytes of hash output

	// Bounds on what a stored hash may ask for, so a corrupt or hostile row
	// cannot make verification allocate gigabytes or spin for minutes.
	maxMemory  = 1 << 20 // KiB = 1 GiB
	maxTime    = 64
	minSaltLen = 8
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 64

	// MinPasswordLen is in characters (runes), per NIST SP 800-63B's
	// guidance that length, not composition, makes passwords strong.
	MinPasswordLen = 12
	// MaxPasswordLen (bytes) bounds the work an unauthenticated request
	// can cause before argon2 compresses the input.
	MaxPasswordLen = 1024
)

// strongEnough reports whether p meets one of OWASP's argon2id options.
func (p Params) strongEnough() bool {
	if p.Threads < 1 {
		return false
	}
	switch {
	case p.Memory >= 47104 && p.Time >= 1,
		p.Memory >= 19456 && p.Time >= 2,
		p.Memory >= 12288 && p.Time >= 3,
		p.Memory >= 9216 && p.Time >= 4,
		p.Memory >= 7168 && p.Time >= 5:
		return true
	}
	return false
}

func (p Params) valid() bool {
	// argon2 needs at least 8 KiB per lane.
	return p.Threads >= 1 && p.Time >= 1 && p.Time <= maxTime &&
		p.Memory >= 8*uint32(p.Threads) && p.Memory <= maxMemory
}

// phc is a parsed argon2id PHC string.
type phc struct {
	params Params
	salt   []byte
	hash   []byte
}

// errBadHash says a stored hash is not one we can verify. It never
// includes the hash.
var errBadHash = errors.New("malformed argon2id hash")

// encode formats h as $argon2id$v=19$m=M,t=T,p=P$salt$hash (unpadded
// standard base64, as in the PHC string format and the reference
// implementation).
func (h phc) encode() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, h.params.Memory, h.params.Time, h.params.Threads,
		base64.RawStdEncoding.EncodeToString(h.salt), base64.RawStdEncoding.EncodeToString(h.hash))
}

// parsePHC parses what encode writes, strictly: one canonical form, so that
// a hash that parses is also one encode would produce.
func parsePHC(s string) (phc, error) {
	var h phc
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return h, errBadHash
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return h, errBadHash
	}
	var vals [3]uint64
	for i, key := range []string{"m=", "t=", "p="} {
		num, ok := strings.CutPrefix(kv[i], key)
		// Canonical decimal only: no sign, no leading zeros.
		if !ok || num == "" || (len(num) > 1 && num[0] == '0') || num[0] == '+' {
			return h, errBadHash
		}
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return h, errBadHash
		}
		vals[i] = v
	}
	if vals[2] > 255 {
		return h, errBadHash
	}
	h.params = Params{Memory: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2])}
	if !h.params.valid() {
		return h, errBadHash
	}
	var ok bool
	if h.salt, ok = decodeB64(parts[4], minSaltLen, maxSaltLen); !ok {
		return phc{}, errBadHash
	}
	if h.hash, ok = decodeB64(parts[5], minKeyLen, maxKeyLen); !ok {
		return phc{}, errBadHash
	}
	return h, nil
}

// decodeB64 decodes canonical unpadded base64 of min to max bytes. The
// re-encoding check refuses what the decoder would skip (CR, LF).
func decodeB64(s string, min, max int) ([]byte, bool) {
	if len(s) > base64.RawStdEncoding.EncodedLen(max) {
		return nil, false
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) < min || len(b) > max || base64.RawStdEncoding.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}

// hasher runs argon2id with a cap on concurrent runs: each holds
// Params.Memory KiB, and unauthenticated requests can start one.
type hasher struct {
	params Params
	sem    chan struct{}
	// calls counts argon2 invocations, so tests can check that the
	// unknown-user path really hashes (timing tests are flaky).
	calls func()
}

func (hs *hasher) idKey(ctx context.Context, password, salt []byte, p Params, n uint32) ([]byte, error) {
	select {
	case hs.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-hs.sem }()
	if hs.calls != nil {
		hs.calls()
	}
	return argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, n), nil
}

// hash returns the PHC string of password under the current parameters.
func (hs *hasher) hash(ctx context.Context, password []byte) (string, error) {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	key, err := hs.idKey(ctx, password, salt, hs.params, keyLen)
	if err != nil {
		return "", err
	}
	return phc{params: hs.params, salt: salt, hash: key}.encode(), nil
}

// verify reports whether password matches encoded, and whether encoded
// should be replaced because its parameters differ from the current ones.
// A malformed hash verifies nothing but still costs one hash (against
// dummy), so it cannot be told apart by timing.
func (hs *hasher) verify(ctx context.Context, password []byte, encoded, dummy string) (ok, rehash bool, err error) {
	h, perr := parsePHC(encoded)
	if perr != nil {
		if h, err = parsePHC(dummy); err != nil {
			return false, false, fmt.Errorf("dummy hash: %w", err)
		}
	}
	key, err := hs.idKey(ctx, password, h.salt, h.params, uint32(len(h.hash)))
	if err != nil {
		return false, false, err
	}
	ok = subtle.ConstantTimeCompare(key, h.hash) == 1
	if perr != nil {
		return false, false, perr
	}
	return ok, h.params != hs.params || len(h.salt) != saltLen || len(h.hash) != keyLen, nil
}

// ErrWeakPassword is wrapped by errors for passwords the policy refuses.
// The message says why, never what the password was.
var ErrWeakPassword = errors.New("password refused")

// commonPasswords are frequent passwords of at least MinPasswordLen
// characters (shorter ones fail the length check anyway), from public
// breach corpora, lower case, one per line. A constant, not a map, keeps
// the package free of mutable state.
const commonPasswords = `
123456789012
1234567890123
12345678901234
123456789123
111111111111
000000000000
123123123123
1q2w3e4r5t6y
1qaz2wsx3edc
qwertyuiopas
qwertyuiop12
qwerty123456
qwertyqwerty
asdfghjkl123
zxcvbnm12345
password1234
password123!
password12345
passwordpassword
p@ssw0rd1234
p@ssword1234
passw0rd1234
iloveyou1234
letmein12345
welcome12345
welcome123456
changeme1234
changeme123!
administrator
administrator1
admin1234567
adminadmin12
trustno11234
football1234
baseball1234
superman1234
sunshine1234
princess1234
dragon123456
monkey123456
starwars1234
qazwsxedcrfv
correcthorsebatterystaple
abcdefghijkl
abc123abc123
aaaaaaaaaaaa
clawhold1234
clawhold123!
openclaw1234
openclaw123!
`

// checkPassword applies the password policy: length, valid UTF-8, not the
// user name (nor containing it), not a common password, not one repeated
// character.
func checkPassword(name string, password []byte) error {
	if len(password) > MaxPasswordLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrWeakPassword, MaxPasswordLen)
	}
	if !utf8.Valid(password) {
		return fmt.Errorf("%w: not valid UTF-8", ErrWeakPassword)
	}
	if utf8.RuneCount(password) < MinPasswordLen {
		return fmt.Errorf("%w: shorter than %d characters", ErrWeakPassword, MinPasswordLen)
	}
	lower := bytes.ToLower(password)
	defer clear(lower)
	if name != "" && bytes.Contains(lower, []byte(name)) {
		return fmt.Errorf("%w: contains the user name", ErrWeakPassword)
	}
	if bytes.Count(lower, lower[:1]) == len(lower) {
		return fmt.Errorf("%w: one repeated character", ErrWeakPassword)
	}
	// string(lower) == line compares without copying the password.
	for line := range strings.SplitSeq(commonPasswords, "\n") {
		if line != "" && string(lower) == line {
			return fmt.Errorf("%w: a commonly used password", ErrWeakPassword)
		}
	}
	return nil
}
