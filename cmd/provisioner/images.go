package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-dev/slipway/pkg/imagebundle"
)

func newImagesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build the offline image bundle nodes import before kubeadm runs",
	}
	cmd.AddCommand(newImagesBuildCmd(g))
	return cmd
}

// imagesBuildFlags are the flags of images build.
type imagesBuildFlags struct {
	out, version, kubeadm, from, root, epoch string
	binDirs, extras                          []string
}

func newImagesBuildCmd(g *globals) *cobra.Command {
	var o imagesBuildFlags
	build := &cobra.Command{
		Use:   "build --out DIR --kubeadm PATH --from registry|binaries",
		Short: "Write the images kubeadm of the cluster version uses (and extras) as OCI archives with index files",
		Long: `images build writes the images kubeadm of the cluster's Kubernetes version uses
(kubeadm config images list: kube-apiserver, kube-controller-manager, kube-scheduler,
kube-proxy, CoreDNS, pause, etcd), named exactly as kubeadm names them, plus extras,
each as an OCI image layout archive under DIR/images/, and the index files
index.json, control-plane.json and worker.json. Serve DIR from the boot server's
asset directory and point each profile's kernelArgs at its index, for example
slipway.images=bundle/worker.json.

--from registry pulls the images (on a connected machine; carry DIR to the site).
--from binaries builds one small image per locally built program found in --bin-dir
(kube-proxy's image takes iptables from --root, the node image's root filesystem).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	f := build.Flags()
	f.StringVar(&o.out, "out", "", "bundle directory to write (required)")
	f.StringVar(&o.version, "kubernetes-version", "", "Kubernetes version (default: the inventory's cluster.kubernetesVersion)")
	f.StringVar(&o.kubeadm, "kubeadm", "kubeadm", "the kubeadm program of that version (names the images)")
	f.StringVar(&o.from, "from", "", "where the images come from: registry or binaries (required)")
	f.StringArrayVar(&o.binDirs, "bin-dir", nil, "with --from binaries: directory holding the programs (repeatable, searched in order)")
	f.StringVar(&o.root, "root", "", "with --from binaries: the node image's root filesystem (iptables for kube-proxy)")
	f.StringArrayVar(&o.extras, "add", nil, "extra image: REF (pulled) or REF=FILE[:PATH] with --from binaries (repeatable)")
	f.StringVar(&o.epoch, "epoch", "", "timestamp of every built file, seconds since 1970 (default SOURCE_DATE_EPOCH's role: 0)")
	_ = build.MarkFlagRequired("out")
	_ = build.MarkFlagRequired("from")
	return build
}

// options turns the flags into the library's options.
func (o imagesBuildFlags) options(g *globals) (imagebundle.BuildOptions, error) {
	version := o.version
	if version == "" {
		inv, err := g.loadInventory()
		if err != nil {
			return imagebundle.BuildOptions{}, usageError("give --kubernetes-version or -f INVENTORY: %v", err)
		}
		version = inv.Cluster.KubernetesVersion
	}
	opts := imagebundle.BuildOptions{
		Dir:               o.out,
		KubernetesVersion: version,
		Kubeadm:           o.kubeadm,
		From:              imagebundle.Source(o.from),
		Binaries:          imagebundle.BinaryOptions{BinDirs: o.binDirs, Root: o.root},
		Epoch:             time.Unix(0, 0).UTC(),
		Log:               g.log,
	}
	if o.epoch != "" {
		sec, err := strconv.ParseInt(o.epoch, 10, 64)
		if err != nil {
			return opts, usageError("--epoch %q: want seconds since 1970 (SOURCE_DATE_EPOCH)", o.epoch)
		}
		opts.Epoch = time.Unix(sec, 0).UTC()
	}
	for _, s := range o.extras {
		e, err := imagebundle.ParseExtra(s)
		if err != nil {
			return opts, usageError("--add: %v", err)
		}
		opts.Extras = append(opts.Extras, e)
	}
	return opts, nil
}

func (o imagesBuildFlags) run(cmd *cobra.Command, g *globals) error {
	opts, err := o.options(g)
	if err != nil {
		return err
	}
	ix, err := imagebundle.Build(cmd.Context(), opts)
	if err != nil {
		return err
	}
	var total int64
	for _, e := range ix.Images {
		fmt.Fprintf(g.stdout, "%-55s %8d KiB  %s\n", e.Ref, e.Size/1024, strings.Join(e.Roles, ","))
		total += e.Size
	}
	fmt.Fprintf(g.stdout, "%d images, %d MiB, Kubernetes %s, in %s (control-plane.json, worker.json, index.json)\n",
		len(ix.Images), total>>20, ix.KubernetesVersion, filepath.Clean(o.out))
	return nil
}
