package e2e

import (
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// binDir holds the three commands, built once for the package.
var binDir string

func TestMain(m *testing.M) { os.Exit(testsvc.MainWithCommands(m, &binDir)) }
