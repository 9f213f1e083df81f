package admin

import (
	"fmt"
	"os"
	"testing"

	"github.com/stockgate/stockgate/internal/testsvc"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsvc.StopShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
