package chaos

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// binDir holds the commands, the worker built with failpoints.
var binDir string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "stockgate-chaos-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir = dir
		build := exec.Command("go", "build", "-tags", "failpoints", "-o", dir+string(filepath.Separator), "../cmd/...")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build commands with failpoints: %v\n", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(testsvc.Finish(code))
}
