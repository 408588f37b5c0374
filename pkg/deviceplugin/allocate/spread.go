package allocate

import (
	"fmt"
	"slices"
)

// Spread answers a request for time-slicing replicas: it prefers replicas
// of distinct devices, taking first the device with the most replicas
// still available (the least used), so that a container asking for N
// replicas gets N devices where it can, and containers share a device only
// when they must. deviceOf maps a replica's ID to its device's. MustInclude
// replicas are chosen first and count as their devices' use. Devices are
// taken in the order of first appearance in Available on ties.
func Spread(req Request, deviceOf func(id string) string) ([]string, error) {
	if req.Size <= 0 {
		return nil, fmt.Errorf("choose preferred replicas: size %d, want at least 1", req.Size)
	}
	avail := slices.Compact(slices.Clone(req.Available))
	if req.Size > len(avail) {
		return nil, fmt.Errorf("choose preferred replicas: size %d exceeds the %d available", req.Size, len(avail))
	}
	if len(req.MustInclude) > req.Size {
		return nil, fmt.Errorf("choose preferred replicas: %d must-include replicas exceed size %d", len(req.MustInclude), req.Size)
	}
	// free lists each device's available replicas, in order.
	var order []string
	free := map[string][]string{}
	for _, id := range avail {
		dev := deviceOf(id)
		if _, ok := free[dev]; !ok {
			order = append(order, dev)
		}
		free[dev] = append(free[dev], id)
	}
	chosen := make([]string, 0, req.Size)
	taken := map[string]int{} // replicas of each device chosen for this request
	for _, id := range req.MustInclude {
		dev := deviceOf(id)
		i := slices.Index(free[dev], id)
		if i < 0 {
			return nil, fmt.Errorf("choose preferred replicas: must-include replica %q is not available", id)
		}
		free[dev] = slices.Delete(free[dev], i, i+1)
		taken[dev]++
		chosen = append(chosen, id)
	}
	for len(chosen) < req.Size {
		best := ""
		for _, dev := range order {
			if len(free[dev]) == 0 {
				continue
			}
			if best == "" || taken[dev] < taken[best] || taken[dev] == taken[best] && len(free[dev]) > len(free[best]) {
				best = dev
			}
		}
		chosen = append(chosen, free[best][0])
		free[best] = free[best][1:]
		taken[best]++
	}
	return chosen, nil
}
