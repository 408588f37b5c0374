// Package nodeagent is the node agent behind cmd/device-plugin: it keeps one
// view of the node's devices, their health and the resource config current,
// and hands that view to the front ends that serve it to the kubelet.
//
// An Agent owns, for the life of the process:
//   - discovery (devices.Discover), at start, every RescanInterval, on
//     Reload (SIGHUP) and when the config file changes;
//   - the config file (devices.LoadConfig), reloaded on change and compared
//     as a whole, so that any field, present or future, that changes is
//     applied; a bad file is logged and the running config kept;
//   - the health monitor (devices.Monitor), restarted when the device set
//     or the health settings change;
//   - the health ledger (devices.HealthLedger), which records health by the
//     device's stable ID and so outlives rescans, config reloads and monitor
//     restarts: a device that went unhealthy stays unhealthy until it has
//     been clean for the recovery period;
//   - one metrics registry and one /healthz, ready when every front end is.
//
// # The front-end seam
//
// A front end implements Frontend:
//
//	type Frontend interface {
//		Apply(devices.State) error   // the node's devices and health, on every change
//		Run(ctx context.Context) error
//		Ready() error
//	}
//
// Apply receives a devices.State: every discovered device with Healthy and
// HealthReason taken from the ledger, and the resource config in force. The
// agent calls it after the first discovery succeeds and then after every
// change (a health event, a rescan that found something different, a
// config change), from one goroutine and in order, so a front end needs no
// locking against other Apply calls; it must not block for long (hand slow
// work to Run). Run starts before the first Apply: a front end runs
// without devices until then, for as long as a failing first discovery is
// retried, and must not advertise an empty set as if it were the node's
// (the DRA driver publishes no slice, the device plugin has no resource).
// Apply gets the whole state each time, never a delta: a front end that
// missed nothing needs no memory of earlier calls. Front ends import only
// pkg/devices, never this package, so this package can assemble them.
//
// The device plugin (pkg/deviceplugin.Plugin), the node labeller
// (Labeller) and the DRA kubelet plugin (pkg/dra.Driver, added by
// cmd/device-plugin through Config.Frontends for --api dra|both) are the
// front ends. A wrapper front end may hand another a filtered state (with
// --api both the device plugin gets the devices DRA does not serve).
package nodeagent
