package main

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/slipway-dev/slipway/pkg/inventory"
	"github.com/slipway-dev/slipway/pkg/provision"
)

// TestStatusJSONListsInventoryNodes: with -f, the inventory's enabled
// nodes without a journal record are listed as pending in -o json as in
// the table (the help's example `status -f ... -o json` printed none).
func TestStatusJSONListsInventoryNodes(t *testing.T) {
	t.Parallel()
	const invPath = "../../inventory/rack-gpu.yaml"
	inv, err := inventory.Load(invPath)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "status", "--state-dir", t.TempDir(), "-f", invPath, "-o", "json")
	if code != exitOK {
		t.Fatalf("status exit %d: %s", code, stderr)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, stdout)
	}
	want := map[string]provision.Phase{}
	for _, n := range inv.Enabled() {
		want[n.Name] = provision.PhasePending
	}
	got := map[string]provision.Phase{}
	for n, r := range st.Nodes {
		got[n] = r.Phase
	}
	if len(want) == 0 {
		t.Fatalf("%s has no enabled nodes", invPath)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status -o json nodes (-want +got):\n%s", diff)
	}
}
