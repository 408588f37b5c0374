package imagebundle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"
)

// Source is where a bundle's images come from.
type Source string

// Sources.
const (
	// SourceRegistry pulls every image from its registry (a connected
	// machine; the bundle then travels to the air-gapped site).
	SourceRegistry Source = "registry"
	// SourceBinaries builds one small image per locally built program.
	SourceBinaries Source = "binaries"
)

// Extra is an image added to the bundle beside kubeadm's, imported on
// every node (for example the workloads' base image).
type Extra struct {
	// Ref is the image's reference.
	Ref string
	// File is, for SourceBinaries, the program the image holds (at
	// InImage); empty for SourceRegistry, which pulls Ref.
	File string
	// InImage is where File goes in the image (default /bin/<its name>).
	InImage string
}

// ParseExtra reads REF or REF=FILE[:PATH-IN-IMAGE].
func ParseExtra(s string) (Extra, error) {
	ref, rest, hasFile := strings.Cut(s, "=")
	if ref == "" || (hasFile && rest == "") {
		return Extra{}, fmt.Errorf("image %q: want REF or REF=FILE[:PATH-IN-IMAGE]", s)
	}
	e := Extra{Ref: ref}
	if hasFile {
		e.File, e.InImage, _ = strings.Cut(rest, ":")
		if e.InImage != "" && !path.IsAbs(e.InImage) {
			return Extra{}, fmt.Errorf("image %q: the path in the image must be absolute", s)
		}
	}
	return e, nil
}

// BuildOptions configure Build.
type BuildOptions struct {
	// Dir is the bundle directory to write (required).
	Dir string
	// KubernetesVersion is the cluster's version, such as v1.37.2 (required).
	KubernetesVersion string
	// Kubeadm is the kubeadm program that names the images (required).
	Kubeadm string
	// From is where the images come from (required).
	From Source
	// Binaries say where SourceBinaries finds the programs.
	Binaries BinaryOptions
	// Extras are added beside kubeadm's images.
	Extras []Extra
	// Epoch is every timestamp of built images and archives (default the
	// Unix epoch).
	Epoch time.Time
	// Log receives a line per image; nil discards.
	Log *slog.Logger
}

// Build writes a bundle holding the images kubeadm of the cluster version
// uses, named exactly as `kubeadm config images list` names them, plus the
// extras, and returns its index.
func Build(ctx context.Context, opts BuildOptions) (Index, error) {
	var errs []error
	if opts.Dir == "" {
		errs = append(errs, errors.New("no bundle directory"))
	}
	if opts.KubernetesVersion == "" {
		errs = append(errs, errors.New("no Kubernetes version"))
	}
	if opts.Kubeadm == "" {
		errs = append(errs, errors.New("no kubeadm program to list the images"))
	}
	if opts.From != SourceRegistry && opts.From != SourceBinaries {
		errs = append(errs, fmt.Errorf("source %q: want %s or %s", opts.From, SourceRegistry, SourceBinaries))
	}
	for _, e := range opts.Extras {
		if opts.From == SourceBinaries && e.File == "" {
			errs = append(errs, fmt.Errorf("image %s: built from binaries, it needs a file (REF=FILE)", e.Ref))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Index{}, fmt.Errorf("build image bundle: %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Binaries.Epoch.IsZero() {
		opts.Binaries.Epoch = opts.Epoch
	}
	refs, err := KubeadmImages(ctx, opts.Kubeadm, opts.KubernetesVersion)
	if err != nil {
		return Index{}, fmt.Errorf("build image bundle: %w", err)
	}
	var images []Image
	switch opts.From {
	case SourceBinaries:
		images, err = FromBinaries(refs, opts.Binaries)
		if err != nil {
			return Index{}, fmt.Errorf("build image bundle: %w", err)
		}
		for _, e := range opts.Extras {
			in := e.InImage
			if in == "" {
				in = "/bin/" + path.Base(e.File)
			}
			img, err := FromFiles(Spec{Files: []File{{Path: in, Source: e.File}}, Epoch: opts.Binaries.Epoch})
			if err != nil {
				return Index{}, fmt.Errorf("build image bundle: image %s: %w", e.Ref, err)
			}
			images = append(images, Image{Ref: e.Ref, Image: img, Roles: []string{RoleControlPlane, RoleWorker}})
		}
	case SourceRegistry:
		for _, ref := range refs {
			log.Info("pulling image", "image", ref)
			img, err := Pull(ctx, ref)
			if err != nil {
				return Index{}, fmt.Errorf("build image bundle: %w", err)
			}
			images = append(images, Image{Ref: ref, Image: img, Roles: Roles(ref)})
		}
		for _, e := range opts.Extras {
			log.Info("pulling image", "image", e.Ref)
			img, err := Pull(ctx, e.Ref)
			if err != nil {
				return Index{}, fmt.Errorf("build image bundle: %w", err)
			}
			images = append(images, Image{Ref: e.Ref, Image: img, Roles: []string{RoleControlPlane, RoleWorker}})
		}
	}
	ix, err := Write(opts.Dir, opts.KubernetesVersion, images, opts.Epoch)
	if err != nil {
		return Index{}, err
	}
	for _, e := range ix.Images {
		log.Info("image written", "image", e.Ref, "file", e.File, "bytes", e.Size, "roles", strings.Join(e.Roles, ","))
	}
	return ix, nil
}
