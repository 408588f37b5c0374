package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/slipway-dev/slipway/pkg/flatnet"
	"github.com/slipway-dev/slipway/pkg/nodeinit"
)

const usage = `usage: slipway-node COMMAND [flags]

commands:
  images    import the image bundle named by slipway.images= into containerd (k8s.io)
  config    fetch the one-time configuration named by slipway.config= and run it
  flatnet   write this node's CNI configuration from its pod CIDR and keep routes
            to every other node's pod CIDR (the flat pod network)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("slipway-node "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", "/", "file system root")
	proc := fs.String("proc", "/proc", "procfs root (the kernel command line is PROC/cmdline)")
	importDir := fs.String("import-dir", "/var/lib/containerd/slipway-import", "where image archives are downloaded before import")
	kubeconfig := fs.String("kubeconfig", "/etc/kubernetes/kubelet.conf", "the kubelet's kubeconfig (flatnet reads Nodes with it)")
	cniDir := fs.String("cni-dir", "/etc/cni/net.d", "CNI configuration directory (flatnet)")
	interval := fs.Duration("interval", 10*time.Second, "how often flatnet re-reads the Nodes")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cmdline, err := nodeinit.ReadCmdline(*proc)
	if err != nil {
		fmt.Fprintf(stderr, "slipway-node: %v\n", err)
		return 1
	}
	node := nodeinit.Node{
		Cmdline: cmdline,
		Root:    *root,
		Fetch:   nodeinit.Fetcher{Progress: stdout},
		Run:     nodeinit.ExecRunner{Stdout: stdout, Stderr: stderr},
		Out:     stdout,
	}
	switch args[0] {
	case "images":
		err = node.ImportImages(ctx, *importDir)
	case "config":
		err = node.RunConfig(ctx)
	case "flatnet":
		log := slog.New(slog.NewTextHandler(stderr, nil))
		err = flatnet.Run(ctx, flatnet.Config{
			NodeName:   cmdline[nodeinit.ParamNode],
			Kubeconfig: *kubeconfig,
			CNIDir:     *cniDir,
			Interval:   *interval,
			Log:        log,
		})
	default:
		fmt.Fprintf(stderr, "slipway-node: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		// stderr goes to the console and the journal (see the units).
		fmt.Fprintf(stderr, "slipway-node: %s: FAILED: %v\n", args[0], err)
		if args[0] != "flatnet" {
			// What the runtime and the kubelet said, for the person at the
			// console: the node is stateless and gone after a power cycle.
			fmt.Fprintln(stderr, "slipway-node: the last lines of containerd's and the kubelet's journal:")
			_ = node.Run.Run(context.WithoutCancel(ctx), "journalctl", "--no-pager", "-o", "short-monotonic", "-n", "60", "-u", "containerd", "-u", "kubelet")
		}
		return 1
	}
	return 0
}
