package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/fatih/semgroup"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Images are read with go-containerregistry: tarball for `docker save`
// tarballs, layout for OCI image layouts. go-containerregistry has no
// reader for an OCI layout packed in a tar, so such a tar is unpacked to
// a private temporary directory first (see extractLayout).

// maxIndexDepth bounds how deep image indexes may nest in an OCI layout:
// real ones nest once or twice (a multi-platform index in index.json).
const maxIndexDepth = 4

// Image scans every layer of the container images in a `docker save`
// tarball, an OCI image layout directory, or a tar of one, each layer on
// its own: a file added in one layer and deleted (whited out) in a later
// one is still in the image, and is found in the layer that added it. A
// layer shared by several images is scanned once; layers are scanned in
// parallel. A hit's Location is the image path, with Key the layer's
// digest and the file's path in the layer ("sha256:…:/etc/app.env"). The
// digest is the layer blob's for an OCI layout, and the uncompressed
// layer's (its diff ID, which is what `docker save` stores) for a
// tarball.
func (s *SecretScanner) Image(ctx context.Context, imagePath string) ([]SecretHit, ScanStats, error) {
	layers, cleanup, err := imageLayers(ctx, imagePath)
	if err != nil {
		return nil, ScanStats{}, fmt.Errorf("image %s: %w", imagePath, err)
	}
	defer cleanup()
	k := &hitSink{}
	g := semgroup.NewGroup(ctx, int64(s.workers))
	for _, l := range layers {
		g.Go(func() error { return s.scanLayer(ctx, imagePath, l, k) })
	}
	if err := g.Wait(); err != nil {
		return nil, ScanStats{}, err
	}
	hits, st := k.result()
	return hits, st, nil
}

// imageLayer is one filesystem layer of an image.
type imageLayer struct {
	key   v1.Hash // the digest hits are keyed by
	layer v1.Layer
}

// layerSet lists distinct layers in the order first seen.
type layerSet struct {
	seen map[v1.Hash]bool
	list []imageLayer
}

func (s *layerSet) add(key v1.Hash, l v1.Layer) {
	if s.seen == nil {
		s.seen = map[v1.Hash]bool{}
	}
	if !s.seen[key] {
		s.seen[key] = true
		s.list = append(s.list, imageLayer{key: key, layer: l})
	}
}

// imageLayers lists the distinct layers of every image at p. The caller
// runs cleanup once done with the layers, whose data may be in a
// temporary directory.
func imageLayers(ctx context.Context, p string) (layers []imageLayer, cleanup func(), err error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, nil, err
	}
	if fi.IsDir() {
		layers, err := layoutLayers(p)
		return layers, func() {}, err
	}
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	m, err := tarball.LoadManifest(opener)
	if err == nil {
		layers, err := tarballLayers(opener, m)
		return layers, func() {}, err
	}
	dir, lerr := extractLayout(ctx, p)
	if lerr != nil {
		return nil, nil, fmt.Errorf("neither a docker save tarball (%v) nor a tar of an OCI image layout (%w)", err, lerr)
	}
	cleanup = func() { os.RemoveAll(dir) }
	if layers, err = layoutLayers(dir); err != nil {
		cleanup()
		return nil, nil, err
	}
	return layers, cleanup, nil
}

// tarballLayers lists the layers of the images of a `docker save`
// tarball. tarball.Image selects an image by one of its tags, or takes
// the only one, so an untagged image among several cannot be read.
func tarballLayers(opener tarball.Opener, m tarball.Manifest) ([]imageLayer, error) {
	var set layerSet
	for i, d := range m {
		var tag *name.Tag
		switch {
		case len(d.RepoTags) > 0:
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, fmt.Errorf("manifest.json image %d: %w", i, err)
			}
			tag = &t
		case len(m) > 1:
			return nil, fmt.Errorf("manifest.json image %d (config %s) has no tag, and an untagged image of a multi-image tarball cannot be selected", i, d.Config)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("manifest.json image %d: %w", i, err)
		}
		ls, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("manifest.json image %d: %w", i, err)
		}
		for _, l := range ls {
			// The diff ID comes from the image config; the digest of a layer
			// stored uncompressed would cost compressing it.
			h, err := l.DiffID()
			if err != nil {
				return nil, fmt.Errorf("manifest.json image %d: %w", i, err)
			}
			set.add(h, l)
		}
	}
	return set.list, nil
}

// layoutLayers lists the layers of the images an OCI layout's index.json
// leads to, through nested indexes.
func layoutLayers(dir string) ([]imageLayer, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	var set layerSet
	if err := walkIndex(idx, 0, &set); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	return set.list, nil
}

func walkIndex(idx v1.ImageIndex, depth int, set *layerSet) error {
	if depth > maxIndexDepth {
		return errors.New("image indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return fmt.Errorf("%s: %w", d.Digest, err)
			}
			if err := walkIndex(child, depth+1, set); err != nil {
				return fmt.Errorf("%s: %w", d.Digest, err)
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return fmt.Errorf("%s: %w", d.Digest, err)
			}
			ls, err := img.Layers()
			if err != nil {
				return fmt.Errorf("%s: %w", d.Digest, err)
			}
			for _, l := range ls {
				mt, err := l.MediaType()
				if err != nil {
					return fmt.Errorf("%s: %w", d.Digest, err)
				}
				if !strings.Contains(string(mt), "tar") {
					continue // an artifact's blob (attestation, signature), not a filesystem layer
				}
				h, err := l.Digest()
				if err != nil {
					return fmt.Errorf("%s: %w", d.Digest, err)
				}
				set.add(h, l)
			}
		}
		// Other manifests (artifacts) hold no filesystem.
	}
	return nil
}

// extractLayout unpacks the OCI image layout in the tar at p into a new
// private directory (0700), which the caller removes. Only the layout's
// own files are written (oci-layout, index.json, blobs/<alg>/<hex>), and
// only from regular file entries, so no entry can land or link outside
// the directory. A tar stores file data as is, so the files written
// cannot outgrow the archive, except for sparse entries: their total is
// held to the archive's size.
func extractLayout(ctx context.Context, p string) (_ string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "clawhold-oci-")
	if err != nil {
		return "", fmt.Errorf("unpacking the OCI layout: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	var total int64
	hasIndex := false
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("not a tar archive: %w", err)
		}
		rel := path.Clean(h.Name)
		if h.Typeflag != tar.TypeReg || !isLayoutFile(rel) {
			continue
		}
		if total += h.Size; total > fi.Size() {
			return "", fmt.Errorf("%s: unpacking the OCI layout would write more than the archive's %d bytes", rel, fi.Size())
		}
		if err := writeLayoutFile(filepath.Join(tmp, filepath.FromSlash(rel)), tr); err != nil {
			return "", fmt.Errorf("unpacking %s: %w", rel, err)
		}
		hasIndex = hasIndex || rel == "index.json"
	}
	if !hasIndex {
		return "", errors.New("no index.json")
	}
	return tmp, nil
}

// isLayoutFile reports whether rel (cleaned, slash-separated) names a
// file of an OCI layout that reading its images needs.
func isLayoutFile(rel string) bool {
	if rel == "oci-layout" || rel == "index.json" {
		return true
	}
	parts := strings.Split(rel, "/")
	if len(parts) != 3 || parts[0] != "blobs" {
		return false
	}
	_, err := v1.NewHash(parts[1] + ":" + parts[2])
	return err == nil
}

func writeLayoutFile(dst string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scanLayer scans the regular files of one layer, read uncompressed as a
// tar stream.
func (s *SecretScanner) scanLayer(ctx context.Context, imagePath string, l imageLayer, k *hitSink) error {
	rc, err := l.layer.Uncompressed()
	if err != nil {
		return fmt.Errorf("image %s: layer %s: %w", imagePath, l.key, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var buf bytes.Buffer
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hd, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("image %s: layer %s: %w", imagePath, l.key, err)
		}
		if hd.Typeflag != tar.TypeReg {
			continue
		}
		if strings.HasPrefix(path.Base(hd.Name), ".wh.") {
			continue // a whiteout hides a lower layer's file; it holds nothing
		}
		if hd.Size > maxScanFileBytes {
			atomic.AddInt64(&k.stats.Skipped, 1)
			continue
		}
		buf.Reset()
		if _, err := io.Copy(&buf, tr); err != nil {
			return fmt.Errorf("image %s: layer %s: reading %s: %w", imagePath, l.key, hd.Name, err)
		}
		if isBinary(buf.Bytes()) {
			atomic.AddInt64(&k.stats.Skipped, 1)
			continue
		}
		rel := strings.TrimPrefix(path.Clean("/"+hd.Name), "/")
		s.detect(ctx, buf.Bytes(), rel, Location{File: imagePath, Key: l.key.String() + ":/" + rel}, k)
	}
}
