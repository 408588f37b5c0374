//go:build e2e

package e2e

import (
	"os"
	"testing"

	"github.com/slipway-dev/slipway/test/e2e/lab"
)

// TestMain runs the whole test binary inside a network namespace of its own
// (slipway-e2e-<random>), deleted when the tests end.
func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }
