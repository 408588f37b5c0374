package dra

import (
	"context"
	"fmt"
	"maps"
	"slices"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/dynamic-resource-allocation/resourceclaim"
)

var _ kubeletplugin.DRAPlugin = (*Driver)(nil)

// PrepareResourceClaims prepares the devices the scheduler allocated to
// each claim on this node: it writes the claim's CDI spec and records the
// claim in the checkpoint, then returns the CDI device IDs per device. A
// claim already prepared gets the same answer again (the kubelet retries
// after restarts). A claim fails alone, with a reason the kubelet shows on
// the pod: devices not discovered yet, a device not on this node, a device
// prepared for another claim, an unhealthy device.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	added := map[string]preparedClaim{}
	for _, c := range claims {
		uid := string(c.UID)
		if pc, ok := d.claims[uid]; ok {
			if pc.Spec != nil && !d.cdi.current(uid, pc.Spec) {
				if err := d.cdi.write(uid, pc.Spec); err != nil {
					out[c.UID] = kubeletplugin.PrepareResult{Err: err}
					continue
				}
			}
			out[c.UID] = kubeletplugin.PrepareResult{Devices: resultDevices(pc)}
			continue
		}
		pc, err := d.prepareLocked(c, added)
		if err != nil {
			d.log.Warn("claim not prepared", "claim", c.Namespace+"/"+c.Name, "claim_uid", uid, "err", err)
			out[c.UID] = kubeletplugin.PrepareResult{Err: err}
			continue
		}
		added[uid] = pc
	}
	if len(added) > 0 {
		next := maps.Clone(d.claims)
		maps.Copy(next, added)
		if err := saveCheckpoint(d.cpPath, next); err != nil {
			// Undo: a claim the checkpoint does not hold must not look
			// prepared, or a restart would forget its devices.
			for uid := range added {
				if rerr := d.cdi.remove(uid); rerr != nil {
					d.log.Error("remove cdi spec of unrecorded claim", "claim_uid", uid, "err", rerr)
				}
				out[types.UID(uid)] = kubeletplugin.PrepareResult{Err: fmt.Errorf("prepare claim %s: %w", uid, err)}
			}
			return out, nil
		}
		d.claims = next
		for uid, pc := range added {
			d.log.Info("claim prepared", "claim", pc.Namespace+"/"+pc.Name, "claim_uid", uid, "devices", deviceList(pc))
			out[types.UID(uid)] = kubeletplugin.PrepareResult{Devices: resultDevices(pc)}
		}
		d.notifyLocked()
	}
	return out, nil
}

// prepareLocked checks a new claim's allocation against the inventory and
// writes its CDI spec. added holds the claims prepared earlier in the same
// call.
func (d *Driver) prepareLocked(c *resourceapi.ResourceClaim, added map[string]preparedClaim) (preparedClaim, error) {
	uid := string(c.UID)
	where := fmt.Sprintf("claim %s/%s", c.Namespace, c.Name)
	if d.inv == nil {
		return preparedClaim{}, fmt.Errorf("%s: devices not discovered yet on node %s; the kubelet will retry", where, d.cfg.NodeName)
	}
	if c.Status.Allocation == nil {
		return preparedClaim{}, fmt.Errorf("%s is not allocated", where)
	}
	inUse := map[string]string{}
	for u, pc := range d.claims {
		for _, pd := range pc.Devices {
			inUse[pd.Device] = pc.Namespace + "/" + pc.Name + " (" + u + ")"
		}
	}
	for u, pc := range added {
		for _, pd := range pc.Devices {
			inUse[pd.Device] = pc.Namespace + "/" + pc.Name + " (" + u + ")"
		}
	}
	var devs []allocated
	index := map[string]int{}
	for _, r := range c.Status.Allocation.Devices.Results {
		if r.Driver != d.cfg.DriverName {
			continue
		}
		if r.Pool != d.cfg.NodeName {
			return preparedClaim{}, fmt.Errorf("%s: device %s is in pool %s, not this node's pool %s", where, r.Device, r.Pool, d.cfg.NodeName)
		}
		e, ok := d.inv.lookup(r.Device)
		if !ok {
			return preparedClaim{}, fmt.Errorf("%s: device %s is not on node %s (removed since it was allocated?)", where, r.Device, d.cfg.NodeName)
		}
		admin := r.AdminAccess != nil && *r.AdminAccess
		if other, ok := inUse[r.Device]; ok && !admin {
			return preparedClaim{}, fmt.Errorf("%s: device %s is already prepared for claim %s", where, r.Device, other)
		}
		if h := d.health[e.dev.ID]; !h.healthy && !admin {
			return preparedClaim{}, fmt.Errorf("%s: device %s (%s) is unhealthy: %s", where, r.Device, e.dev.ID, h.reason)
		}
		req := resourceclaim.BaseRequestRef(r.Request)
		if i, ok := index[r.Device]; ok {
			if !slices.Contains(devs[i].requests, req) {
				devs[i].requests = append(devs[i].requests, req)
			}
			continue
		}
		index[r.Device] = len(devs)
		devs = append(devs, allocated{requests: []string{req}, e: e})
	}
	spec, ids, err := claimSpec(uid, devs)
	if err != nil {
		return preparedClaim{}, fmt.Errorf("%s: %w", where, err)
	}
	pc := preparedClaim{Namespace: c.Namespace, Name: c.Name, Spec: spec}
	for i, a := range devs {
		pc.Devices = append(pc.Devices, preparedDevice{
			Requests: a.requests, Pool: d.cfg.NodeName, Device: a.e.name, DeviceID: a.e.dev.ID, CDIDeviceIDs: ids[i],
		})
	}
	if len(spec.Devices) == 0 {
		pc.Spec = nil // nothing to inject; CDI refuses a spec without devices
		return pc, nil
	}
	if err := d.cdi.write(uid, spec); err != nil {
		return preparedClaim{}, fmt.Errorf("%s: %w", where, err)
	}
	return pc, nil
}

// resultDevices is what the kubelet gets for a prepared claim.
func resultDevices(pc preparedClaim) []kubeletplugin.Device {
	out := make([]kubeletplugin.Device, 0, len(pc.Devices))
	for _, pd := range pc.Devices {
		out = append(out, kubeletplugin.Device{
			Requests: slices.Clone(pd.Requests), PoolName: pd.Pool, DeviceName: pd.Device, CDIDeviceIDs: slices.Clone(pd.CDIDeviceIDs),
		})
	}
	return out
}

func deviceList(pc preparedClaim) []string {
	var out []string
	for _, pd := range pc.Devices {
		out = append(out, pd.Device)
	}
	return out
}

// UnprepareResourceClaims removes each claim's CDI spec and checkpoint
// entry. A claim the driver does not know (never prepared here, or already
// unprepared) succeeds: the kubelet keeps a pod Terminating until it does.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[types.UID]error, len(claims))
	next := maps.Clone(d.claims)
	var removed []string
	for _, c := range claims {
		uid := string(c.UID)
		out[c.UID] = nil
		if _, ok := next[uid]; !ok {
			// Unknown: still remove a spec a crash may have left.
			if err := d.cdi.remove(uid); err != nil {
				out[c.UID] = err
			}
			continue
		}
		if err := d.cdi.remove(uid); err != nil {
			out[c.UID] = err
			continue
		}
		delete(next, uid)
		removed = append(removed, uid)
	}
	if len(removed) == 0 {
		return out, nil
	}
	if err := saveCheckpoint(d.cpPath, next); err != nil {
		// The specs are gone but the checkpoint still holds the claims:
		// report failure so the kubelet retries; a retry removes them.
		for _, uid := range removed {
			out[types.UID(uid)] = fmt.Errorf("unprepare claim %s: %w", uid, err)
		}
		for _, uid := range removed {
			pc := d.claims[uid]
			if pc.Spec != nil {
				if err := d.cdi.write(uid, pc.Spec); err != nil {
					d.log.Error("restore cdi spec", "claim_uid", uid, "err", err)
				}
			}
		}
		return out, nil
	}
	for _, uid := range removed {
		pc := d.claims[uid]
		d.log.Info("claim unprepared", "claim", pc.Namespace+"/"+pc.Name, "claim_uid", uid, "devices", deviceList(pc))
	}
	d.claims = next
	d.notifyLocked()
	return out, nil
}

// reconcileCDI makes the CDI directory match the checkpoint at start: a
// prepared claim whose spec is missing (a CDI directory on tmpfs after a
// reboot) or damaged (an unsynced write cut short by a power loss) gets it
// written again; a claim spec the checkpoint does not hold
// (a crash between the two writes) is removed.
func (d *Driver) reconcileCDI() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid, pc := range d.claims {
		if pc.Spec == nil || d.cdi.current(uid, pc.Spec) {
			continue
		}
		if err := d.cdi.write(uid, pc.Spec); err != nil {
			return fmt.Errorf("restore cdi spec of prepared claim %s/%s: %w", pc.Namespace, pc.Name, err)
		}
		d.log.Warn("cdi spec of a prepared claim was missing or damaged, written again", "claim", pc.Namespace+"/"+pc.Name, "claim_uid", uid)
	}
	uids, err := d.cdi.claimUIDs()
	if err != nil {
		return err
	}
	for _, uid := range uids {
		if _, ok := d.claims[uid]; ok {
			continue
		}
		if err := d.cdi.remove(uid); err != nil {
			return err
		}
		d.log.Warn("cdi spec of a claim not in the checkpoint removed", "claim_uid", uid)
	}
	return nil
}

// collectClaims unprepares checkpointed claims that are gone from the API:
// deleted, or replaced by a claim of the same name with another UID. The
// kubelet unprepares a claim before its pod goes and a claim is not
// deleted while a pod uses it, so such an entry is a leak (a kubelet that
// lost its own checkpoint, a node reinstalled under the driver). A claim
// must be missing on two checks in a row (suspects holds those of the last
// check) so that one odd read frees nothing. It returns this check's
// suspects; API errors other than NotFound leave a claim alone.
func (d *Driver) collectClaims(ctx context.Context, suspects map[string]bool) map[string]bool {
	d.mu.Lock()
	claims := maps.Clone(d.claims)
	d.mu.Unlock()
	next := map[string]bool{}
	var gone []kubeletplugin.NamespacedObject
	for uid, pc := range claims {
		c, err := d.cfg.KubeClient.ResourceV1().ResourceClaims(pc.Namespace).Get(ctx, pc.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			d.log.Debug("prepared claim not checked", "claim", pc.Namespace+"/"+pc.Name, "err", err)
			continue
		case string(c.UID) == uid:
			continue
		}
		if !suspects[uid] {
			next[uid] = true
			continue
		}
		gone = append(gone, kubeletplugin.NamespacedObject{UID: types.UID(uid), NamespacedName: types.NamespacedName{Namespace: pc.Namespace, Name: pc.Name}})
	}
	if len(gone) == 0 {
		return next
	}
	res, _ := d.UnprepareResourceClaims(ctx, gone)
	for _, c := range gone {
		if err := res[c.UID]; err != nil {
			d.log.Error("unprepare a claim gone from the API", "claim", c.Namespace+"/"+c.Name, "claim_uid", c.UID, "err", err)
			next[string(c.UID)] = true // try again next time
			continue
		}
		d.log.Warn("claim gone from the API without an unprepare, released its devices", "claim", c.Namespace+"/"+c.Name, "claim_uid", c.UID)
	}
	return next
}
