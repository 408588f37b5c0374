package dra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	cdispec "tags.cncf.io/container-device-interface/specs-go"

	"github.com/slipway-dev/slipway/pkg/devices"
)

// CDI names of prepared claims: one spec per claim, kind slipway.dev/claim,
// file slipway.dev-claim_<claim UID>.json.
const (
	CDIVendor = "slipway.dev"
	CDIClass  = "claim"
	CDIKind   = CDIVendor + "/" + CDIClass
)

// Environment variables a container gets for each request, the same as the
// device plugin's Allocate sets.
const (
	// EnvNVIDIAVisibleDevices lists the request's GPU and MIG UUIDs ("none"
	// when one is unknown) for NVIDIA's container toolkit.
	EnvNVIDIAVisibleDevices = devices.EnvNVIDIAVisibleDevices
	// EnvPrefix starts SLIPWAY_<KIND>_DEVICES (device IDs: GPU UUIDs,
	// mlx5_N, FPGA addresses) and SLIPWAY_<KIND>_PCI_ADDRESSES.
	EnvPrefix = "SLIPWAY_"
)

// allocated is one device of a claim being prepared.
type allocated struct {
	requests []string
	e        entry
}

// claimSpec returns the CDI spec of a claim and, per allocated device (in
// order), the CDI device IDs the kubelet hands the runtime for it: a CDI
// device per device with its device nodes, and per request one more with
// the request's environment, named by the request's first device.
func claimSpec(uid string, devs []allocated) (*cdispec.Spec, [][]string, error) {
	spec := &cdispec.Spec{Kind: CDIKind}
	ids := make([][]string, len(devs))
	seenReq := map[string]bool{}
	for i, a := range devs {
		if len(a.e.dev.DeviceNodes) > 0 {
			cd := cdispec.Device{Name: uid + "-" + a.e.name}
			for _, n := range a.e.dev.DeviceNodes {
				perm := n.Permissions
				if perm == "" {
					perm = "rw"
				}
				cd.ContainerEdits.DeviceNodes = append(cd.ContainerEdits.DeviceNodes,
					&cdispec.DeviceNode{Path: n.Path, HostPath: n.HostPath, Permissions: perm})
			}
			spec.Devices = append(spec.Devices, cd)
			ids[i] = append(ids[i], CDIKind+"="+cd.Name)
		}
		for _, r := range a.requests {
			if seenReq[r] {
				continue
			}
			seenReq[r] = true
			var reqDevs []devices.Device
			for _, b := range devs {
				if slices.Contains(b.requests, r) {
					reqDevs = append(reqDevs, b.e.dev)
				}
			}
			cd := cdispec.Device{Name: uid + "-req-" + r, ContainerEdits: cdispec.ContainerEdits{Env: requestEnv(reqDevs)}}
			spec.Devices = append(spec.Devices, cd)
			ids[i] = append(ids[i], CDIKind+"="+cd.Name)
		}
	}
	v, err := cdispec.MinimumRequiredVersion(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("cdi spec of claim %s: %w", uid, err)
	}
	spec.Version = v
	return spec, ids, nil
}

// requestEnv is the environment of one request's devices, KEY=VALUE sorted.
func requestEnv(devs []devices.Device) []string {
	type lists struct{ ids, pci []string }
	byKind := map[devices.Kind]*lists{}
	for _, d := range devs {
		l := byKind[d.Kind]
		if l == nil {
			l = &lists{}
			byKind[d.Kind] = l
		}
		l.ids = append(l.ids, d.ID)
		l.pci = append(l.pci, d.PCIAddress)
	}
	var env []string
	for k, l := range byKind {
		up := strings.ToUpper(string(k))
		env = append(env, EnvPrefix+up+"_DEVICES="+strings.Join(l.ids, ","), EnvPrefix+up+"_PCI_ADDRESSES="+strings.Join(l.pci, ","))
	}
	if v, ok := devices.NVIDIAVisibleDevices(devs); ok {
		env = append(env, EnvNVIDIAVisibleDevices+"="+v)
	}
	slices.Sort(env)
	return env
}

// cdiStore writes and removes claim specs in one CDI directory.
type cdiStore struct {
	dir   string
	cache *cdi.Cache
}

func newCDIStore(dir string) (*cdiStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cdi directory %s: %w", dir, err)
	}
	c, err := cdi.NewCache(cdi.WithSpecDirs(dir), cdi.WithAutoRefresh(false))
	if err != nil {
		return nil, fmt.Errorf("cdi directory %s: %w", dir, err)
	}
	return &cdiStore{dir: dir, cache: c}, nil
}

// specFile is the file name of a claim's spec.
func specFile(uid string) string {
	return cdi.GenerateTransientSpecName(CDIVendor, CDIClass, uid) + ".json"
}

// write validates and writes a claim's spec atomically (the CDI library's
// temporary file and rename). It is not synced: the checkpoint, which is,
// holds the spec too, and a start (or the kubelet's repeated prepare)
// writes a spec again from it when the file is not current.
// Mode 0644: runtimes and tools read it; it holds no secrets.
func (s *cdiStore) write(uid string, spec *cdispec.Spec) error {
	name := specFile(uid)
	if err := s.cache.WriteSpec(spec, name); err != nil {
		return fmt.Errorf("write cdi spec %s: %w", filepath.Join(s.dir, name), err)
	}
	if err := os.Chmod(filepath.Join(s.dir, name), 0o644); err != nil {
		return fmt.Errorf("chmod cdi spec: %w", err)
	}
	return nil
}

// current reports whether a claim's spec file holds spec. A file that is
// missing (a tmpfs CDI directory after a reboot), cannot be read or parsed,
// or holds something else is not current: specs are not synced, so after
// a power loss the file can be there but empty or cut short.
func (s *cdiStore) current(uid string, spec *cdispec.Spec) bool {
	data, err := os.ReadFile(filepath.Join(s.dir, specFile(uid)))
	if err != nil {
		return false
	}
	var onDisk cdispec.Spec
	if err := json.Unmarshal(data, &onDisk); err != nil {
		return false
	}
	a, errA := json.Marshal(&onDisk)
	b, errB := json.Marshal(spec)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// remove deletes a claim's spec; a missing one is fine. Not synced either:
// a spec that comes back after a power loss belongs to no claim in the
// checkpoint, and a start removes it.
func (s *cdiStore) remove(uid string) error {
	err := os.Remove(filepath.Join(s.dir, specFile(uid)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cdi spec of claim %s: %w", uid, err)
	}
	return nil
}

// claimUIDs lists the claims whose spec files are in the directory.
func (s *cdiStore) claimUIDs() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list cdi specs in %s: %w", s.dir, err)
	}
	prefix := cdi.GenerateTransientSpecName(CDIVendor, CDIClass, "")
	var out []string
	for _, e := range ents {
		uid, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		if uid, ok = strings.CutSuffix(uid, ".json"); ok && uid != "" {
			out = append(out, uid)
		}
	}
	return out, nil
}
