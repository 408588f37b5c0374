package simrack

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/phonehome"
)

func TestParseNodeConfig(t *testing.T) {
	t.Parallel()
	const script = `#!/bin/sh
PHONE_HOME=http://127.0.0.1:8080/phone-home/node-0002
report() { wget -q -O /dev/null --post-data "step=$1 status=$2" "$PHONE_HOME"; }
step() { report "$name" started; }
report kubeadm-join started || true
i=0
until report kubeadm-join ok; do i=$((i+1)); [ $i -ge 60 ] && break; sleep 1; done
`
	got, err := parseNodeConfig(script)
	if err != nil {
		t.Fatalf("parseNodeConfig: %v", err)
	}
	want := nodeConfig{phoneHome: "http://127.0.0.1:8080/phone-home/node-0002", reports: []configReport{
		{report: phonehome.Report{Step: phonehome.StepKubeadmJoin, Status: phonehome.Started}},
		{report: phonehome.Report{Step: phonehome.StepKubeadmJoin, Status: phonehome.OK}, retry: true},
	}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(nodeConfig{}, configReport{})); diff != "" {
		t.Errorf("parseNodeConfig (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"#!/bin/sh\nwget -q -O - --post-data 'config fetched' http://x/phone-home/n\n", "PHONE_HOME=http://x\necho hello\n"} {
		if _, err := parseNodeConfig(bad); err == nil {
			t.Errorf("parseNodeConfig(%q) = nil error, want one", bad)
		}
	}
}
