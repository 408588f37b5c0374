package bmc

import (
	"slices"
	"strings"
)

// Quirk is a known deviation of a BMC family, matched on the Redfish
// ComputerSystem's Manufacturer and Model. The table is only a hint that
// saves a refused request: the Client learns the same deviations from the
// BMC's answers (a 400 naming BootSourceOverrideMode, a 405 on a system
// with @Redfish.Settings) and always reads back what it set.
type Quirk struct {
	// Manufacturer matches the Redfish Manufacturer, ignoring case.
	Manufacturer string
	// Model matches the start of the Redfish Model, ignoring case; empty
	// matches every model of the manufacturer.
	Model string
	// NoBootMode: the BMC refuses a PATCH that carries
	// BootSourceOverrideMode, so the Client leaves the mode out from the
	// start. The mode read back must still be the one asked for.
	NoBootMode bool
	// NoPowerCycle: the BMC has no PowerCycle reset type, so the Client
	// cycles by itself (off, confirm off, on, confirm on). A BMC whose
	// advertised reset types lack PowerCycle is treated the same way
	// without an entry here.
	NoPowerCycle bool
	// Why says where the quirk was seen.
	Why string
}

// DefaultQuirks returns the built-in quirk table.
func DefaultQuirks() []Quirk {
	return []Quirk{
		{Manufacturer: "Dell Inc.", NoPowerCycle: true,
			Why: "iDRAC lists no PowerCycle in ResetType@Redfish.AllowableValues"},
		{Manufacturer: "Dell Inc.", Model: "PowerEdge R630", NoBootMode: true,
			Why: "iDRAC 8 (13G) answers 400 to a PATCH with BootSourceOverrideMode but applies the target (ansible-collections/community.general#5091)"},
		{Manufacturer: "Dell Inc.", Model: "PowerEdge R730", NoBootMode: true,
			Why: "iDRAC 8 (13G), as the R630"},
		{Manufacturer: "HPE", NoPowerCycle: true,
			Why: "iLO 5 lists no PowerCycle reset type"},
		{Manufacturer: "HPE", Model: "ProLiant DL160", NoBootMode: true,
			Why: "rejects boot override fields beyond target and enabled (bmc-toolbox/bmclib#318)"},
	}
}

// quirks is the merged set of deviations that apply to one BMC: from the
// table, from what it advertises, and learned from its answers.
type quirks struct {
	noBootMode   bool   // leave BootSourceOverrideMode out of Boot PATCHes
	modeRefusal  string // the BMC's answer when it refused the mode ("" if not met)
	noPowerCycle bool
	settingsOnly bool // Boot goes to the @Redfish.Settings object
}

// matchQuirks merges every table entry that applies to manufacturer and
// model, and treats advertised reset types without PowerCycle as
// NoPowerCycle.
func matchQuirks(table []Quirk, manufacturer, model string, resetTypes []string) quirks {
	var q quirks
	for _, e := range table {
		if !strings.EqualFold(e.Manufacturer, manufacturer) {
			continue
		}
		if e.Model != "" && !strings.HasPrefix(strings.ToLower(model), strings.ToLower(e.Model)) {
			continue
		}
		q.noBootMode = q.noBootMode || e.NoBootMode
		q.noPowerCycle = q.noPowerCycle || e.NoPowerCycle
	}
	if len(resetTypes) > 0 && !slices.Contains(resetTypes, "PowerCycle") {
		q.noPowerCycle = true
	}
	return q
}

func (q quirks) names() []string {
	var out []string
	if q.noBootMode {
		out = append(out, "no BootSourceOverrideMode")
	}
	if q.noPowerCycle {
		out = append(out, "no PowerCycle")
	}
	if q.settingsOnly {
		out = append(out, "boot via @Redfish.Settings")
	}
	return out
}
