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
// report lines, so a configuration that reports the wrong step, to the
// wrong URL, or nothing at all fails in the simulation as it would on a
// real node:
//
//	PHONE_HOME=http://10.40.0.2:8080/phone-home/gpu-01
//	report kubeadm-join started || true
//	until report kubeadm-join ok; do ...; done
//
// A report on an `until` line is repeated until the provisioner answers;
// any other is sent once. Other lines are ignored: the simulation decides
// how long the work between the reports takes.
type nodeConfig struct {
	phoneHome string
	reports   []configReport
}

type configReport struct {
	report phonehome.Report
	// retry: repeat until answered (an `until report ...` loop).
	retry bool
}

var (
	rePhoneHomeVar = regexp.MustCompile(`(?m)^\s*PHONE_HOME=['"]?([^'"\s]+)`)
	reReportLine   = regexp.MustCompile(`(?m)^\s*(until\s+)?report\s+(\S+)\s+(\S+)`)
)

// parseNodeConfig reads cfg. A configuration without a phone-home URL or
// without a single report cannot tell the provisioner anything: an error.
func parseNodeConfig(cfg string) (nodeConfig, error) {
	var nc nodeConfig
	m := rePhoneHomeVar.FindStringSubmatch(cfg)
	if m == nil {
		return nc, errors.New("node config sets no PHONE_HOME")
	}
	nc.phoneHome = m[1]
	for _, m := range reReportLine.FindAllStringSubmatch(cfg, -1) {
		// Lines inside shell functions report "$name" and the like: not a
		// report of their own.
		body := "step=" + m[2] + " status=" + strings.TrimSuffix(m[3], ";")
		r, err := phonehome.Parse(body)
		if err != nil {
			continue
		}
		nc.reports = append(nc.reports, configReport{report: r, retry: m[1] != ""})
	}
	if len(nc.reports) == 0 {
		return nc, errors.New("node config reports no step")
	}
	return nc, nil
}
