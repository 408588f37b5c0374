package flatnet

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// ConflistName is the file the flat network writes in the CNI directory.
const ConflistName = "10-slipway-flat.conflist"

// Bridge is the Linux bridge the pods of a node attach to.
const Bridge = "cni0"

// Conflist returns the CNI configuration list for a node whose pods take
// addresses from podCIDRs (one per IP family): the bridge plugin with the
// node as the pods' gateway, host-local IPAM, and portmap for hostPorts.
// Masquerading is not the bridge plugin's (it would also NAT pod-to-pod
// traffic between nodes); Run installs its own rule.
func Conflist(podCIDRs []netip.Prefix) ([]byte, error) {
	if len(podCIDRs) == 0 {
		return nil, fmt.Errorf("flat network configuration: no pod CIDR")
	}
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, p := range podCIDRs {
		ranges = append(ranges, []map[string]string{{"subnet": p.Masked().String()}})
		if p.Addr().Is4() {
			routes = append(routes, map[string]string{"dst": "0.0.0.0/0"})
		} else {
			routes = append(routes, map[string]string{"dst": "::/0"})
		}
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "slipway-flat",
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      Bridge,
				"isGateway":   true,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":   "host-local",
					"ranges": ranges,
					"routes": routes,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
