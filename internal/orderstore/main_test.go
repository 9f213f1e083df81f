package orderstore

import (
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestMain stops the package's private redis-server and drops its
// databases, then looks for leaked goroutines: every test closes its pools
// and clients, so anything left running is a leak in the code or a test.
func TestMain(m *testing.M) {
	os.Exit(testsvc.Finish(m.Run()))
}
