package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/slipway-dev/slipway/pkg/deviceplugin"
	"github.com/slipway-dev/slipway/pkg/devices"
	"github.com/slipway-dev/slipway/pkg/dra"
	"github.com/slipway-dev/slipway/pkg/nodeagent"
)

// The kubelet APIs the agent can serve (--api).
const (
	apiDevicePlugin = "deviceplugin"
	apiDRA          = "dra"
	apiBoth         = "both"
)

// draFlags are the flags of the DRA front end.
type draFlags struct {
	api         string
	nodeName    string
	kubeconfig  string
	resources   []string
	pluginsDir  string
	registryDir string
	cdiDir      string
	noExecute   bool
}

func registerDRAFlags(fl *pflag.FlagSet) *draFlags {
	f := &draFlags{}
	fl.StringVar(&f.api, "api", apiDevicePlugin, "kubelet API to serve the devices through: deviceplugin, dra (ResourceSlices and claims), or both (split by --dra-resources)")
	fl.StringVar(&f.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name, the DRA pool and slice owner (default $NODE_NAME)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for the API access of the DRA driver and --node-labels (default: the pod's service account)")
	fl.StringSliceVar(&f.resources, "dra-resources", nil, "resources (of the config) served through DRA, an FPGA resource with its per-identity resources (<name>-<interface id>); with --api both the device plugin serves the others (required there); default with --api dra: all")
	fl.StringVar(&f.pluginsDir, "dra-plugins-dir", dra.DefaultPluginsDir, "the kubelet's plugins directory: dra.sock and the checkpoint of prepared claims go in DIR/"+dra.DefaultDriverName)
	fl.StringVar(&f.registryDir, "dra-registry-dir", dra.DefaultRegistryDir, "the kubelet's plugin registration directory")
	fl.StringVar(&f.cdiDir, "dra-cdi-dir", dra.DefaultCDIDir, "where claim CDI specs are written (keep it off tmpfs so they survive a reboot)")
	fl.BoolVar(&f.noExecute, "dra-taint-no-execute", false, "taint unhealthy devices NoExecute (evict their pods) instead of NoSchedule")
	return f
}

func (f *draFlags) validate() error {
	var errs []error
	switch f.api {
	case apiDevicePlugin:
		return nil
	case apiDRA:
	case apiBoth:
		if len(f.resources) == 0 {
			errs = append(errs, errors.New("--api both needs --dra-resources: the resources served through DRA (the device plugin serves the others; a device is never served twice)"))
		}
	default:
		return fmt.Errorf("--api %q: want deviceplugin, dra or both", f.api)
	}
	if f.nodeName == "" {
		errs = append(errs, errors.New("--api "+f.api+" needs --node-name (or $NODE_NAME from the pod's spec.nodeName)"))
	}
	return errors.Join(errs...)
}

// frontends sets the agent's front ends for --api: the device plugin from
// dp, the DRA driver, or both with the devices split by resource.
func (f *draFlags) frontends(cfg *nodeagent.Config, dp *deviceplugin.Config, g *globals) error {
	if f.api == apiDevicePlugin {
		cfg.DevicePlugin = dp
		return nil
	}
	client, err := f.client()
	if err != nil {
		return err
	}
	d, err := dra.New(dra.Config{
		NodeName: f.nodeName, KubeClient: client, Root: g.root, Resources: f.resources,
		RegistryDir: f.registryDir, PluginDir: filepath.Join(f.pluginsDir, dra.DefaultDriverName), CDIDir: f.cdiDir,
		NoExecute: f.noExecute, Log: g.log,
	})
	if err != nil {
		return err
	}
	cfg.Frontends = append(cfg.Frontends, d)
	if f.api == apiDRA {
		return nil
	}
	// Both: one registry for the agent and the device plugin, built here
	// because the plugin is wrapped.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg
	pc := *dp
	pc.Registry, pc.Log = reg, g.log
	p, err := deviceplugin.New(pc)
	if err != nil {
		return err
	}
	cfg.Frontends = append(cfg.Frontends, withoutResources{Frontend: p, names: f.resources})
	return nil
}

func (f *draFlags) client() (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if f.kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for the dra driver (--kubeconfig %q): %w", f.kubeconfig, err)
	}
	return kubernetes.NewForConfig(rc)
}

// withoutResources hands a front end the state without the devices that
// the config plans under the named resources (those DRA serves), so that
// no device is served through both APIs. The devices are removed, not the
// resources: a device DRA serves must not fall through to another
// resource's selector.
type withoutResources struct {
	nodeagent.Frontend
	names []string
}

func (w withoutResources) Apply(st devices.State) error {
	taken := map[string]bool{}
	for _, a := range st.Config.Plan(st.Devices) {
		if dra.Serves(w.names, a) {
			for _, d := range a.Devices {
				taken[string(d.Kind)+"\x00"+d.ID] = true
			}
		}
	}
	rest := make([]devices.Device, 0, len(st.Devices))
	for _, d := range st.Devices {
		if !taken[string(d.Kind)+"\x00"+d.ID] {
			rest = append(rest, d)
		}
	}
	st.Devices = rest
	return w.Frontend.Apply(st)
}
