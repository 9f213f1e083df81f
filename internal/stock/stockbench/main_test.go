package stockbench_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestMain closes the benchmarks' shared clients, stops the private
// redis-server, drops the Postgres database, and then looks for leaked
// goroutines.
func TestMain(m *testing.M) {
	code := m.Run()
	closeShared()
	testsvc.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
