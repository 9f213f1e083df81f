package lua_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stockgate/stockgate/lua"
)

// scripts maps each script file to what the package sends for it.
var scripts = map[string]string{
	"reserve.lua":   lua.Reserve,
	"release.lua":   lua.Release,
	"commit.lua":    lua.Commit,
	"set.lua":       lua.Set,
	"add.lua":       lua.Add,
	"ratelimit.lua": lua.RateLimit,
	"rebuild.lua":   lua.Rebuild,
	"cancel.lua":    lua.Cancel,
	"unindex.lua":   lua.Unindex,
	"lease.lua":     lua.Lease,
	"absorb.lua":    lua.Absorb,
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestScriptsArePreludeAndFile pins what README.md tells an operator: the
// script Redis runs is prelude.lua followed by the script's file, byte for
// byte, so `cat lua/prelude.lua lua/reserve.lua` is what EVALSHA sends. It
// also finds a .lua file that lua.go forgot.
func TestScriptsArePreludeAndFile(t *testing.T) {
	t.Parallel()
	prelude := readFile(t, "prelude.lua")
	if !strings.HasSuffix(prelude, "\n") {
		t.Errorf("prelude.lua does not end in a newline: its last line would run into each script's first")
	}
	files, err := filepath.Glob("*.lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f == "prelude.lua" {
			continue
		}
		got, ok := scripts[f]
		if !ok {
			t.Errorf("%s is not embedded by lua.go", f)
			continue
		}
		if want := prelude + readFile(t, f); got != want {
			t.Errorf("the script sent for %s is not prelude.lua followed by %s", f, f)
		}
	}
}

// TestPreludeHelpersUsed finds a helper in prelude.lua that no script uses:
// luacheck cannot, since it lints each file on its own and lets the prelude's
// names go unused there. Names are found the way .luacheckrc finds them.
func TestPreludeHelpersUsed(t *testing.T) {
	t.Parallel()
	def := regexp.MustCompile(`(?m)^local (?:function )?([A-Za-z_]\w*)`)
	prelude := readFile(t, "prelude.lua")
	names := def.FindAllStringSubmatch(prelude, -1)
	if len(names) == 0 {
		t.Fatalf("no top-level locals found in prelude.lua")
	}
	var bodies []string
	for f := range scripts {
		bodies = append(bodies, readFile(t, f))
	}
	for _, m := range names {
		use := regexp.MustCompile(`\b` + m[1] + `\b`)
		// A helper may serve only another helper.
		inPrelude := len(use.FindAllStringIndex(prelude, -1)) > 1
		if !inPrelude && !slices.ContainsFunc(bodies, use.MatchString) {
			t.Errorf("prelude.lua defines %s, which no script uses", m[1])
		}
	}
}
