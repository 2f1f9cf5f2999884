package audit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// Filesystem rules. Which area a rule serves follows what the bits
// protect: who can read a file is confidentiality of data at rest
// (Encryption: the file permissions are the only protection OpenClaw's
// plaintext state has), who can write or replace it is the boundary
// between users (Isolation).
//
// The fix (audit --fix, written elsewhere) chmods what is Fixable here:
// directories to 0700, files to 0600.
var fsRules = []Rule{
	{ID: "fs.state_dir_readable", Area: Encryption, Severity: Warn, Fixable: true,
		// openclaw: fs.state_dir.perms_readable
		Title:       "OpenClaw state dir is readable or enterable by other users",
		Remediation: "chmod 700 the state dir (clawhold audit --fix does it)"},
	{ID: "fs.state_dir_writable", Area: Isolation, Severity: Warn, Fixable: true,
		// openclaw: fs.state_dir.perms_world_writable, fs.state_dir.perms_group_writable
		Title:       "OpenClaw state dir is writable by other users (critical when world-writable)",
		Remediation: "chmod 700 the state dir (clawhold audit --fix does it)"},
	{ID: "fs.symlinked_path", Area: Isolation, Severity: Warn,
		// openclaw: fs.state_dir.symlink, fs.config.symlink
		Title:       "OpenClaw state dir or config is a symlink (another trust boundary)",
		Remediation: "replace the symlink with the real directory or file, or point OPENCLAW_STATE_DIR / OPENCLAW_CONFIG_PATH at the real path"},
	{ID: "fs.config_readable", Area: Encryption, Severity: Warn, Fixable: true,
		// openclaw: fs.config.perms_group_readable, fs.config.perms_world_readable,
		// fs.config_include.perms_group_readable, fs.config_include.perms_world_readable
		Title:       "OpenClaw config or $include file is readable by other users (critical when world-readable)",
		Remediation: "chmod 600 the config and every $include file (clawhold audit --fix does it)"},
	{ID: "fs.config_writable", Area: Isolation, Severity: Critical, Fixable: true,
		// openclaw: fs.config.perms_writable, fs.config_include.perms_writable
		Title:       "OpenClaw config or $include file is writable by other users",
		Remediation: "chmod 600 the config and every $include file (clawhold audit --fix does it)"},
	{ID: "fs.credentials_file_readable", Area: Encryption, Severity: Warn, Fixable: true,
		// openclaw: fs.credentials_dir.perms_readable, fs.auth_profiles.perms_readable
		// (OpenClaw checks the directory only and misses nested files; its
		// --fix leaves them open)
		Title:       "Credential file or directory is readable by other users (critical when world-readable and reachable)",
		Remediation: "chmod 700 every directory and 600 every file under credentials/, agents/*/agent/ and auth-profile-secrets/ (clawhold audit --fix does it)"},
	{ID: "fs.credentials_file_writable", Area: Isolation, Severity: Warn, Fixable: true,
		// openclaw: fs.credentials_dir.perms_writable, fs.auth_profiles.perms_writable
		Title:       "Credential file or directory is writable by other users (critical when world-writable)",
		Remediation: "chmod 700 every directory and 600 every file under credentials/, agents/*/agent/ and auth-profile-secrets/ (clawhold audit --fix does it)"},
	{ID: "fs.sqlite_readable", Area: Encryption, Severity: Warn, Fixable: true,
		// openclaw: fs.auth_profiles.perms_readable, fs.sessions_store.perms_readable
		Title:       "OpenClaw SQLite store (auth profiles, transcripts, secret store) is readable by other users (critical when world-readable)",
		Remediation: "chmod 600 state/openclaw.sqlite, agents/*/agent/openclaw-agent.sqlite and their -wal/-shm files (clawhold audit --fix does it)"},
	{ID: "fs.sqlite_writable", Area: Isolation, Severity: Critical, Fixable: true,
		// openclaw: fs.auth_profiles.perms_writable
		Title:       "OpenClaw SQLite store is writable by other users",
		Remediation: "chmod 600 state/openclaw.sqlite, agents/*/agent/openclaw-agent.sqlite and their -wal/-shm files (clawhold audit --fix does it)"},
	{ID: "fs.log_file_readable", Area: Encryption, Severity: Warn, Fixable: true,
		// openclaw: fs.log_file.perms_readable (OpenClaw's --fix leaves it)
		Title:       "OpenClaw log file is readable by other users",
		Remediation: "chmod 600 the log files (logging.file, its rotations and the state dir's logs/; clawhold audit --fix does it)"},
	{ID: "fs.legacy_state_dir", Area: Encryption, Severity: Warn,
		Title:       "Legacy ~/.clawdbot or ~/.moltbot state dir still exists (old state with credentials)",
		Remediation: "after checking nothing still uses it (openclaw doctor migrates it), remove the legacy directory: rm -rf ~/.clawdbot ~/.moltbot"},
	{ID: "fs.parent_writable", Area: Isolation, Severity: Critical,
		Title:       "A parent directory of the state dir or config can be changed by another user, who could swap in their own",
		Remediation: "chmod go-w the parent directory (or chown it to root or the OpenClaw user), or move the state dir under a directory only its user and root control"},
	{ID: "fs.parent_sticky", Area: Isolation, Severity: Info,
		Title:       "The state dir or config sits directly in a sticky world-writable directory such as /tmp",
		Remediation: "move the state dir and config into a private directory (e.g. ~/.openclaw, mode 700); another user can claim the name before it is created and tmp cleaners delete it"},
	{ID: "fs.not_owned", Area: Isolation, Severity: Warn,
		Title:       "OpenClaw file is not owned by the user who owns the state dir (and runs OpenClaw)",
		Remediation: "chown the file to the state dir's owner (as root: chown -R USER STATE_DIR), after finding out who wrote it"},
}

func filesystemChecks() []check {
	return []check{{name: "filesystem", rules: fsRules, run: runFilesystem}}
}

// maxFSWalk bounds the entries one walk visits, so that a state dir with a
// huge tree keeps the audit fast; a walk that hits it says so.
const maxFSWalk = 200_000

// fsAudit carries one filesystem run: the state dir's owner, against which
// ownership is judged, and the paths already judged for ownership.
type fsAudit struct {
	t     *Target
	r     *results
	owner int // -1 when unknown
	owned map[string]bool
}

func runFilesystem(ctx context.Context, t *Target, r *results) {
	a := &fsAudit{t: t, r: r, owner: -1, owned: map[string]bool{}}
	a.stateDir()
	a.config()
	a.credentials(ctx)
	a.sqlite()
	a.logs(ctx)
	a.legacy()
	a.parents(t.StateDir)
	if t.ConfigPath != "" && filepath.Dir(t.ConfigPath) != t.StateDir {
		a.parents(filepath.Dir(t.ConfigPath))
	}
	a.parentSticky()
}

// fileUID returns the owner of fi.
func fileUID(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// accessBits sorts the group and other bits of a mode. A directory counts
// as readable when others may list (r) or enter (x) it.
type accessBits struct {
	groupRead, otherRead, groupWrite, otherWrite bool
}

func accessOf(m fs.FileMode) accessBits {
	p := m.Perm()
	rd := fs.FileMode(0o4)
	if m.IsDir() {
		rd = 0o5
	}
	return accessBits{
		groupRead:  p&(rd<<3) != 0,
		otherRead:  p&rd != 0,
		groupWrite: p&0o020 != 0,
		otherWrite: p&0o002 != 0,
	}
}

func (b accessBits) readable() bool { return b.groupRead || b.otherRead }
func (b accessBits) writable() bool { return b.groupWrite || b.otherWrite }

// who names who may access: "every user" beats "the group".
func who(other bool) string {
	if other {
		return "every user"
	}
	return "its group"
}

func kind(fi fs.FileInfo) string {
	if fi.IsDir() {
		return "directory"
	}
	return "file"
}

// checkOwner records a finding when path is not owned by the state dir's
// owner. Each path is judged once.
func (a *fsAudit) checkOwner(path string, fi fs.FileInfo) {
	if a.owner < 0 || a.owned[path] {
		return
	}
	a.owned[path] = true
	if uid, ok := fileUID(fi); ok && uid != a.owner {
		a.r.add("fs.not_owned", Location{File: path},
			fmt.Sprintf("%s %s is owned by uid %d; the state dir is owned by uid %d", kind(fi), path, uid, a.owner))
	}
}

func (a *fsAudit) stateDir() {
	dir := a.t.StateDir
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		a.r.fail("state dir: %v", err)
		return
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := filepath.EvalSymlinks(dir)
		a.r.add("fs.symlinked_path", Location{File: dir}, fmt.Sprintf("state dir %s is a symlink to %s", dir, target))
		if fi, err = os.Stat(dir); err != nil {
			a.r.fail("state dir: %v", err)
			return
		}
	}
	if uid, ok := fileUID(fi); ok {
		a.owner = uid
	}
	// Its own entries: a file another user put there is theirs to change.
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if efi, err := e.Info(); err == nil && efi.Mode()&fs.ModeSymlink == 0 {
				a.checkOwner(filepath.Join(dir, e.Name()), efi)
			}
		}
	}
	b := accessOf(fi.Mode())
	if b.readable() {
		a.r.add("fs.state_dir_readable", Location{File: dir},
			fmt.Sprintf("state dir %s is mode %04o: %s can list or enter it", dir, fi.Mode().Perm(), who(b.otherRead)))
	}
	if b.writable() {
		f := a.r.add("fs.state_dir_writable", Location{File: dir},
			fmt.Sprintf("state dir %s is mode %04o: %s can create, rename and delete its files", dir, fi.Mode().Perm(), who(b.otherWrite)))
		if b.otherWrite {
			f.Severity = Critical
		}
	}
}

// config checks openclaw.json and every file it pulls in with $include.
func (a *fsAudit) config() {
	path := a.t.ConfigPath
	if path == "" {
		return
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		a.r.fail("config: %v", err)
		return
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := filepath.EvalSymlinks(path)
		a.r.add("fs.symlinked_path", Location{File: path}, fmt.Sprintf("config %s is a symlink to %s", path, target))
	}
	a.configFile("config", path)
	if a.t.Config != nil {
		for _, inc := range configIncludes(a.t.Config, 10) {
			if inc.err != nil {
				a.r.fail("config include: %v", inc.err)
				continue
			}
			a.configFile("$include file (from "+inc.from+")", inc.path)
		}
	}
}

func (a *fsAudit) configFile(what, path string) {
	fi, err := os.Stat(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.r.fail("%s: %v", what, err)
		}
		return
	}
	a.checkOwner(path, fi)
	b := accessOf(fi.Mode())
	if b.readable() {
		f := a.r.add("fs.config_readable", Location{File: path},
			fmt.Sprintf("%s %s is mode %04o: %s can read its tokens and settings", what, path, fi.Mode().Perm(), who(b.otherRead)))
		if b.otherRead {
			f.Severity = Critical
		}
	}
	if b.writable() {
		a.r.add("fs.config_writable", Location{File: path},
			fmt.Sprintf("%s %s is mode %04o: %s can change auth and tool policy", what, path, fi.Mode().Perm(), who(b.otherWrite)))
	}
}

// configInclude is one file a config pulls in.
type configInclude struct {
	path, from string
	err        error
}

// configIncludes finds the files named by "$include" anywhere in cfg (a
// string or an array of strings; OpenClaw resolves them relative to the
// including file and nests them up to 10 levels), following nested
// includes. docs/gateway/config-secrets-env.md.
func configIncludes(cfg *Config, depth int) []configInclude {
	var out []configInclude
	seen := map[string]bool{filepath.Clean(cfg.Path): true}
	var visit func(c *Config, depth int)
	visit = func(c *Config, depth int) {
		for _, rel := range includeRefs(c.Root) {
			p := rel
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(c.Path), p)
			}
			p = filepath.Clean(p)
			if seen[p] {
				continue
			}
			seen[p] = true
			out = append(out, configInclude{path: p, from: c.Path})
			if depth <= 1 {
				continue
			}
			sub, err := LoadConfig(p)
			if err != nil {
				// An include need not be an object (an array entry);
				// its own $include is then not followed.
				if !strings.Contains(err.Error(), "top level is not an object") {
					out = append(out, configInclude{err: err})
				}
				continue
			}
			if sub != nil {
				visit(sub, depth-1)
			}
		}
	}
	visit(cfg, depth)
	return out
}

// includeRefs returns every $include value under v.
func includeRefs(v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if k == "$include" {
				switch inc := x[k].(type) {
				case string:
					out = append(out, inc)
				case []any:
					for _, e := range inc {
						if s, ok := e.(string); ok {
							out = append(out, s)
						}
					}
				}
				continue
			}
			out = append(out, includeRefs(x[k])...)
		}
	case []any:
		for _, e := range x {
			out = append(out, includeRefs(e)...)
		}
	}
	return out
}

// credentialRoots returns the directories and files under the state dir
// that hold credentials: channel credentials, each agent's dir (legacy
// auth-profiles.json and auth.json, models.json with provider keys,
// codex-home), Fleet's auth-profile secrets, the file SecretRef payload,
// the runtime .env, the gateway's TLS key and the *.key files at the top.
func credentialRoots(t *Target) []string {
	s := t.StateDir
	roots := []string{
		filepath.Join(s, "credentials"),
		filepath.Join(s, "auth-profile-secrets"),
		filepath.Join(s, "fleet", "auth-profile-secrets"),
		filepath.Join(s, "secrets.json"),
		filepath.Join(s, ".env"),
		filepath.Join(s, "gateway", "tls"),
	}
	if d := t.Env["OPENCLAW_AUTH_PROFILE_SECRET_DIR"]; d != "" {
		roots = append(roots, d)
	}
	// Keys at the top (config-journal-fingerprint.key, seen after a real
	// gateway run).
	keys, _ := filepath.Glob(filepath.Join(s, "*.key"))
	agents, _ := filepath.Glob(filepath.Join(s, "agents", "*", "agent"))
	return append(append(roots, keys...), agents...)
}

// isSQLiteStore reports whether name is one of OpenClaw's SQLite stores or
// their sidecars, which the sqlite rules judge.
func isSQLiteStore(name string) bool {
	for _, base := range []string{"openclaw.sqlite", "openclaw-agent.sqlite"} {
		if name == base || strings.HasPrefix(name, base+"-") {
			return true
		}
	}
	return false
}

// credentials judges every directory and file under the credential roots,
// not only the roots: a 0644 file inside a 0700 directory is still a
// finding (warn, latent: any chmod of the directory, a copy or archive
// that keeps modes, exposes it) and critical when other users can reach
// it now.
func (a *fsAudit) credentials(ctx context.Context) {
	n := 0
	for _, root := range credentialRoots(a.t) {
		fi, err := os.Lstat(root)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			a.r.fail("credentials: %v", err)
			continue
		}
		reach := a.reachable(filepath.Dir(root))
		a.credentialEntry(ctx, root, fi, reach, &n)
	}
}

// reach says whether other users (group, every user) can traverse to a
// directory's entries.
type reach struct{ group, other bool }

// reachable reports who can traverse from the state dir down to dir.
func (a *fsAudit) reachable(dir string) reach {
	rc := reach{group: true, other: true}
	rel, err := filepath.Rel(a.t.StateDir, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		// Outside the state dir (OPENCLAW_AUTH_PROFILE_SECRET_DIR):
		// judge the directory itself only.
		return a.reachFrom(dir, rc)
	}
	p := a.t.StateDir
	rc = a.reachFrom(p, rc)
	if rel == "." {
		return rc
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		rc = a.reachFrom(p, rc)
	}
	return rc
}

func (a *fsAudit) reachFrom(dir string, rc reach) reach {
	fi, err := os.Stat(dir)
	if err != nil {
		return reach{}
	}
	m := fi.Mode().Perm()
	return reach{group: rc.group && m&0o010 != 0, other: rc.other && m&0o001 != 0}
}

func (a *fsAudit) credentialEntry(ctx context.Context, path string, fi fs.FileInfo, rc reach, n *int) {
	if *n++; *n > maxFSWalk {
		if *n == maxFSWalk+1 {
			a.r.fail("credentials: stopped after %d entries", maxFSWalk)
		}
		return
	}
	if fi.Mode()&fs.ModeSymlink != 0 || isSQLiteStore(fi.Name()) || isPublicCert(path, fi) {
		return // a symlink's target is judged where it lives; stores by the sqlite rules
	}
	a.checkOwner(path, fi)
	b := accessOf(fi.Mode())
	perm := fi.Mode().Perm()
	if b.readable() {
		now := (b.otherRead && rc.other) || (b.groupRead && rc.group)
		ev := fmt.Sprintf("%s %s is mode %04o: %s can read it", kind(fi), path, perm, who(b.otherRead))
		if !now {
			ev += " once the directories above it open (today they are closed: a chmod of a parent, or a copy or archive that keeps modes, exposes it)"
		}
		f := a.r.add("fs.credentials_file_readable", Location{File: path}, ev)
		if b.otherRead && rc.other {
			f.Severity = Critical
		}
	}
	if b.writable() {
		f := a.r.add("fs.credentials_file_writable", Location{File: path},
			fmt.Sprintf("%s %s is mode %04o: %s can write it", kind(fi), path, perm, who(b.otherWrite)))
		if b.otherWrite && rc.other {
			f.Severity = Critical
		}
	}
	if !fi.IsDir() || ctx.Err() != nil {
		return
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		a.r.fail("credentials: %v", err)
		return
	}
	sub := reach{group: rc.group && perm&0o010 != 0, other: rc.other && perm&0o001 != 0}
	for _, e := range ents {
		efi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		a.credentialEntry(ctx, filepath.Join(path, e.Name()), efi, sub, n)
	}
}

// isPublicCert reports the gateway's TLS certificate, which is public
// (its key next to it is not).
func isPublicCert(path string, fi fs.FileInfo) bool {
	return !fi.IsDir() && filepath.Base(filepath.Dir(path)) == "tls" && strings.Contains(fi.Name(), "cert")
}

// sqliteStores lists OpenClaw's SQLite stores and sidecars that exist.
func sqliteStores(stateDir string) []string {
	bases := []string{filepath.Join(stateDir, "state", "openclaw.sqlite")}
	agents, _ := filepath.Glob(filepath.Join(stateDir, "agents", "*", "agent", "openclaw-agent.sqlite"))
	bases = append(bases, agents...)
	var out []string
	for _, b := range bases {
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			if _, err := os.Lstat(b + suffix); err == nil {
				out = append(out, b+suffix)
			}
		}
	}
	return out
}

func (a *fsAudit) sqlite() {
	for _, p := range sqliteStores(a.t.StateDir) {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		a.checkOwner(p, fi)
		b := accessOf(fi.Mode())
		if b.readable() {
			f := a.r.add("fs.sqlite_readable", Location{File: p},
				fmt.Sprintf("SQLite store %s is mode %04o: %s can read it", p, fi.Mode().Perm(), who(b.otherRead)))
			if b.otherRead {
				f.Severity = Critical
			}
		}
		if b.writable() {
			a.r.add("fs.sqlite_writable", Location{File: p},
				fmt.Sprintf("SQLite store %s is mode %04o: %s can write it", p, fi.Mode().Perm(), who(b.otherWrite)))
		}
	}
}

// homeDir is the home OpenClaw resolves "~" and its default state dir
// against: OPENCLAW_HOME, else HOME.
func homeDir(t *Target) string {
	if h := t.Env["OPENCLAW_HOME"]; h != "" {
		return h
	}
	if h := t.Env["HOME"]; h != "" {
		return h
	}
	h, _ := os.UserHomeDir()
	return h
}

// defaultLogDir is where OpenClaw writes its file log when logging.file
// is unset (docs/gateway/logging.md).
const defaultLogDir = "/tmp/openclaw"

// logFile returns the configured log file (logging.file, "~" expanded) or
// "" when the default applies.
func logFile(t *Target) string {
	p := t.Config.String("logging.file")
	if p == "" {
		return ""
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		p = filepath.Join(homeDir(t), p[1:])
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(t.StateDir, p)
	}
	return filepath.Clean(p)
}

// logFiles returns the log files that exist: logging.file and its
// rotations (same directory, same stem), or the dated default logs, and
// every file under the state dir's logs/.
func logFiles(t *Target) []string {
	var out []string
	seen := map[string]bool{}
	addFile := func(p string) {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if lf := logFile(t); lf != "" {
		addFile(lf)
		ext := filepath.Ext(lf)
		stem := strings.TrimSuffix(filepath.Base(lf), ext)
		if ents, err := os.ReadDir(filepath.Dir(lf)); err == nil {
			for _, e := range ents {
				if n := e.Name(); strings.HasPrefix(n, stem+".") || strings.HasPrefix(n, stem+"-") {
					addFile(filepath.Join(filepath.Dir(lf), n))
				}
			}
		}
	} else {
		m, _ := filepath.Glob(filepath.Join(defaultLogDir, "openclaw-*.log"))
		for _, p := range m {
			addFile(p)
		}
	}
	n := 0
	filepath.WalkDir(filepath.Join(t.StateDir, "logs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if n++; n > maxFSWalk {
			return filepath.SkipAll
		}
		if d.Type().IsRegular() {
			addFile(p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func (a *fsAudit) logs(ctx context.Context) {
	for _, p := range logFiles(a.t) {
		if ctx.Err() != nil {
			return
		}
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		a.checkOwner(p, fi)
		if b := accessOf(fi.Mode()); b.readable() {
			a.r.add("fs.log_file_readable", Location{File: p},
				fmt.Sprintf("log file %s is mode %04o: %s can read it (logs are redacted, but keep session ids, senders and tool activity)",
					p, fi.Mode().Perm(), who(b.otherRead)))
		}
	}
}

// legacy reports the pre-rename state dirs next to the state dir and in
// the home directory.
func (a *fsAudit) legacy() {
	dirs := map[string]bool{}
	for _, base := range []string{homeDir(a.t), filepath.Dir(a.t.StateDir)} {
		if base == "" {
			continue
		}
		for _, name := range []string{".clawdbot", ".moltbot"} {
			dirs[filepath.Join(base, name)] = true
		}
	}
	var sorted []string
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, d := range sorted {
		fi, err := os.Lstat(d)
		if err != nil {
			continue
		}
		ev := fmt.Sprintf("%s exists (mode %04o)", d, fi.Mode().Perm())
		if ents, err := os.ReadDir(d); err == nil {
			ev += fmt.Sprintf(" with %d entries", len(ents))
			if _, err := os.Stat(filepath.Join(d, "credentials")); err == nil {
				ev += ", including credentials/"
			}
		}
		a.r.add("fs.legacy_state_dir", Location{File: d}, ev)
	}
}

// parents checks every directory above dir, as written and with symlinks
// resolved: one that another user owns, or may write to without the
// sticky bit, lets them rename dir away and put their own in its place.
// "Another user" is anyone but root and the state dir's owner.
func (a *fsAudit) parents(dir string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	chain := fsAncestors(filepath.Dir(abs))
	if real, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil && real != filepath.Dir(abs) {
		chain = append(chain, fsAncestors(real)...)
	}
	owner := a.owner
	if owner < 0 {
		owner = os.Getuid()
	}
	for _, p := range chain {
		if a.owned["parent:"+p] {
			continue
		}
		a.owned["parent:"+p] = true
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if uid, ok := fileUID(fi); ok && uid != 0 && uid != owner {
			a.r.add("fs.parent_writable", Location{File: p},
				fmt.Sprintf("%s, above %s, is owned by uid %d, not by root or the state dir's owner (uid %d)", p, abs, uid, owner))
			continue
		}
		m := fi.Mode()
		if m&fs.ModeSticky != 0 {
			continue // parentSticky judges the one case that matters
		}
		if m.Perm()&0o002 != 0 {
			a.r.add("fs.parent_writable", Location{File: p},
				fmt.Sprintf("%s, above %s, is mode %04o: every user can rename entries in it", p, abs, m.Perm()))
		} else if m.Perm()&0o020 != 0 {
			f := a.r.add("fs.parent_writable", Location{File: p},
				fmt.Sprintf("%s, above %s, is mode %04o: its group can rename entries in it", p, abs, m.Perm()))
			f.Severity = Warn
		}
	}
}

// fsAncestors lists dir and every directory above it up to /.
func fsAncestors(dir string) []string {
	var out []string
	for {
		out = append(out, dir)
		parent := filepath.Dir(dir)
		if parent == dir {
			return out
		}
		dir = parent
	}
}

// parentSticky: in a sticky world-writable directory (/tmp) others cannot
// rename what they do not own, so a private directory of ours below it is
// safe; the exposure is only a state dir or config placed directly in it,
// whose name another user can claim first and tmp cleaners remove.
func (a *fsAudit) parentSticky() {
	seen := map[string]bool{}
	for _, p := range []string{a.t.StateDir, a.t.ConfigPath} {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		parent := filepath.Dir(abs)
		fi, err := os.Stat(parent)
		if err != nil || seen[abs] {
			continue
		}
		seen[abs] = true
		if m := fi.Mode(); m&fs.ModeSticky != 0 && m.Perm()&0o002 != 0 {
			a.r.add("fs.parent_sticky", Location{File: abs},
				fmt.Sprintf("%s is directly in %s (mode %04o, sticky, world-writable)", abs, parent, m.Perm()))
		}
	}
}
