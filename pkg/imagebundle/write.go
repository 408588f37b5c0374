package imagebundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Image is one image to put in a bundle.
type Image struct {
	// Ref is the full reference the image is imported under.
	Ref string
	// Image is the image (from FromFiles or Pull).
	Image v1.Image
	// Roles are the node roles that import it.
	Roles []string
}

// Annotations containerd's importer reads from an OCI archive's index: the
// image's full name, and the OCI reference name (the tag).
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// Write writes each image to dir/images/ as an OCI image layout archive and
// the index files (IndexAll, IndexControlPlane, IndexWorker) to dir. The
// archives are deterministic: sorted entries, owner root, mtime epoch.
func Write(dir, kubernetesVersion string, images []Image, epoch time.Time) (Index, error) {
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		return Index{}, fmt.Errorf("write image bundle: %w", err)
	}
	ix := Index{APIVersion: APIVersion, Kind: Kind, KubernetesVersion: kubernetesVersion}
	seen := map[string]bool{}
	for _, im := range images {
		if seen[im.Ref] {
			return Index{}, fmt.Errorf("write image bundle: %s is listed twice", im.Ref)
		}
		seen[im.Ref] = true
		e, err := writeArchive(dir, im, epoch)
		if err != nil {
			return Index{}, fmt.Errorf("write image bundle: %s: %w", im.Ref, err)
		}
		ix.Images = append(ix.Images, e)
	}
	for file, role := range map[string]string{IndexAll: "", IndexControlPlane: RoleControlPlane, IndexWorker: RoleWorker} {
		sub := ix
		if role != "" {
			sub.Images = ix.ForRole(role)
		}
		b, err := sub.Marshal()
		if err != nil {
			return Index{}, err
		}
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
			return Index{}, fmt.Errorf("write image bundle: %w", err)
		}
	}
	return ix, nil
}

// ArchiveName is the file name of ref's archive: the repository path and
// tag with every character outside [A-Za-z0-9._-] replaced by "_".
func ArchiveName(ref string) string {
	var b strings.Builder
	for _, r := range ref {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String() + ".tar"
}

func writeArchive(dir string, im Image, epoch time.Time) (Entry, error) {
	ref, err := name.ParseReference(im.Ref, name.WithDefaultRegistry(""))
	if err != nil {
		return Entry{}, fmt.Errorf("parse reference: %w", err)
	}
	tag := ref.Identifier()
	cf, err := im.Image.ConfigFile()
	if err != nil {
		return Entry{}, fmt.Errorf("read image config: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".layout-")
	if err != nil {
		return Entry{}, err
	}
	defer os.RemoveAll(tmp)
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return Entry{}, fmt.Errorf("create oci layout: %w", err)
	}
	err = lp.AppendImage(im.Image,
		layout.WithAnnotations(map[string]string{annotationContainerdName: im.Ref, annotationRefName: tag}),
		layout.WithPlatform(v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}))
	if err != nil {
		return Entry{}, fmt.Errorf("write oci layout: %w", err)
	}
	digest, err := im.Image.Digest()
	if err != nil {
		return Entry{}, err
	}
	file := filepath.Join("images", ArchiveName(im.Ref))
	sum, size, err := tarDir(tmp, filepath.Join(dir, file), epoch)
	if err != nil {
		return Entry{}, fmt.Errorf("archive oci layout: %w", err)
	}
	roles := slices.Clone(im.Roles)
	slices.Sort(roles)
	return Entry{Ref: im.Ref, File: filepath.ToSlash(file), Digest: "sha256:" + sum, Size: size,
		ImageDigest: digest.String(), Roles: roles}, nil
}

// tarDir writes the tree under src as a tar to dst: entries sorted by
// name, owned by root, with mtime epoch. It returns the sha256 and size.
func tarDir(src, dst string, epoch time.Time) (string, int64, error) {
	var paths []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != src {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	slices.Sort(paths)
	out, err := os.Create(dst)
	if err != nil {
		return "", 0, err
	}
	defer out.Close()
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, h)}
	tw := tar.NewWriter(cw)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return "", 0, err
		}
		rel, _ := filepath.Rel(src, p)
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: epoch}
		switch {
		case fi.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
		default:
			return "", 0, fmt.Errorf("%s: not a file or directory", p)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return "", 0, err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return "", 0, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return "", 0, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return "", 0, err
	}
	if err := out.Close(); err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
