package kubeletstub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Allocation is what the stub, as the kubelet's device manager, did to
// give one container its devices.
type Allocation struct {
	// Devices are the device IDs chosen and sent to Allocate, in the
	// (random) order the kubelet sends them.
	Devices []string
	// Preferred is the GetPreferredAllocation request the kubelet made, or
	// nil when it made none; PreferredIDs is the plugin's answer.
	Preferred    *pluginapi.ContainerPreferredAllocationRequest
	PreferredIDs []string
	// Response is the plugin's Allocate answer for the container.
	Response *pluginapi.ContainerAllocateResponse
}

// Admit gives a new container n devices of resource as the v1.37 device
// manager does (devicesToAllocate, filterByAffinity,
// callGetPreferredAllocationIfAvailable, then one Allocate call): from the
// devices it holds healthy minus those it allocated before, split by numa
// (the NUMA nodes the Topology Manager admitted the container to; nil when
// its policy is none, or the resource has no topology) into aligned,
// unaligned and without topology. It calls GetPreferredAllocation only if
// the plugin advertised it, and then:
//   - with fewer needed than aligned devices: over the aligned ones;
//   - otherwise, after taking every aligned device (and only if more are
//     needed), over all available devices with the ones taken as
//     must-include. Without numa nothing is aligned, so it asks whenever
//     the plugin advertised it, even with no choice left.
//
// It takes the plugin's preference (where it is available), fills up from
// the sets in that order, and sends the chosen IDs to Allocate. Sets in the
// kubelet are Go maps: the stub takes from them, and sends the IDs, in
// random order, so a test cannot depend on an order the kubelet does not
// give. An error of GetPreferredAllocation or Allocate is returned (in the
// kubelet it fails the pod's admission); the devices then stay free. On
// success they stay allocated until Release.
func (s *Stub) Admit(ctx context.Context, resource string, n int, numa []int64) (Allocation, error) {
	s.mu.Lock()
	p := s.primary[resource]
	var available []string
	for id, h := range s.health[resource] {
		if h == pluginapi.Healthy && !s.allocated[resource][id] {
			available = append(available, id)
		}
	}
	topo := map[string][]int64{}
	hasTopology := false
	for _, d := range s.devices[resource] {
		for _, node := range d.GetTopology().GetNodes() {
			topo[d.GetID()] = append(topo[d.GetID()], node.GetID())
			hasTopology = true
		}
	}
	s.mu.Unlock()
	switch {
	case p == nil:
		return Allocation{}, fmt.Errorf("cannot allocate unregistered device %s", resource)
	case len(available) < n:
		return Allocation{}, fmt.Errorf("requested number of devices unavailable for %s. Requested: %d, Available: %d", resource, n, len(available))
	case n <= 0:
		return Allocation{}, errors.New("admit: want at least one device")
	}
	shuffle(available)
	var aligned, unaligned, noAffinity []string
	for _, id := range available {
		switch {
		case numa == nil || !hasTopology:
			noAffinity = append(noAffinity, id)
		case len(topo[id]) == 0:
			noAffinity = append(noAffinity, id)
		case overlaps(topo[id], numa):
			aligned = append(aligned, id)
		default:
			unaligned = append(unaligned, id)
		}
	}
	var a Allocation
	var chosen []string
	take := func(from []string) bool {
		for _, id := range from {
			if len(chosen) == n {
				break
			}
			if !slices.Contains(chosen, id) {
				chosen = append(chosen, id)
			}
		}
		return len(chosen) == n
	}
	prefer := func(over []string) ([]string, error) {
		if !p.Options.GetGetPreferredAllocationAvailable() {
			return nil, nil
		}
		avail := slices.Clone(over)
		for _, id := range chosen {
			if !slices.Contains(avail, id) {
				avail = append(avail, id)
			}
		}
		req := &pluginapi.ContainerPreferredAllocationRequest{
			AvailableDeviceIDs: shuffled(avail), MustIncludeDeviceIDs: shuffled(slices.Clone(chosen)),
			AllocationSize: int32(n),
		}
		a.Preferred = req
		resp, err := p.Client.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{req}})
		if err != nil {
			return nil, fmt.Errorf("device plugin GetPreferredAllocation rpc failed with err: %w", err)
		}
		if len(resp.GetContainerResponses()) > 0 {
			a.PreferredIDs = resp.GetContainerResponses()[0].GetDeviceIDs()
		}
		return a.PreferredIDs, nil
	}
	done := false
	if n < len(aligned) {
		pref, err := prefer(aligned)
		if err != nil {
			return a, err
		}
		done = take(intersect(pref, aligned)) || take(aligned)
	} else if done = take(aligned); !done {
		pref, err := prefer(available)
		if err != nil {
			return a, err
		}
		done = take(intersect(pref, available)) || take(unaligned) || take(noAffinity)
	}
	if !done {
		return a, fmt.Errorf("unexpectedly allocated less resources than required. Requested: %d, Got: %d", n, len(chosen))
	}
	a.Devices = shuffled(chosen)
	resp, err := p.Client.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: a.Devices}}})
	if err != nil {
		return a, err
	}
	if len(resp.GetContainerResponses()) != 1 {
		return a, fmt.Errorf("allocate %s: %d container responses, want 1", resource, len(resp.GetContainerResponses()))
	}
	a.Response = resp.GetContainerResponses()[0]
	s.mu.Lock()
	if s.allocated[resource] == nil {
		s.allocated[resource] = map[string]bool{}
	}
	for _, id := range chosen {
		s.allocated[resource][id] = true
	}
	s.mu.Unlock()
	return a, nil
}

// Release frees devices that Admit allocated, as when their pod ends.
func (s *Stub) Release(resource string, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.allocated[resource], id)
	}
}

func overlaps(a, b []int64) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// intersect is the IDs of pref that are in set, in pref's order.
func intersect(pref, set []string) []string {
	var out []string
	for _, id := range pref {
		if slices.Contains(set, id) {
			out = append(out, id)
		}
	}
	return out
}

func shuffle(ids []string) {
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
}

func shuffled(ids []string) []string {
	shuffle(ids)
	return ids
}
