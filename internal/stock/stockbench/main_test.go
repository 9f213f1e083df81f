package stockbench_test

import (
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestMain closes the benchmarks' shared clients, stops the private
// redis-server, drops the Postgres database, and then looks for leaked
// goroutines.
func TestMain(m *testing.M) {
	code := m.Run()
	closeShared()
	os.Exit(testsvc.Finish(code))
}
