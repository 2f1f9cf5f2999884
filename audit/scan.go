package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fatih/semgroup"
	"github.com/spf13/viper"
	"github.com/zricethezav/gitleaks/v8/cmd/scm"
	"github.com/zricethezav/gitleaks/v8/config"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/report"
	"github.com/zricethezav/gitleaks/v8/sources"
)

// Bounds of a secret scan. Files above maxScanFileBytes are skipped (and
// counted): secrets live in text files far smaller, and reading a
// multi-gigabyte blob would dominate the scan. Binary files (a NUL in
// the first binarySniffBytes) are skipped as gitleaks' own directory
// scan does.
const (
	maxScanFileBytes = 8 << 20
	binarySniffBytes = 8000
	// maxHitsPerSource stops a source from flooding the report: past it
	// the scan counts the rest only.
	maxHitsPerSource = 200
	// decodeDepth is the gitleaks CLI's default --max-decode-depth, so
	// base64/hex/percent-encoded secrets are found as the CLI finds them.
	decodeDepth = 5
)

// SecretHit is one secret a scan found. It never holds the secret: Redacted
// is redact(secret), the shape only.
type SecretHit struct {
	// RuleID is the gitleaks rule that matched ("aws-access-token").
	RuleID string
	// Location is where: the file (inside a repository, the repository
	// joined with the file's path), and for an image layer the layer
	// digest and the path inside it in Key.
	Location Location
	// Commit is the commit that added the secret (git history only).
	Commit   string
	Redacted string
}

// ScanStats counts what a scan read.
type ScanStats struct {
	Bytes   int64 // bytes handed to the detector
	Files   int64 // files (or diff files) scanned
	Skipped int64 // files skipped as too large or binary
	// Dropped counts hits past maxHitsPerSource, not returned.
	Dropped int64
}

// SecretScanner scans files, directories, git histories and container
// images for secrets with gitleaks' default rules. It is safe for
// concurrent use; make one per audit, as building the rules compiles
// some two hundred regular expressions.
type SecretScanner struct {
	det     *detect.Detector
	workers int
}

// NewSecretScanner builds a scanner with gitleaks' default rule set.
func NewSecretScanner() (*SecretScanner, error) {
	// detect.NewDetectorDefaultConfig does the same through viper's
	// global instance, which races when two audits start at once; a
	// private viper instance parses the embedded rules identically.
	v := viper.New()
	v.SetConfigType("toml")
	if err := v.ReadConfig(strings.NewReader(config.DefaultConfig)); err != nil {
		return nil, fmt.Errorf("gitleaks default rules: %w", err)
	}
	var vc config.ViperConfig
	if err := v.Unmarshal(&vc); err != nil {
		return nil, fmt.Errorf("gitleaks default rules: %w", err)
	}
	cfg, err := vc.Translate()
	if err != nil {
		return nil, fmt.Errorf("gitleaks default rules: %w", err)
	}
	det := detect.NewDetector(cfg)
	det.MaxDecodeDepth = decodeDepth
	return &SecretScanner{det: det, workers: runtime.GOMAXPROCS(0)}, nil
}

// Bytes returns the bytes the scanner has examined so far.
func (s *SecretScanner) Bytes() int64 { return int64(s.det.TotalBytes.Load()) }

// hitSink collects a source's hits concurrently, up to maxHitsPerSource.
type hitSink struct {
	mu    sync.Mutex
	hits  []SecretHit
	stats ScanStats
}

func (k *hitSink) add(h SecretHit) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.hits) >= maxHitsPerSource {
		atomic.AddInt64(&k.stats.Dropped, 1)
		return
	}
	k.hits = append(k.hits, h)
}

func (k *hitSink) result() ([]SecretHit, ScanStats) {
	k.mu.Lock()
	defer k.mu.Unlock()
	sort.Slice(k.hits, func(i, j int) bool {
		a, b := k.hits[i], k.hits[j]
		if a.Location.File != b.Location.File {
			return a.Location.File < b.Location.File
		}
		if a.Location.Key != b.Location.Key {
			return a.Location.Key < b.Location.Key
		}
		if a.Location.Line != b.Location.Line {
			return a.Location.Line < b.Location.Line
		}
		if a.Commit != b.Commit {
			return a.Commit < b.Commit
		}
		return a.RuleID < b.RuleID
	})
	return k.hits, k.stats
}

// detect runs the rules over content, whose path (slash-separated) lets
// gitleaks' path rules and allowlists apply, and records the hits at loc
// (its Line filled from the finding). Content is cut into chunks of
// about chunkBytes at blank lines (else at a newline), as gitleaks' own
// file source does: a rule's keyword found once in a large file then
// costs its regexp one chunk, not the whole file.
func (s *SecretScanner) detect(ctx context.Context, content []byte, relPath string, loc Location, k *hitSink) {
	atomic.AddInt64(&k.stats.Bytes, int64(len(content)))
	atomic.AddInt64(&k.stats.Files, 1)
	line := 1
	for len(content) > 0 {
		n := chunkEnd(content)
		chunk := content[:n]
		for _, f := range s.det.DetectContext(ctx, detect.Fragment{Raw: string(chunk), FilePath: relPath}) {
			l := loc
			l.Line = line + f.StartLine // gitleaks counts lines of a raw fragment from 0
			k.add(hitOf(f, l))
		}
		line += bytes.Count(chunk, []byte("\n"))
		content = content[n:]
	}
}

// Chunking bounds: gitleaks' file source reads 100 kB and then up to 25 kB
// more looking for a blank line.
const (
	chunkBytes = 100_000
	chunkPeek  = 25_000
)

// chunkEndString is chunkEnd for a string.
func chunkEndString(b string) int {
	if len(b) <= chunkBytes+chunkPeek {
		return len(b)
	}
	if i := strings.Index(b[chunkBytes:chunkBytes+chunkPeek], "\n\n"); i >= 0 {
		return chunkBytes + i + 2
	}
	if i := strings.IndexByte(b[chunkBytes:], '\n'); i >= 0 {
		return chunkBytes + i + 1
	}
	return len(b)
}

// chunkEnd returns the length of the first chunk of b.
func chunkEnd(b []byte) int {
	if len(b) <= chunkBytes+chunkPeek {
		return len(b)
	}
	if i := bytes.Index(b[chunkBytes:chunkBytes+chunkPeek], []byte("\n\n")); i >= 0 {
		return chunkBytes + i + 2
	}
	if i := bytes.IndexByte(b[chunkBytes:], '\n'); i >= 0 {
		return chunkBytes + i + 1
	}
	return len(b)
}

func hitOf(f report.Finding, loc Location) SecretHit {
	secret := f.Secret
	if secret == "" {
		secret = f.Match
	}
	return SecretHit{RuleID: f.RuleID, Location: loc, Commit: f.Commit, Redacted: redact(secret)}
}

// isBinary reports whether b looks like a binary file's start.
func isBinary(b []byte) bool {
	return bytes.IndexByte(b[:min(len(b), binarySniffBytes)], 0) >= 0
}

// File scans one file. A missing file is no error and no hit.
func (s *SecretScanner) File(ctx context.Context, file string) ([]SecretHit, ScanStats, error) {
	k := &hitSink{}
	fi, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ScanStats{}, nil
	}
	if err != nil {
		return nil, ScanStats{}, err
	}
	if err := s.scanFile(ctx, file, filepath.ToSlash(filepath.Base(file)), fi, k); err != nil {
		return nil, ScanStats{}, err
	}
	hits, st := k.result()
	return hits, st, nil
}

func (s *SecretScanner) scanFile(ctx context.Context, file, rel string, fi fs.FileInfo, k *hitSink) error {
	if !fi.Mode().IsRegular() {
		return nil
	}
	if fi.Size() > maxScanFileBytes {
		atomic.AddInt64(&k.stats.Skipped, 1)
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	if isBinary(b) {
		atomic.AddInt64(&k.stats.Skipped, 1)
		return nil
	}
	s.detect(ctx, b, rel, Location{File: file}, k)
	return nil
}

// Dir scans every regular file under dir, in parallel; it follows no
// symlinks and skips .git directories (a repository's history is Git's
// job). A missing dir is no error and no hit.
func (s *SecretScanner) Dir(ctx context.Context, dir string) ([]SecretHit, ScanStats, error) {
	k := &hitSink{}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, ScanStats{}, nil
	}
	type job struct {
		path, rel string
		fi        fs.FileInfo
	}
	jobs := make(chan job, 4*s.workers)
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		errs    []error
		addErr  = func(err error) { errMu.Lock(); errs = append(errs, err); errMu.Unlock() }
		workers = s.workers
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := s.scanFile(ctx, j.path, j.rel, j.fi, k); err != nil {
					addErr(err)
				}
			}
		}()
	}
	walkErr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			addErr(err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if d.IsDir() {
			if d.Name() == ".git" && p != dir {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			addErr(err)
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		jobs <- job{p, filepath.ToSlash(rel), fi}
		return nil
	})
	close(jobs)
	wg.Wait()
	if walkErr != nil {
		errs = append(errs, walkErr)
	}
	hits, st := k.result()
	return hits, st, errors.Join(errs...)
}

// Git scans every commit of the repository at repo (all refs, as `git log
// -p --all` shows them), so a secret added in one commit and deleted in a
// later one is found in the commit that added it. It runs the git binary,
// through gitleaks' git source.
func (s *SecretScanner) Git(ctx context.Context, repo string) ([]SecretHit, ScanStats, error) {
	// Checked first so that the common mistake gets a clean error rather
	// than gitleaks logging git's stderr.
	if out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--git-dir").CombinedOutput(); err != nil {
		return nil, ScanStats{}, fmt.Errorf("%s: not a git repository: %s", repo, firstLine(out, err))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd, err := sources.NewGitLogCmdContext(ctx, repo, "")
	if err != nil {
		return nil, ScanStats{}, fmt.Errorf("git log in %s: %w", repo, err)
	}
	k := &hitSink{}
	// NoPlatform: no links to a forge in findings (and no `git remote`).
	src := &sources.Git{Cmd: cmd, Config: &s.det.Config, Sema: semgroup.NewGroup(ctx, int64(s.workers)),
		Remote: &sources.RemoteInfo{Platform: scm.NoPlatform}}
	var (
		errMu  sync.Mutex
		gitErr error
	)
	err = src.Fragments(ctx, func(fr sources.Fragment, ferr error) error {
		if ferr != nil {
			// git's stderr: a line such as "fatal: not a git repository".
			errMu.Lock()
			gitErr = errors.Join(gitErr, ferr)
			errMu.Unlock()
			return nil
		}
		if fr.Raw == "" {
			return nil
		}
		atomic.AddInt64(&k.stats.Bytes, int64(len(fr.Raw)))
		atomic.AddInt64(&k.stats.Files, 1)
		// Chunked as in detect: a file's first commit is one fragment.
		for raw := fr.Raw; raw != ""; {
			n := chunkEndString(raw)
			c := fr
			c.Raw = raw[:n]
			for _, f := range s.det.DetectContext(ctx, detect.Fragment(c)) {
				// For diff fragments gitleaks' StartLine is already the
				// line in the file as of that commit.
				k.add(hitOf(f, Location{File: filepath.Join(repo, filepath.FromSlash(f.File)), Line: f.StartLine}))
			}
			fr.StartLine += strings.Count(c.Raw, "\n")
			raw = raw[n:]
		}
		return nil
	})
	if err == nil {
		err = gitErr
	}
	if err != nil {
		return nil, ScanStats{}, fmt.Errorf("scanning the history of %s: %w", repo, err)
	}
	hits, st := k.result()
	return hits, st, nil
}

// firstLine is the first line of a command's output, or its error.
func firstLine(out []byte, err error) string {
	if l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); l != "" {
		return l
	}
	return err.Error()
}
