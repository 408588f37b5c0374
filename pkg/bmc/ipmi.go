package bmc

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"

	"github.com/slipway-dev/slipway/pkg/inventory"
)

// ipmiBackend drives an IPMI BMC through bmclib's ipmitool provider, which
// runs ipmitool -I lanplus with the password in IPMITOOL_PASSWORD (never on
// the command line) and tries cipher suite 3, then 17.
type ipmiBackend struct {
	b    inventory.BMC
	cfg  Config
	conn *ipmitool.Conn
	inf  Info
}

func newIPMI(b inventory.BMC, cfg Config) *ipmiBackend { return &ipmiBackend{b: b, cfg: cfg} }

func (p *ipmiBackend) open(ctx context.Context, pw inventory.Secret) error {
	opts := []ipmitool.Option{ipmitool.WithPort(strconv.Itoa(int(p.b.Port)))}
	if p.cfg.IpmitoolPath != "" {
		opts = append(opts, ipmitool.WithIpmitoolPath(p.cfg.IpmitoolPath))
	}
	conn, err := ipmitool.New(p.b.Host, p.b.Username, pw.Reveal(), opts...)
	if err != nil {
		return fmt.Errorf("find ipmitool (install the ipmitool package): %w", err)
	}
	// Open reads the power state: it proves the address and credentials.
	if err := conn.Open(ctx); err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	p.conn = conn
	p.inf = Info{Protocol: "ipmi"}
	p.inf.Vendor, p.inf.Model = p.mcInfo(ctx, pw)
	return nil
}

// mcInfo reads the BMC's manufacturer and product from "ipmitool mc info",
// which bmclib does not expose. It is run like bmclib runs ipmitool (lanplus,
// cipher suite 3 then 17, the password in IPMITOOL_PASSWORD). It is only
// for display, so a failure leaves both empty.
func (p *ipmiBackend) mcInfo(ctx context.Context, pw inventory.Secret) (vendor, model string) {
	bin := p.cfg.IpmitoolPath
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("ipmitool"); err != nil {
			return "", ""
		}
	}
	for _, cs := range []string{"3", "17"} {
		cmd := exec.CommandContext(ctx, bin, "-I", "lanplus", "-U", p.b.Username, "-E", "-N", "5",
			"-H", p.b.Host, "-p", strconv.Itoa(int(p.b.Port)), "-C", cs, "mc", "info")
		cmd.Env = []string{"IPMITOOL_PASSWORD=" + pw.Reveal()}
		out, err := cmd.Output()
		if err != nil {
			continue
		}
		return parseMCInfo(string(out))
	}
	return "", ""
}

// parseMCInfo reads "Manufacturer Name : X" and "Product Name : Y";
// "Unknown (0xF02)" product names are dropped.
func parseMCInfo(out string) (vendor, model string) {
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "Manufacturer Name":
			vendor = v
		case "Product Name":
			if !strings.HasPrefix(v, "Unknown") {
				model = v
			}
		}
	}
	return vendor, model
}

func (p *ipmiBackend) close(ctx context.Context) error {
	if p.conn == nil {
		return nil
	}
	return p.conn.Close(ctx)
}

func (p *ipmiBackend) info() Info {
	if p.inf.Protocol == "" {
		return Info{Protocol: "ipmi"}
	}
	return p.inf
}
func (p *ipmiBackend) quirks() quirks { return quirks{} }

func (p *ipmiBackend) powerState(ctx context.Context) (PowerState, error) {
	out, err := p.conn.PowerStateGet(ctx)
	if err != nil {
		return PowerStateUnknown, err
	}
	return parseIPMIPower(out)
}

// parseIPMIPower reads ipmitool's "Chassis Power is on|off".
func parseIPMIPower(out string) (PowerState, error) {
	s := strings.ToLower(out)
	switch {
	case strings.Contains(s, "chassis power is on"):
		return PowerOn, nil
	case strings.Contains(s, "chassis power is off"):
		return PowerOff, nil
	}
	return PowerStateUnknown, fmt.Errorf("unexpected ipmitool output %q", oneLine(out, 120))
}

var bmclibIPMIAction = map[PowerAction]string{
	ActionOn:      "on",
	ActionOff:     "off",
	ActionSoftOff: "soft",
	ActionReset:   "reset",
	ActionCycle:   "cycle",
}

func (p *ipmiBackend) setPower(ctx context.Context, a PowerAction) error {
	ok, err := p.conn.PowerSet(ctx, bmclibIPMIAction[a])
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("ipmitool did not confirm the request")
	}
	return nil
}

func (p *ipmiBackend) setBoot(ctx context.Context, d BootDevice, o BootOptions, _ quirks) error {
	ok, err := p.conn.BootDeviceSet(ctx, string(d), o.Persistent, !o.Legacy)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("ipmitool did not confirm the request")
	}
	return nil
}

// bootOverride is not read back over IPMI: bmclib has no getter, and BMCs
// such as ipmi_sim keep only the device, not the flags.
func (p *ipmiBackend) bootOverride(context.Context) (BootOverride, bool, error) {
	return BootOverride{}, false, nil
}
