package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/secrets"
)

// FixOptions tune Fix.
type FixOptions struct {
	// DryRun shows what would change (a diff of the config, the modes,
	// the secrets to move) and changes nothing.
	DryRun bool
	// Out receives what Fix does or would do.
	Out io.Writer
	// MoveSecrets moves the plaintext credentials of the config at path
	// into clawhold's secret store, rewriting them as SecretRefs (as
	// `clawhold secrets import` does, with its own 0600 backup). Nil when
	// there is no clawhold data dir: such findings then stay.
	MoveSecrets func(ctx context.Context, path string, dryRun bool) error
	// Now names the backups.
	Now time.Time
}

// configFix is one safe change to openclaw.json for a finding: what it
// does, for the report, and the change. The finding's key says which
// credential a token fix regenerates.
type configFix func(f Finding, root map[string]any) (what string, err error)

// configFixes are the config changes Fix makes, by rule. Each is safe on
// its own: it narrows exposure and breaks nothing a loopback client
// relies on. A regenerated token is written to the config, where the
// secrets move that follows seals it into clawhold's store when there is
// one; Fix never prints it. A credential given as a SecretRef is left to
// its owner.
func configFixes() map[string]configFix {
	set := func(key string, v any) configFix {
		return func(_ Finding, root map[string]any) (string, error) {
			return fmt.Sprintf("%s = %q", key, v), setKey(root, key, v)
		}
	}
	regenerate := func(f Finding, root map[string]any) (string, error) {
		key := f.Location.Key
		if key == "" {
			return "", nil
		}
		if v, _ := (&Config{Root: root}).Get(key); v == nil {
			return "", nil
		} else if _, isString := v.(string); !isString {
			return "", nil // a SecretRef: not ours to rewrite
		}
		return key + " = <a new random 256-bit token>", setKey(root, key, newToken())
	}
	return map[string]configFix{
		ruleBindNoAuth.ID: set("gateway.bind", "loopback"),
		ruleAuthNone.ID: func(_ Finding, root map[string]any) (string, error) {
			return `gateway.auth = {mode: "token", token: <a new random 256-bit token>}`,
				setKey(root, "gateway.auth", map[string]any{"mode": "token", "token": newToken()})
		},
		ruleMDNSFull.ID:          set("discovery.mdns.mode", "off"),
		ruleSecretPlaceholder.ID: regenerate,
		ruleSecretShort.ID:       regenerate,
		ruleSecretLowEntropy.ID:  regenerate,
		ruleHooksTokenShort.ID:   regenerate,
	}
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// setKey sets a dotted key path in a decoded JSON object, creating
// objects on the way.
func setKey(root map[string]any, path string, v any) error {
	keys := strings.Split(path, ".")
	m := root
	for _, k := range keys[:len(keys)-1] {
		switch next := m[k].(type) {
		case map[string]any:
			m = next
		case nil:
			n := map[string]any{}
			m[k] = n
			m = n
		default:
			return fmt.Errorf("%s is not an object", k)
		}
	}
	m[keys[len(keys)-1]] = v
	return nil
}

// Fix repairs what is safe to repair among rep's findings: config
// settings (bind, mDNS, weak tokens), plaintext credentials moved into
// clawhold's secret store, and file modes (directories 0700, files 0600).
// Every file whose contents change is first copied to a 0600 backup
// beside it. The caller audits again afterwards.
func Fix(ctx context.Context, t *Target, rep *Report, o FixOptions) error {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	var modes, config []Finding
	secretsToMove := false
	for _, f := range rep.Findings {
		if f.Source != SourceClawhold || !f.Fixable {
			continue
		}
		if _, ok := configFixes()[f.ID]; ok {
			config = append(config, f)
		}
		switch {
		case strings.HasPrefix(f.ID, "fs.") && f.Location.File != "":
			modes = append(modes, f)
		case strings.HasPrefix(f.ID, "secrets.config"):
			secretsToMove = true
		}
	}

	if err := fixConfig(t, config, o); err != nil {
		return err
	}
	if secretsToMove {
		switch {
		case o.MoveSecrets == nil:
			fmt.Fprintln(o.Out, "plaintext credentials in the config stay: moving them needs clawhold's data dir (clawhold init)")
		default:
			if err := o.MoveSecrets(ctx, t.ConfigPath, o.DryRun); err != nil {
				return fmt.Errorf("moving the config's credentials into clawhold's store: %w", err)
			}
		}
	}
	return fixModes(modes, o)
}

// fixConfig applies the config fixes of findings, as one rewrite.
func fixConfig(t *Target, findings []Finding, o FixOptions) error {
	if len(findings) == 0 || t.Config == nil {
		return nil
	}
	orig, err := os.ReadFile(t.ConfigPath)
	if err != nil {
		return fmt.Errorf("fix: %w", err)
	}
	defer clear(orig)
	c, err := ParseConfig(t.ConfigPath, orig)
	if err != nil {
		return fmt.Errorf("fix: %w", err)
	}
	fixes := configFixes()
	var done []string
	seen := map[string]bool{}
	for _, f := range findings {
		k := f.ID + " " + f.Location.Key
		if seen[k] {
			continue
		}
		seen[k] = true
		what, err := fixes[f.ID](f, c.Root)
		if err != nil {
			return fmt.Errorf("fix %s in %s: %w", f.ID, t.ConfigPath, err)
		}
		if what != "" {
			done = append(done, fmt.Sprintf("%s (%s)", what, f.ID))
		}
	}
	if len(done) == 0 {
		return nil
	}
	plain, err := secrets.PlainJSON(c.Root)
	if err != nil {
		return fmt.Errorf("fix: %s: %w", t.ConfigPath, err)
	}
	out, err := json.MarshalIndent(plain, "", "  ")
	if err != nil {
		return fmt.Errorf("fix: encoding %s: %w", t.ConfigPath, err)
	}
	out = append(out, '\n')
	defer clear(out)
	verb := "changed"
	if o.DryRun {
		verb = "would change"
	}
	fmt.Fprintf(o.Out, "%s %s:\n", verb, t.ConfigPath)
	for _, d := range done {
		fmt.Fprintf(o.Out, "  %s\n", d)
	}
	if o.DryRun {
		// The diff is of the two documents as JSON with every credential
		// value hidden: a token must not reach a terminal or a CI log.
		before, err := ParseConfig(t.ConfigPath, orig)
		if err != nil {
			return fmt.Errorf("fix: %w", err)
		}
		a, err := redactedJSON(before.Root)
		if err != nil {
			return fmt.Errorf("fix: %s: %w", t.ConfigPath, err)
		}
		b, err := redactedJSON(plain)
		if err != nil {
			return fmt.Errorf("fix: %s: %w", t.ConfigPath, err)
		}
		diff, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(a), B: difflib.SplitLines(b),
			FromFile: t.ConfigPath, ToFile: t.ConfigPath + " (fixed)", Context: 2,
		})
		fmt.Fprint(o.Out, diff)
		return nil
	}
	backup := fmt.Sprintf("%s.clawhold-fix-%s", t.ConfigPath, o.Now.UTC().Format("20060102T150405Z"))
	if err := datadir.WriteFileAtomic(backup, orig, 0o600); err != nil {
		return fmt.Errorf("fix: writing the backup %s: %w", backup, err)
	}
	// The rewritten file keeps its owner: OpenClaw's user must still read
	// it when root runs the fix.
	var keepOwner func(*os.File) error
	if fi, err := os.Stat(t.ConfigPath); err == nil && os.Geteuid() == 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			keepOwner = func(f *os.File) error { return f.Chown(int(st.Uid), int(st.Gid)) }
		}
	}
	if err := datadir.WriteFileAtomicFunc(t.ConfigPath, out, 0o600, keepOwner); err != nil {
		return fmt.Errorf("fix: rewriting %s (original kept at %s): %w", t.ConfigPath, backup, err)
	}
	fmt.Fprintf(o.Out, "  original kept at %s (0600); comments and formatting of the original are not kept\n", backup)
	return nil
}

// redactedJSON is v as indented JSON with the value of every key that
// names a credential replaced, however deeply it is nested.
func redactedJSON(v any) (string, error) {
	var walk func(v any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, e := range v {
				if _, isString := e.(string); isString && credentialKey(k) {
					out[k] = "<redacted>"
					continue
				}
				out[k] = walk(e)
			}
			return out
		case []any:
			out := make([]any, len(v))
			for i, e := range v {
				out[i] = walk(e)
			}
			return out
		}
		return v
	}
	plain, err := secrets.PlainJSON(walk(v))
	if err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(plain, "", "  ")
	return string(b) + "\n", err
}

// credentialKey reports config keys whose string values are secrets.
func credentialKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"token", "password", "secret", "apikey", "privatekey", "passphrase", "identitydata", "encryptkey"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return k == "key" || k == "value" || k == "authorization"
}

// fixModes tightens modes: directories 0700, files 0600. Contents do not
// change, so no backup is taken; the old mode is printed.
func fixModes(findings []Finding, o FixOptions) error {
	seen := map[string]bool{}
	for _, f := range findings {
		p := f.Location.File
		if seen[p] {
			continue
		}
		seen[p] = true
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			continue // gone, or a symlink whose target is not ours to change
		}
		want := fs.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() == want {
			continue
		}
		verb := "chmod"
		if o.DryRun {
			verb = "would chmod"
		}
		fmt.Fprintf(o.Out, "%s %o %s (was %o; %s)\n", verb, want, p, fi.Mode().Perm(), f.ID)
		if o.DryRun {
			continue
		}
		if err := os.Chmod(p, want); err != nil {
			return fmt.Errorf("fix %s: %w", f.ID, err)
		}
	}
	return nil
}
