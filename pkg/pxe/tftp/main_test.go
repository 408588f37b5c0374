package tftp

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the benchmark's server instead of the tests when the test
// binary is started again as that server's process (see startBenchServer).
func TestMain(m *testing.M) {
	if spec := os.Getenv(benchServerEnv); spec != "" {
		if err := runBenchServer(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
