package imagebundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// KubeadmImages returns the images kubeadm (the program at kubeadm) uses
// for kubernetesVersion: `kubeadm config images list -o json`.
func KubeadmImages(ctx context.Context, kubeadm, kubernetesVersion string) ([]string, error) {
	out, err := exec.CommandContext(ctx, kubeadm, "config", "images", "list",
		"--kubernetes-version", kubernetesVersion, "-o", "json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("list kubeadm images for %s: %s: %w", kubernetesVersion, kubeadm, err)
	}
	var list struct {
		Images []string `json:"images"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("list kubeadm images for %s: parse %s's output: %w", kubernetesVersion, kubeadm, err)
	}
	if len(list.Images) == 0 {
		return nil, fmt.Errorf("list kubeadm images for %s: %s listed none", kubernetesVersion, kubeadm)
	}
	return list.Images, nil
}

// Component is the Kubernetes component an image of kubeadm's list runs:
// the last element of its repository (kube-apiserver, coredns, pause, etcd).
func Component(ref string) string {
	repo, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return path.Base(repo)
}

// Roles returns the node roles that import a kubeadm image: every image on
// control-plane nodes; pause, kube-proxy and CoreDNS on workers too.
func Roles(ref string) []string {
	switch Component(ref) {
	case "pause", "kube-proxy", "coredns":
		return []string{RoleControlPlane, RoleWorker}
	}
	return []string{RoleControlPlane}
}

// BinaryOptions says where FromBinaries finds what it packs.
type BinaryOptions struct {
	// BinDirs are searched in order for each component's program
	// (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy,
	// etcd, coredns, pause).
	BinDirs []string
	// Root is a Debian root filesystem (the node image's) that kube-proxy's
	// image takes iptables (nft backend) and its libraries from.
	Root string
	// Epoch is every timestamp in the images.
	Epoch time.Time
}

// FromBinaries builds one small image per kubeadm image ref from locally
// built programs: the program in /usr/local/bin (CoreDNS and pause at / as
// in the upstream images, with their entrypoints), and for kube-proxy also
// iptables from opts.Root.
func FromBinaries(refs []string, opts BinaryOptions) ([]Image, error) {
	var out []Image
	var errs []error
	for _, ref := range refs {
		spec, err := binarySpec(ref, opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("image %s: %w", ref, err))
			continue
		}
		img, err := FromFiles(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("image %s: %w", ref, err))
			continue
		}
		out = append(out, Image{Ref: ref, Image: img, Roles: Roles(ref)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("build images from binaries: %w", err)
	}
	return out, nil
}

func (o BinaryOptions) find(program string) (string, error) {
	for _, d := range o.BinDirs {
		p := filepath.Join(d, program)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no %s in %s (build it: make node-image builds the node's programs, make tools the control plane's)",
		program, strings.Join(o.BinDirs, ", "))
}

func binarySpec(ref string, opts BinaryOptions) (Spec, error) {
	comp := Component(ref)
	spec := Spec{Epoch: opts.Epoch, Env: []string{DefaultPath}}
	switch comp {
	case "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd":
		p, err := opts.find(comp)
		if err != nil {
			return Spec{}, err
		}
		spec.Files = append(spec.Files, File{Path: "/usr/local/bin/" + comp, Source: p})
		if comp == "etcd" {
			if p, err := opts.find("etcdctl"); err == nil {
				spec.Files = append(spec.Files, File{Path: "/usr/local/bin/etcdctl", Source: p})
			}
		}
		if comp == "kube-proxy" {
			if opts.Root == "" {
				return Spec{}, errors.New("kube-proxy needs iptables: give the node image's root filesystem")
			}
			files, err := RootFiles(opts.Root, "/usr/sbin/iptables", "/usr/sbin/iptables-restore", "/usr/sbin/iptables-save",
				"/usr/sbin/ip6tables", "/usr/sbin/ip6tables-restore", "/usr/sbin/ip6tables-save",
				"/usr/lib/x86_64-linux-gnu/xtables", "/etc/protocols", "/etc/ethertypes")
			if err != nil {
				return Spec{}, fmt.Errorf("iptables for kube-proxy: %w", err)
			}
			spec.Files = append(spec.Files, files...)
			// The merged-/usr links the ELF interpreter path goes through.
			for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
				spec.Files = append(spec.Files, File{Path: "/" + d, Link: "usr/" + d})
			}
			spec.Files = dedupe(spec.Files)
		}
	case "coredns", "pause":
		p, err := opts.find(comp)
		if err != nil {
			return Spec{}, err
		}
		spec.Files = []File{{Path: "/" + comp, Source: p}}
		spec.Entrypoint = []string{"/" + comp}
	default:
		return Spec{}, fmt.Errorf("no local build for component %q", comp)
	}
	return spec, nil
}

func dedupe(files []File) []File {
	seen := map[string]bool{}
	var out []File
	for _, f := range files {
		p := path.Clean(f.Path)
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, f)
	}
	return out
}

// Platform is the platform bundles are built for.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// Pull fetches ref's linux/amd64 image from its registry (credentials from
// the Docker config, as docker and crane use them).
func Pull(ctx context.Context, ref string) (v1.Image, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := remote.Image(r, remote.WithContext(ctx), remote.WithPlatform(Platform),
		remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}
