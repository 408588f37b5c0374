package imagebundle

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one entry of an image built by FromFiles.
type File struct {
	// Path is the absolute path in the image.
	Path string
	// Source is the file on this machine whose content is copied; empty
	// with Link set.
	Source string
	// Mode is the permission bits (default 0755 for Source files).
	Mode int64
	// Link makes the entry a symbolic link to Link.
	Link string
}

// Spec describes an image made of files, such as one binary.
type Spec struct {
	// Files are the image's files; parent directories are added.
	Files []File
	// Entrypoint, Cmd and Env are the image configuration's.
	Entrypoint, Cmd, Env []string
	// Epoch is every timestamp in the image (its creation time and mtimes).
	Epoch time.Time
}

// DefaultPath is the PATH of images built by FromFiles.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// FromFiles builds a single-layer linux/amd64 image from spec. The layer is
// deterministic: entries sorted by path, owned by root, mtime Epoch.
func FromFiles(spec Spec) (v1.Image, error) {
	layerTar, err := layerTar(spec)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("build image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: spec.Epoch.UTC()}
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Cmd = spec.Cmd
	cf.Config.Env = spec.Env
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{DefaultPath}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build image config: %w", err)
	}
	return img, nil
}

func layerTar(spec Spec) ([]byte, error) {
	entries := map[string]File{}
	var errs []error
	for _, f := range spec.Files {
		if !path.IsAbs(f.Path) {
			errs = append(errs, fmt.Errorf("image file %q: path must be absolute", f.Path))
			continue
		}
		p := strings.TrimPrefix(path.Clean(f.Path), "/")
		entries[p] = f
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = File{Path: "/" + d, Mode: -1}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.Sort(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := entries[n]
		hdr := &tar.Header{Name: n, ModTime: spec.Epoch, Mode: f.Mode}
		var data []byte
		switch {
		case f.Mode == -1:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, n+"/", 0o755
		case f.Link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, fmt.Errorf("image file %s: %w", f.Path, err)
			}
			data = b
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(b))
			if hdr.Mode == 0 {
				hdr.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// RootFiles returns the files of root (a Debian root filesystem) that
// programs need at paths: the programs, every symbolic link on the way to
// them, and the shared libraries they load (DT_NEEDED, recursively, and
// the ELF interpreter), searched where Debian's loader searches. Paths are
// absolute paths inside root; a directory takes every file under it.
func RootFiles(root string, paths ...string) ([]File, error) {
	r := rootResolver{root: root, files: map[string]File{}}
	for _, p := range paths {
		if err := r.add(p); err != nil {
			return nil, err
		}
	}
	out := make([]File, 0, len(r.files))
	for _, f := range r.files {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// libDirs are where Debian 12's loader finds libraries on amd64.
var libDirs = []string{"/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib", "/lib", "/usr/lib64", "/lib64"}

type rootResolver struct {
	root  string
	files map[string]File
}

// add adds p (absolute in root) with its links, libraries and, for a
// directory, its contents.
func (r *rootResolver) add(p string) error {
	real, err := r.resolve(p, 0)
	if err != nil {
		return err
	}
	host := filepath.Join(r.root, real)
	fi, err := os.Stat(host)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", p, r.root, err)
	}
	if fi.IsDir() {
		ents, err := os.ReadDir(host)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := r.add(path.Join(real, e.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	if _, done := r.files[real]; done {
		return nil
	}
	r.files[real] = File{Path: real, Source: host, Mode: int64(fi.Mode().Perm())}
	return r.addLibraries(host)
}

// resolve follows symbolic links in p component by component, recording
// each link as an image file, and returns the final path.
func (r *rootResolver) resolve(p string, depth int) (string, error) {
	if depth > 40 {
		return "", fmt.Errorf("%s: too many symbolic links", p)
	}
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	cur := "/"
	for i, part := range parts {
		next := path.Join(cur, part)
		fi, err := os.Lstat(filepath.Join(r.root, next))
		if err != nil {
			return "", fmt.Errorf("%s in %s: %w", p, r.root, err)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			cur = next
			continue
		}
		target, err := os.Readlink(filepath.Join(r.root, next))
		if err != nil {
			return "", err
		}
		r.files[next] = File{Path: next, Link: target}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		rest := path.Join(append([]string{target}, parts[i+1:]...)...)
		return r.resolve(rest, depth+1)
	}
	return cur, nil
}

func (r *rootResolver) addLibraries(host string) error {
	f, err := elf.Open(host)
	if err != nil {
		return nil // not an ELF file: data, a script
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b, err := io.ReadAll(prog.Open())
			if err != nil {
				return err
			}
			if err := r.add(strings.TrimRight(string(b), "\x00")); err != nil {
				return err
			}
		}
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return nil // static
	}
	for _, lib := range needed {
		found := false
		for _, d := range libDirs {
			if _, err := os.Lstat(filepath.Join(r.root, d, lib)); err == nil {
				if err := r.add(path.Join(d, lib)); err != nil {
					return err
				}
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s needs %s, which is not in %s", host, lib, r.root)
		}
	}
	return nil
}
