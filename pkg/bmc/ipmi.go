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
	pw   inventory.Secret // bmclib holds it too; needed for the calls it lacks
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
	p.pw = pw
	p.inf = Info{Protocol: "ipmi"}
	if out, err := p.ipmitool(ctx, "mc", "info"); err == nil {
		// Only for display: a BMC that does not answer mc info still works.
		p.inf.Vendor, p.inf.Model = parseMCInfo(out)
	}
	return nil
}

// ipmitool runs ipmitool for the calls bmclib does not expose, the way
// bmclib runs it: lanplus, cipher suite 3 then 17, the password in
// IPMITOOL_PASSWORD, never on the command line.
func (p *ipmiBackend) ipmitool(ctx context.Context, args ...string) (string, error) {
	bin := p.cfg.IpmitoolPath
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("ipmitool"); err != nil {
			return "", fmt.Errorf("find ipmitool (install the ipmitool package): %w", err)
		}
	}
	var lastErr error
	for _, cs := range []string{"3", "17"} {
		full := append([]string{"-I", "lanplus", "-U", p.b.Username, "-E", "-N", "5",
			"-H", p.b.Host, "-p", strconv.Itoa(int(p.b.Port)), "-C", cs}, args...)
		cmd := exec.CommandContext(ctx, bin, full...)
		cmd.Env = []string{"IPMITOOL_PASSWORD=" + p.pw.Reveal()}
		out, err := cmd.CombinedOutput()
		if err == nil {
			return string(out), nil
		}
		lastErr = fmt.Errorf("ipmitool %s: %s: %w", strings.Join(args, " "), oneLine(string(out), 160), err)
		if ctx.Err() != nil {
			break
		}
	}
	return "", lastErr
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

// canCycle is false: IPMI offers no evidence of a restart, so a cycle is
// done as off, confirm off, on, confirm on, which the power state proves.
func (p *ipmiBackend) canCycle() bool { return false }

// snapshot reads the power state; IPMI has no LastResetTime or boot
// progress to read.
func (p *ipmiBackend) snapshot(ctx context.Context) (snapshot, error) {
	out, err := p.conn.PowerStateGet(ctx)
	if err != nil {
		return snapshot{Power: PowerStateUnknown}, err
	}
	st, err := parseIPMIPower(out)
	return snapshot{Power: st}, err
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

// bmclibIPMIVerb maps an action to bmclib's ipmitool verbs.
func bmclibIPMIVerb(a PowerAction) string {
	if a == ActionSoftOff {
		return "soft"
	}
	return string(a) // on, off, reset, cycle
}

func (p *ipmiBackend) send(ctx context.Context, a PowerAction) error {
	ok, err := p.conn.PowerSet(ctx, bmclibIPMIVerb(a))
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("ipmitool did not confirm the request")
	}
	return nil
}

func (p *ipmiBackend) setBoot(ctx context.Context, d BootDevice, o BootOptions) (bootSet, error) {
	if d == BootCD {
		return bootSet{}, errors.New("virtual media needs a Redfish BMC (IPMI has no InsertMedia); use redfish:// for this node")
	}
	ok, err := p.conn.BootDeviceSet(ctx, string(d), o.Persistent, !o.Legacy)
	if err != nil {
		return bootSet{}, err
	}
	if !ok {
		return bootSet{}, errors.New("ipmitool did not confirm the request")
	}
	return bootSet{}, nil
}

// bootOverride reads boot parameter 5 with "ipmitool chassis bootparam get
// 5", which bmclib does not expose. Only the device selector is used: BMCs
// such as ipmi_sim keep the device but not the persistent and UEFI flags.
func (p *ipmiBackend) bootOverride(ctx context.Context, _ bool) (BootOverride, error) {
	out, err := p.ipmitool(ctx, "chassis", "bootparam", "get", "5")
	if err != nil {
		return BootOverride{}, err
	}
	return parseBootParam5(out)
}

var errNoIPMIMedia = errors.New("virtual media needs a Redfish BMC (IPMI has no InsertMedia); use redfish:// for this node")

func (p *ipmiBackend) readMedia(context.Context) (Media, error)  { return Media{}, errNoIPMIMedia }
func (p *ipmiBackend) insertMedia(context.Context, string) error { return errNoIPMIMedia }
func (p *ipmiBackend) ejectMedia(context.Context) error          { return errNoIPMIMedia }

// parseBootParam5 reads ipmitool's "Boot Device Selector : Force PXE".
// Only the device is kept (FlagsRead is false).
func parseBootParam5(out string) (BootOverride, error) {
	var o BootOverride
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "-"))
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if strings.TrimSpace(k) != "Boot Device Selector" {
			continue
		}
		v = strings.TrimSpace(v)
		switch {
		case strings.Contains(v, "PXE"):
			o.Device = BootPXE
		case strings.Contains(v, "Hard-Drive"):
			o.Device = BootDisk
		case strings.Contains(v, "CD/DVD"):
			o.Device = BootCD
		case strings.HasPrefix(v, "No override"):
		default:
			o.Device = BootDevice(strings.ToLower(v))
		}
		return o, nil
	}
	return o, fmt.Errorf("no boot device selector in ipmitool output %q", oneLine(out, 120))
}
