package phonehome

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFormatParseRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range []Report{
		{Step: StepKubeadmJoin, Status: Started},
		{Step: StepKubeadmInit, Status: OK},
		{Step: "enable-kubelet", Status: Failed, RC: 1},
		{Step: StepDone, Status: OK},
	} {
		got, err := Parse(Format(r))
		if err != nil {
			t.Errorf("Parse(Format(%+v)) error: %v", r, err)
			continue
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", Format(r), diff)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Report
		wantErr string
	}{
		{"step=kubeadm-join status=ok", Report{Step: "kubeadm-join", Status: OK}, ""},
		{"  status=ok step=kubeadm-init \n", Report{Step: "kubeadm-init", Status: OK}, ""},
		{"step=x status=failed", Report{Step: "x", Status: Failed, RC: -1}, ""},
		{"step=x status=failed rc=127", Report{Step: "x", Status: Failed, RC: 127}, ""},
		{"", Report{}, "empty"},
		{"config fetched", Report{}, "not key=value"},
		{"uptime=12.3", Report{}, "unknown field"},
		{"step=x", Report{}, "no status"},
		{"status=ok", Report{}, "no step"},
		{"step=x status=done", Report{}, "want started, ok or failed"},
		{"step=x status=ok rc=0", Report{}, "only failed has one"},
		{"step=x status=failed rc=300", Report{}, "exit code"},
		{"step=a;rm status=ok", Report{}, "want letters"},
		{"step=x step=y status=ok", Report{}, "given twice"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// TestShellBody checks that what the shell function sends parses: the
// shell substitutes $1 and $2 (for a failure "failed rc=N").
func TestShellBody(t *testing.T) {
	t.Parallel()
	failed := strings.ReplaceAll(ShellStatusFailed, "$rc", "100")
	for _, args := range [][2]string{{"kubeadm-join", "ok"}, {"kubeadm-join", "started"}, {"install-packages", failed}} {
		body := strings.NewReplacer("$1", args[0], "$2", args[1]).Replace(ShellBody)
		r, err := Parse(body)
		if err != nil {
			t.Errorf("Parse(%q) (ShellBody with %q, %q): %v", body, args[0], args[1], err)
			continue
		}
		if Format(r) != body {
			t.Errorf("Format(Parse(%q)) = %q, want it unchanged", body, Format(r))
		}
		if args[1] == failed && (r.Status != Failed || r.RC != 100) {
			t.Errorf("Parse(%q) = %+v, want status failed rc 100", body, r)
		}
	}
}

func TestJoined(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r    Report
		want bool
	}{
		{Report{Step: StepKubeadmJoin, Status: OK}, true},
		{Report{Step: StepKubeadmInit, Status: OK}, true},
		{Report{Step: StepKubeadmJoin, Status: Started}, false},
		{Report{Step: StepKubeadmJoin, Status: Failed, RC: 1}, false},
		{Report{Step: StepDone, Status: OK}, false},
	}
	for _, tt := range tests {
		if got := tt.r.Joined(); got != tt.want {
			t.Errorf("%v.Joined() = %v, want %v", tt.r, got, tt.want)
		}
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	if got, want := URL("http://10.40.0.2:8080/", "gpu-01"), "http://10.40.0.2:8080/phone-home/gpu-01"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
}
