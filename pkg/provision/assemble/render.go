package assemble

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/kubeadm"
	"github.com/slipway-dev/slipway/pkg/phonehome"
	"github.com/slipway-dev/slipway/pkg/provision"
	"github.com/slipway-dev/slipway/pkg/pxe/httpboot"
)

// heldRetry is how often a held config request asks again whether the
// node's turn has come.
const heldRetry = 250 * time.Millisecond

// journaledRenderer is the renderer the boot server calls before it
// answers a config request: the orchestrator journals "config fetched"
// first (and refuses a node it is about to power-cycle), so a provisioner
// killed right after serving a config still knows, when it resumes, that
// the node booted its OS and must not be power-cycled. The orchestrator
// exists before the boot services, so it is given here at construction.
type journaledRenderer struct {
	next httpboot.Renderer
	o    *provision.Orchestrator
}

// Render journals the fetch, then renders. A node that netbooted before its
// turn (EarlyNetboot) waits here until its turn comes or ctx ends; the
// request stays open meanwhile (the boot server has no write timeout).
func (j *journaledRenderer) Render(ctx context.Context, n inventory.Node) ([]byte, error) {
	for {
		err := j.o.Observe(ctx, provision.Event{Node: n.Name, Kind: provision.EventConfig})
		if err == nil {
			break
		}
		if !errors.Is(err, provision.ErrHeld) {
			return nil, fmt.Errorf("serve node config of %s: %w", n.Name, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("serve node config of %s: %w", n.Name, ctx.Err())
		case <-time.After(heldRetry):
		}
	}
	return j.next.Render(ctx, n)
}

// reportOnlyRenderer renders the node config of JoinReportOnly: a POSIX
// shell script (busybox will do) that reports the kubeadm step the node
// would run, started then ok, without running kubeadm. The ok report is
// repeated each second, up to a minute, until the provisioner answers, so
// a provisioner restarted meanwhile still hears it.
type reportOnlyRenderer struct {
	inv     *inventory.Inventory
	baseURL string
	delay   time.Duration
}

// Render returns n's script.
func (r reportOnlyRenderer) Render(_ context.Context, n inventory.Node) ([]byte, error) {
	step, kind := phonehome.StepKubeadmJoin, kubeadm.KindOf(r.inv, n)
	if kind == kubeadm.KindInit {
		step = phonehome.StepKubeadmInit
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# slipway report-only node configuration for %s (%s): there is no Kubernetes API\n", n.Name, kind)
	b.WriteString("# here (demo or lab), so the node reports its kubeadm step without running kubeadm.\n")
	fmt.Fprintf(&b, "PHONE_HOME=%s\n", phonehome.URL(r.inv.NodeBootURL(n, r.baseURL), n.Name))
	// busybox wget: no -T (busybox 1.35's static build crashes with it).
	fmt.Fprintf(&b, "report() { wget -q -O /dev/null --post-data \"%s\" \"$PHONE_HOME\"; }\n", phonehome.ShellBody)
	fmt.Fprintf(&b, "report %s %s || true\n", step, phonehome.Started)
	if s := int(r.delay.Round(time.Second) / time.Second); s > 0 {
		fmt.Fprintf(&b, "sleep %d\n", s)
	}
	fmt.Fprintf(&b, "i=0\nuntil report %s %s; do\n  i=$((i+1)); [ $i -ge 60 ] && break; sleep 1\ndone\n", step, phonehome.OK)
	return []byte(b.String()), nil
}
