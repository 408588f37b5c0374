package bmc_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-dev/slipway/pkg/bmc"
	"github.com/slipway-dev/slipway/pkg/bmc/redfishsim"
	"github.com/slipway-dev/slipway/pkg/inventory"
)

const testPassword = "s3cret-Pa55word"

// newSim returns a Sim closed when the test ends.
func newSim(t testing.TB) *redfishsim.Sim {
	t.Helper()
	sim, err := redfishsim.New(redfishsim.Config{})
	if err != nil {
		t.Fatalf("redfishsim.New: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// passwordFile writes pw to a 0600 file and returns its file: reference.
func passwordFile(t testing.TB, pw string) inventory.SecretRef {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bmc-password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return inventory.SecretRef{Source: "file", Name: p}
}

// startBMC starts a simulated BMC with the test password and returns it and
// an inventory node pointing at it (HTTPS verified with the Sim's CA when
// cfg.TLS is set).
func startBMC(t testing.TB, sim *redfishsim.Sim, name string, cfg redfishsim.BMCConfig) (*redfishsim.BMC, inventory.Node) {
	t.Helper()
	cfg.Name = name
	cfg.Password = testPassword
	b, err := sim.Start(cfg)
	if err != nil {
		t.Fatalf("start simulated bmc: %v", err)
	}
	n := inventory.Node{Name: name, BMC: redfishNodeBMC(t, b.URL(), b.Addr(), cfg.TLS, sim)}
	n.BMC.Password = passwordFile(t, testPassword)
	return b, n
}

func redfishNodeBMC(t testing.TB, url string, ap netip.AddrPort, tls bool, sim *redfishsim.Sim) inventory.BMC {
	t.Helper()
	b := inventory.BMC{
		URL: url, Protocol: inventory.ProtocolRedfish, Scheme: "http",
		Host: ap.Addr().String(), Port: ap.Port(), Username: "admin",
	}
	if tls {
		b.Scheme = "https"
		ca := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(ca, sim.CertPEM(), 0o644); err != nil {
			t.Fatal(err)
		}
		b.CAFile = ca
	}
	if !strings.HasPrefix(url, "redfish") {
		t.Fatalf("unexpected url %q", url)
	}
	return b
}

// fastConfig keeps fault tests short: quick polls, and timeouts that a
// healthy simulated BMC meets even on a loaded machine.
func fastConfig() bmc.Config {
	return bmc.Config{
		ConnectTimeout: 5 * time.Second,
		OpTimeout:      5 * time.Second,
		VerifyTimeout:  2 * time.Second,
		Backoff:        []time.Duration{20 * time.Millisecond, 50 * time.Millisecond},
	}
}
