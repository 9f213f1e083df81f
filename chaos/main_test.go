package chaos

import (
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// binDir holds the commands, the worker built with failpoints.
var binDir string

func TestMain(m *testing.M) { os.Exit(testsvc.MainWithCommands(m, &binDir, "failpoints")) }
