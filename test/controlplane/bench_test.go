package controlplane

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/kubeadm"
)

// BenchmarkTokenCreate compares minting and storing one node's bootstrap
// token through the API (what Issue does for every joining node) with the
// peer a shell-script provisioner would use, `kubeadm token create`,
// against the same throwaway control plane. It reports both figures and
// their ratio.
func BenchmarkTokenCreate(b *testing.B) {
	cp := startControlPlane(b)
	adminPath := writeFile(b, filepath.Join(b.TempDir(), "admin.conf"), cp.adminKC)
	ctx := context.Background()
	var ours, peer time.Duration
	var ids []string
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		tok, err := kubeadm.NewToken("bench", time.Now(), 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := kubeadm.CreateToken(ctx, cp.admin, tok); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)

		start = time.Now()
		out, err := exec.Command(cp.bins["kubeadm"], "token", "create", "--kubeconfig", adminPath, "--ttl", "30m",
			"--description", "bench", "--groups", kubeadm.NodeTokenGroup).Output()
		if err != nil {
			b.Fatalf("kubeadm token create: %v", err)
		}
		peer += time.Since(start)
		id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ".")
		ids = append(ids, tok.ID, id)
	}
	b.StopTimer()
	for _, id := range ids {
		kubeadm.DeleteToken(ctx, cp.admin, id)
	}
	oursOp := float64(ours.Nanoseconds()) / float64(b.N)
	peerOp := float64(peer.Nanoseconds()) / float64(b.N)
	b.ReportMetric(oursOp/1e6, "slipway-ms/op")
	b.ReportMetric(peerOp/1e6, "kubeadm-token-create-ms/op")
	b.ReportMetric(peerOp/oursOp, "speedup-x")
	b.Logf("\n%-28s %10s\n%-28s %10.2f\n%-28s %10.2f\n%-28s %10.1fx",
		"token create (per node)", "ms/op", "slipway CreateToken", oursOp/1e6, "kubeadm token create", peerOp/1e6, "ratio (kubeadm/slipway)", peerOp/oursOp)
}
