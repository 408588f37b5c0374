package simrack

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/phonehome"
)

func TestParseNodeConfig(t *testing.T) {
	t.Parallel()
	const head = "#!/bin/sh\nPHONE_HOME=http://127.0.0.1:8080/phone-home/node-0002\n"
	const lines = `step() { report "$name" started; report "$name" "failed rc=$rc"; }
report kubeadm-join started || true
i=0
until report kubeadm-join ok; do i=$((i+1)); [ $i -ge 60 ] && break; sleep 1; done
`
	join := phonehome.Report{Step: phonehome.StepKubeadmJoin, Status: phonehome.OK}
	started := phonehome.Report{Step: phonehome.StepKubeadmJoin, Status: phonehome.Started}
	tests := []struct {
		name   string
		report string // the report function
		want   []configReport
	}{
		{
			name:   "busybox wget, the report-only script's",
			report: `report() { wget -q -O /dev/null --post-data "step=$1 status=$2" "$PHONE_HOME"; }`,
			want: []configReport{
				{body: "step=kubeadm-join status=started", report: started, ok: true, started: true},
				{body: "step=kubeadm-join status=ok", report: join, ok: true, retry: true},
			},
		},
		{
			name: "curl first, then wget, kubeadm's script's",
			report: "report() {\n  [ -n \"$PHONE_HOME\" ] || return 0\n  if command -v curl >/dev/null 2>&1; then\n" +
				"    curl -fsS -m 10 -X POST --data-binary \"step=$1 status=$2\" \"$PHONE_HOME\" >/dev/null 2>&1 || true\n" +
				"  elif command -v wget >/dev/null 2>&1; then\n    wget -q -T 10 -O /dev/null --post-data \"step=$1 status=$2\" \"$PHONE_HOME\" || true\n  fi\n}",
			want: []configReport{
				{body: "step=kubeadm-join status=started", report: started, ok: true, started: true},
				{body: "step=kubeadm-join status=ok", report: join, ok: true, retry: true},
			},
		},
		{
			// The provisioner cannot read this: the simulated node sends
			// it anyway, as a real one would, and never counts as joined.
			name:   "a body not in the phone-home format",
			report: `report() { wget -q -O /dev/null --post-data "$1 $2" "$PHONE_HOME"; }`,
			want: []configReport{
				{body: "kubeadm-join started", started: true},
				{body: "kubeadm-join ok", retry: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseNodeConfig(head + tt.report + "\n" + lines)
			if err != nil {
				t.Fatalf("parseNodeConfig: %v", err)
			}
			want := nodeConfig{phoneHome: "http://127.0.0.1:8080/phone-home/node-0002", reports: tt.want}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(nodeConfig{}, configReport{})); diff != "" {
				t.Errorf("parseNodeConfig (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []struct{ cfg, want string }{
		{"#!/bin/sh\nwget -q -O - --post-data 'config fetched' http://x/phone-home/n\n", "no PHONE_HOME"},
		{"PHONE_HOME=http://x\necho hello\n", "no report function"},
		{"PHONE_HOME=http://x\nreport kubeadm-join ok\n", "no report function"},
		{"PHONE_HOME=http://x\nreport() { echo \"$1 $2\"; }\nreport kubeadm-join ok\n", "posts no"},
		{"PHONE_HOME=http://x\nreport() { wget -q --post-data \"step=$1 status=$2\" \"$PHONE_HOME\"; }\necho hello\n", "reports no step"},
	} {
		if _, err := parseNodeConfig(bad.cfg); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("parseNodeConfig(%q) = %v, want an error saying %q", bad.cfg, err, bad.want)
		}
	}
}
