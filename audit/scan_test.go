package audit

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// git runs git in dir with a private, fixed identity and no user config.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// gitRepo makes a repository with one commit of files.
func gitRepo(t *testing.T, files map[string]string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	for name, content := range files {
		writeFile(t, filepath.Join(dir, name), content)
	}
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-q", "-m", "initial")
	return dir
}

// gitRepoWithDeletedSecret commits a clean file, then deploy.env with an
// AWS key on line 2, then deletes deploy.env: the work tree is clean.
func gitRepoWithDeletedSecret(t *testing.T) string {
	t.Helper()
	dir := gitRepo(t, map[string]string{"README.md": "# app\n"})
	writeFile(t, filepath.Join(dir, "deploy.env"), "REGION=eu-west-1\nAWS_KEY="+fakeAWSKey+"\n")
	git(t, dir, "add", "deploy.env")
	git(t, dir, "commit", "-q", "-m", "add deploy config")
	git(t, dir, "rm", "-q", "deploy.env")
	git(t, dir, "commit", "-q", "-m", "remove deploy config")
	return dir
}

type tarFile struct{ name, content string }

func tarBytes(t *testing.T, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageFormat is how buildImage stores an image.
type imageFormat int

const (
	dockerSave   imageFormat = iota // a docker save tarball
	ociLayout                       // an OCI image layout directory
	ociLayoutTar                    // an OCI image layout packed in a tar
)

func (f imageFormat) String() string {
	return [...]string{"docker save", "OCI layout", "OCI layout tar"}[f]
}

// testImageLayers: a base layer, a layer adding a file with a secret
// (line 2) and a last layer whiting it out.
func testImageLayers(t *testing.T) []v1.Layer {
	t.Helper()
	var out []v1.Layer
	for _, files := range [][]tarFile{
		{{"etc/os-release", "ID=test\n"}, {"app/main.sh", "#!/bin/sh\necho hi\n"}, {"app/lib.so", "\x7fELF\x00\x00" + fakeAWSKey}},
		{{"app/config/creds.env", "REGION=eu\nAWS_KEY=" + fakeAWSKey + "\n"}},
		{{"app/config/.wh.creds.env", ""}},
	} {
		b := tarBytes(t, files)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

// buildImage writes a three-layer image in format, and returns its path
// and the digests its layers' hits are keyed by, in order. The secret is
// in the second-to-last layer; the last deletes it. The docker save
// tarball holds a second image sharing those layers, whose layers must
// still be scanned once; the OCI layout reaches the image through a
// nested index.
func buildImage(t *testing.T, format imageFormat) (string, []string) {
	t.Helper()
	layers := testImageLayers(t)
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, l := range layers {
		h, err := l.DiffID() // what a docker save tarball's hits are keyed by
		if format != dockerSave {
			h, err = l.Digest()
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, h.String())
	}
	dir := t.TempDir()
	if format == dockerSave {
		extra, err := mutate.AppendLayers(img, static.NewLayer(tarBytes(t, []tarFile{{"app/VERSION", "2\n"}}), types.DockerLayer))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "image.tar")
		if err := tarball.MultiWriteToFile(p, map[name.Tag]v1.Image{
			mustTag(t, "test/app:1"): img,
			mustTag(t, "test/app:2"): extra,
		}); err != nil {
			t.Fatal(err)
		}
		return p, keys
	}
	inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})
	outer := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner})
	lp := filepath.Join(dir, "layout")
	if _, err := layout.Write(lp, outer); err != nil {
		t.Fatal(err)
	}
	if format == ociLayout {
		return lp, keys
	}
	p := filepath.Join(dir, "image.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(lp)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p, keys
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// TestSecretScannerDir: parallel directory scan finds each file's secret
// once, skips .git, binaries and large files.
func TestSecretScannerDir(t *testing.T) {
	dir := t.TempDir()
	for i := range 50 {
		writeFile(t, filepath.Join(dir, "d", string(rune('a'+i%26)), "f"+string(rune('a'+i/26))+".txt"), "x\n")
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), "aws: "+fakeAWSKey+"\n")
	writeFile(t, filepath.Join(dir, "sub", "b.md"), "line\n\ntoken "+fakeGitHubPAT+"\n")
	writeFile(t, filepath.Join(dir, ".git", "config"), "t "+fakeGitHubPAT+"\n")
	writeFile(t, filepath.Join(dir, "big.txt"), strings.Repeat("a", maxScanFileBytes)+fakeAWSKey)
	sc, err := NewSecretScanner()
	if err != nil {
		t.Fatal(err)
	}
	hits, st, err := sc.Dir(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hits {
		rel, _ := filepath.Rel(dir, h.Location.File)
		got = append(got, rel+":"+h.RuleID+":"+string(rune('0'+h.Location.Line)))
	}
	sort.Strings(got)
	want := "a.yaml:aws-access-token:1 sub/b.md:github-pat:3"
	if strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
	if st.Skipped != 1 || st.Files != 52 {
		t.Errorf("stats %+v: want 52 files scanned, 1 skipped", st)
	}
	if hits, _, err := sc.Dir(t.Context(), filepath.Join(dir, "missing")); err != nil || hits != nil {
		t.Errorf("missing dir: %v %v", hits, err)
	}
}

// TestSecretScannerChunks: secrets beyond the first chunk of a large file
// are found on their lines.
func TestSecretScannerChunks(t *testing.T) {
	var b strings.Builder
	for i := range 20000 { // ~ 600 kB: several chunks
		if i%7000 == 6999 {
			b.WriteString("aws: " + fakeAWSKey + "\n")
			continue
		}
		b.WriteString("filler line of text number xxxxx\n")
		if i%50 == 0 {
			b.WriteString("\n")
		}
	}
	p := filepath.Join(t.TempDir(), "big.txt")
	writeFile(t, p, b.String())
	sc, err := NewSecretScanner()
	if err != nil {
		t.Fatal(err)
	}
	hits, _, err := sc.File(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	var want, got []int
	for i, l := range lines {
		if strings.Contains(l, fakeAWSKey) {
			want = append(want, i+1)
		}
	}
	for _, h := range hits {
		got = append(got, h.Location.Line)
	}
	if len(got) != len(want) || len(want) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("lines %v, want %v", got, want)
	}
}

// TestSecretScannerGitChunks: a secret deep in a large first commit of a
// file is found on its line.
func TestSecretScannerGitChunks(t *testing.T) {
	var b strings.Builder
	for range 9000 {
		b.WriteString("filler line of text number xxxxx\n")
	}
	b.WriteString("aws: " + fakeAWSKey + "\n")
	repo := gitRepo(t, map[string]string{"big.txt": b.String()})
	sc, err := NewSecretScanner()
	if err != nil {
		t.Fatal(err)
	}
	hits, _, err := sc.Git(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].Location.Line != 9001 {
		t.Errorf("hits %+v, want one on line 9001", hits)
	}
}
