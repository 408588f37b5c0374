package deviceplugin

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// CDISpecs returns the CDI spec of each device kind present in rs: one CDI
// device per discovered device that has device nodes, each with all of its
// nodes (the runtime merges nodes that several devices share, such as
// /dev/nvidiactl). A device without nodes has nothing to inject and is left
// out: CDI refuses a device with empty edits, and Allocate does not name it.
func CDISpecs(rs []Resource) map[devices.Kind]*cdispec.Spec {
	parts := map[devices.Kind][]devices.Device{}
	seen := map[string]bool{}
	for _, r := range rs {
		for _, d := range r.Devices {
			for _, p := range d.Parts {
				key := string(p.Kind) + "\x00" + p.ID
				if seen[key] || !hasCDIDevice(p) {
					continue
				}
				seen[key] = true
				parts[p.Kind] = append(parts[p.Kind], p)
			}
		}
	}
	out := map[devices.Kind]*cdispec.Spec{}
	for kind, devs := range parts {
		slices.SortFunc(devs, func(a, b devices.Device) int { return cmp.Compare(a.ID, b.ID) })
		spec := &cdispec.Spec{Kind: CDIVendor + "/" + string(kind)}
		for _, d := range devs {
			cd := cdispec.Device{Name: cdiDeviceName(d)}
			for _, n := range d.DeviceNodes {
				cd.ContainerEdits.DeviceNodes = append(cd.ContainerEdits.DeviceNodes, cdiNode(n))
			}
			spec.Devices = append(spec.Devices, cd)
		}
		v, err := cdispec.MinimumRequiredVersion(spec)
		if err != nil {
			v = cdispec.CurrentVersion
		}
		spec.Version = v
		out[kind] = spec
	}
	return out
}

// hasCDIDevice reports whether d gets a CDI device: it needs device nodes.
func hasCDIDevice(d devices.Device) bool { return len(d.DeviceNodes) > 0 }

func cdiNode(n devices.DeviceNode) *cdispec.DeviceNode {
	perm := n.Permissions
	if perm == "" {
		perm = "rw"
	}
	return &cdispec.DeviceNode{Path: n.Path, HostPath: n.HostPath, Permissions: perm}
}

// WriteCDISpecs writes the CDI spec of each device kind in rs to dir
// (slipway.dev-<kind>.yaml, written atomically, mode 0644 so container
// runtimes can read it), and removes the spec of a kind with no devices.
func WriteCDISpecs(dir string, rs []Resource) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write cdi specs: create %s: %w", dir, err)
	}
	cache, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		return fmt.Errorf("write cdi specs in %s: %w", dir, err)
	}
	specs := CDISpecs(rs)
	var errs []error
	for _, kind := range []devices.Kind{devices.KindGPU, devices.KindMIG, devices.KindHCA, devices.KindFPGA} {
		name := cdi.GenerateSpecName(CDIVendor, string(kind)) + ".yaml"
		spec, ok := specs[kind]
		if !ok {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cdi spec %s: %w", name, err))
			}
			continue
		}
		if err := cache.WriteSpec(spec, name); err != nil {
			errs = append(errs, fmt.Errorf("write cdi spec %s in %s: %w", name, dir, err))
			continue
		}
		// The library writes through a 0600 temp file; runtimes running
		// as root read it either way, but tools such as nvidia-ctk cdi
		// list as a user should too. Specs hold no secrets.
		if err := os.Chmod(filepath.Join(dir, name), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("chmod cdi spec %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
