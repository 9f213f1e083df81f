package stockgate

import (
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestMain stops the package's private redis-server, drops its databases
// and looks for leaked goroutines: a Client that leaves its poller running
// after Close is a leak.
func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }
