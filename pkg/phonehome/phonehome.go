package phonehome

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Status is how a step went.
type Status string

// Statuses.
const (
	// Started: the step began.
	Started Status = "started"
	// OK: the step succeeded.
	OK Status = "ok"
	// Failed: the step failed; Report.RC holds its exit code.
	Failed Status = "failed"
)

// Steps a node configuration reports (others are reported as they come).
const (
	// StepKubeadmInit is `kubeadm init` on the first control-plane node.
	StepKubeadmInit = "kubeadm-init"
	// StepKubeadmJoin is `kubeadm join` on every other node.
	StepKubeadmJoin = "kubeadm-join"
	// StepDone is the last report of a node configuration.
	StepDone = "done"
)

// ShellBody is the POST body a POSIX shell function `report STEP STATUS`
// sends: its first argument is the step, its second the status, for a
// failure "failed rc=N". It is Format of Report{Step: "$1"} with status
// "$2", written out for a double-quoted shell string.
const ShellBody = "step=$1 status=$2"

// ShellStatusFailed is the status argument a shell step passes to report
// when its command failed with the exit code in $rc: with ShellBody it
// sends Format of a Failed report with that RC.
const ShellStatusFailed = string(Failed) + " rc=$rc"

// Report is one progress report of a node.
type Report struct {
	// Step names the step, such as StepKubeadmJoin: letters, digits, '-',
	// '_' and '.'.
	Step string
	// Status is how it went.
	Status Status
	// RC is the step's exit code when Status is Failed (0 otherwise).
	RC int
}

// Format returns r as it goes on the wire.
func Format(r Report) string {
	s := "step=" + r.Step + " status=" + string(r.Status)
	if r.Status == Failed {
		s += " rc=" + strconv.Itoa(r.RC)
	}
	return s
}

// String returns Format(r).
func (r Report) String() string { return Format(r) }

// Joined reports whether r says kubeadm init or join succeeded: the node
// is a member of the cluster (its Node object may not be Ready yet).
func (r Report) Joined() bool {
	return r.Status == OK && (r.Step == StepKubeadmInit || r.Step == StepKubeadmJoin)
}

// Parse parses one report. Surrounding space is ignored; fields may come in
// any order; step and status are required, rc only with status failed
// (missing: -1, unknown). Anything else is an error saying what is wrong.
func Parse(s string) (Report, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return Report{}, errors.New("parse phone-home report: empty")
	}
	r := Report{RC: -1}
	seen := map[string]bool{}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return Report{}, fmt.Errorf("parse phone-home report %q: field %q is not key=value", s, f)
		}
		if seen[k] {
			return Report{}, fmt.Errorf("parse phone-home report %q: %s given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "step":
			if !validStep(v) {
				return Report{}, fmt.Errorf("parse phone-home report %q: step %q: want letters, digits, '-', '_' or '.'", s, v)
			}
			r.Step = v
		case "status":
			switch st := Status(v); st {
			case Started, OK, Failed:
				r.Status = st
			default:
				return Report{}, fmt.Errorf("parse phone-home report %q: status %q: want started, ok or failed", s, v)
			}
		case "rc":
			rc, err := strconv.Atoi(v)
			if err != nil || rc < 0 || rc > 255 {
				return Report{}, fmt.Errorf("parse phone-home report %q: rc %q: want an exit code 0-255", s, v)
			}
			r.RC = rc
		default:
			return Report{}, fmt.Errorf("parse phone-home report %q: unknown field %q (want step, status, rc)", s, k)
		}
	}
	switch {
	case r.Step == "":
		return Report{}, fmt.Errorf("parse phone-home report %q: no step", s)
	case r.Status == "":
		return Report{}, fmt.Errorf("parse phone-home report %q: no status", s)
	case r.Status != Failed && seen["rc"]:
		return Report{}, fmt.Errorf("parse phone-home report %q: rc given with status %s (only failed has one)", s, r.Status)
	case r.Status != Failed:
		r.RC = 0
	}
	return r, nil
}

func validStep(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return s != ""
}

// Path is the boot server path a node reports to.
func Path(node string) string { return "/phone-home/" + url.PathEscape(node) }

// URL is the address node reports to, on the boot server at base (such as
// http://10.40.0.2:8080).
func URL(base, node string) string { return strings.TrimRight(base, "/") + Path(node) }
