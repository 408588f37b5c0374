package imagebundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Index files of a bundle directory.
const (
	// IndexAll lists every image of the bundle.
	IndexAll = "index.json"
	// IndexControlPlane lists what a control-plane node imports: every
	// image kubeadm init or a control-plane join uses, plus the extras.
	IndexControlPlane = "control-plane.json"
	// IndexWorker lists what a worker imports: pause, kube-proxy, CoreDNS
	// (its pods may land on workers) and the extras.
	IndexWorker = "worker.json"
)

// Index format identifiers.
const (
	APIVersion = "slipway.dev/v1alpha1"
	Kind       = "ImageBundle"
)

// Roles an image is imported on.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Index is a bundle index file.
type Index struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// KubernetesVersion is the version whose kubeadm image list the bundle
	// holds.
	KubernetesVersion string `json:"kubernetesVersion"`
	// Images are in the order they are imported.
	Images []Entry `json:"images"`
}

// Entry is one image archive of a bundle.
type Entry struct {
	// Ref is the image's full reference, as kubeadm and pods name it
	// (registry.k8s.io/pause:3.10.2).
	Ref string `json:"ref"`
	// File is the OCI layout archive (tar), relative to the index file.
	File string `json:"file"`
	// Digest is the archive's sha256 ("sha256:<hex>"), checked on import.
	Digest string `json:"digest"`
	// Size is the archive's size in bytes.
	Size int64 `json:"size"`
	// ImageDigest is the image manifest's digest, as containerd reports it.
	ImageDigest string `json:"imageDigest"`
	// Roles are the node roles that import the image.
	Roles []string `json:"roles"`
}

// ParseIndex decodes and checks an index file.
func ParseIndex(b []byte) (Index, error) {
	var ix Index
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ix); err != nil {
		return Index{}, fmt.Errorf("parse image bundle index: %w", err)
	}
	var errs []error
	if ix.APIVersion != APIVersion || ix.Kind != Kind {
		errs = append(errs, fmt.Errorf("apiVersion %q kind %q: want %s %s", ix.APIVersion, ix.Kind, APIVersion, Kind))
	}
	for i, e := range ix.Images {
		switch {
		case e.Ref == "":
			errs = append(errs, fmt.Errorf("images[%d]: no ref", i))
		case e.File == "" || path.IsAbs(e.File) || strings.Contains(e.File, ".."):
			errs = append(errs, fmt.Errorf("images[%d] (%s): file %q must be a path inside the bundle", i, e.Ref, e.File))
		case !strings.HasPrefix(e.Digest, "sha256:") || len(e.Digest) != len("sha256:")+64:
			errs = append(errs, fmt.Errorf("images[%d] (%s): digest %q is not sha256:<64 hex digits>", i, e.Ref, e.Digest))
		case e.Size <= 0:
			errs = append(errs, fmt.Errorf("images[%d] (%s): size %d", i, e.Ref, e.Size))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Index{}, fmt.Errorf("parse image bundle index: %w", err)
	}
	return ix, nil
}

// Marshal encodes the index (indented, with a final newline).
func (ix Index) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode image bundle index: %w", err)
	}
	return append(b, '\n'), nil
}

// ForRole returns the entries imported on role, in order.
func (ix Index) ForRole(role string) []Entry {
	var out []Entry
	for _, e := range ix.Images {
		for _, r := range e.Roles {
			if r == role {
				out = append(out, e)
				break
			}
		}
	}
	return out
}
