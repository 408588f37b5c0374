package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// E2E reports whether SLIPWAY_E2E=1 is set, under which missing
// dependencies are failures rather than skips.
func E2E() bool { return os.Getenv("SLIPWAY_E2E") == "1" }

// missing skips t, or fails it under SLIPWAY_E2E=1, with reason.
func missing(t testing.TB, reason string) {
	t.Helper()
	missingHint(t, reason, "install it; .ci/run lists the packages")
}

// missingHint is missing with what to do instead of the install hint.
func missingHint(t testing.TB, reason, hint string) {
	t.Helper()
	if E2E() {
		t.Fatalf("SLIPWAY_E2E=1 but %s (%s)", reason, hint)
	}
	t.Skipf("skipping: %s (%s; set SLIPWAY_E2E=1 to make this a failure)", reason, hint)
}

// RequireCommands returns the absolute path of each named program, skipping
// or failing t when one is not on PATH.
func RequireCommands(t testing.TB, names ...string) map[string]string {
	t.Helper()
	paths := make(map[string]string, len(names))
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			missing(t, n+" is not on PATH")
			return nil
		}
		paths[n] = p
	}
	return paths
}

// RequireFiles skips or fails t when one of the files does not exist.
func RequireFiles(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			missing(t, p+" does not exist")
			return
		}
	}
}

// RequireBuilt skips or fails t when one of the files, which the
// repository builds, does not exist; build says how to build them (such as
// "run make node-image image-bundle as root").
func RequireBuilt(t testing.TB, build string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			missingHint(t, p+" does not exist", build)
			return
		}
	}
}

// RequireRoot skips or fails t when the test does not run as root (network
// namespaces, taps and privileged ports need it).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "the test needs root (network namespaces, taps, privileged ports)")
	}
}
