package simrack

import (
	"errors"
	"regexp"
	"strings"

	"github.com/slipway-dev/slipway/pkg/phonehome"
)

// nodeConfig is what a simulated OS runs of the node configuration it
// fetched: the phone-home URL and the reports, in order. A real node runs
// the configuration as a shell script; the simulation understands its
// report function and report lines, so a configuration that reports the
// wrong step, in the wrong format, to the wrong URL, or nothing at all
// fails in the simulation as it would on a real node:
//
//	PHONE_HOME=http://10.40.0.2:8080/phone-home/gpu-01
//	report() { wget -q -O /dev/null --post-data "step=$1 status=$2" "$PHONE_HOME"; }
//	report kubeadm-join started || true
//	until report kubeadm-join ok; do ...; done
//
// A report sends the body the report function's --post-data (or curl's
// --data-binary) gives, with $1 and $2 replaced by the line's arguments, as
// the shell would. A report on an `until` line is repeated until the
// provisioner answers; any other is sent once. Other lines are ignored:
// the simulation decides how long the work between the reports takes.
type nodeConfig struct {
	phoneHome string
	reports   []configReport
}

type configReport struct {
	// body is what the report function posts for this line.
	body string
	// report is the body as the provisioner parses it; ok is false when it
	// does not parse (the provisioner then sees no step).
	report phonehome.Report
	ok     bool
	// started: the line reports a step starting (the work comes after).
	started bool
	// retry: repeat until answered (an `until report ...` loop).
	retry bool
}

var (
	rePhoneHomeVar = regexp.MustCompile(`(?m)^\s*PHONE_HOME=['"]?([^'"\s]+)`)
	reReportFunc   = regexp.MustCompile(`(?m)^\s*report\s*\(\)\s*\{`)
	rePostBody     = regexp.MustCompile(`--(?:post-data|data-binary|data)[ =]"([^"]*)"\s+"\$PHONE_HOME"`)
	reReportLine   = regexp.MustCompile(`(?m)^\s*(until\s+)?report\s+(\S+)\s+(\S+)`)
)

// parseNodeConfig reads cfg. A configuration without a phone-home URL, a
// report function that posts to it, or a single report cannot tell the
// provisioner anything: an error.
func parseNodeConfig(cfg string) (nodeConfig, error) {
	var nc nodeConfig
	m := rePhoneHomeVar.FindStringSubmatch(cfg)
	if m == nil {
		return nc, errors.New("node config sets no PHONE_HOME")
	}
	nc.phoneHome = m[1]
	fn := reReportFunc.FindStringIndex(cfg)
	if fn == nil {
		return nc, errors.New("node config defines no report function (report: not found)")
	}
	post := rePostBody.FindStringSubmatch(cfg[fn[1]:])
	if post == nil {
		return nc, errors.New(`node config's report function posts no "..." body to "$PHONE_HOME"`)
	}
	for _, m := range reReportLine.FindAllStringSubmatch(cfg, -1) {
		step, status := m[2], strings.TrimSuffix(m[3], ";")
		if strings.ContainsAny(step+status, `$"'`) {
			// Inside a shell function (report "$name" ...): not a report
			// of its own.
			continue
		}
		body := strings.NewReplacer("$1", step, "$2", status).Replace(post[1])
		r, err := phonehome.Parse(body)
		nc.reports = append(nc.reports, configReport{body: body, report: r, ok: err == nil,
			started: status == string(phonehome.Started), retry: m[1] != ""})
	}
	if len(nc.reports) == 0 {
		return nc, errors.New("node config reports no step")
	}
	return nc, nil
}
