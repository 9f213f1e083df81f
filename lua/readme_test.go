package lua_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// fence is one fenced block of README.md.
type fence struct {
	lang  string
	lines []string
}

func fences(md string) []fence {
	var out []fence
	var cur *fence
	for line := range strings.Lines(md) {
		line = strings.TrimRight(line, "\n")
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &fence{lang: strings.TrimPrefix(line, "```")}
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
	}
	return out
}

var (
	// expectRE is a command line with the output it documents in a
	// trailing comment, up to a colon: `redis-cli ... # 1 0 0: reserved`.
	expectRE = regexp.MustCompile(`^(.*\S)\s+# ([^:]*)`)
	ansiRE   = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	// millisRE is a unix time in milliseconds, which differs every run.
	millisRE = regexp.MustCompile(`\b\d{13}\b`)
)

// TestReadme runs lua/README.md's examples in order, as an operator would
// paste them into bash, against a private redis-server and with /tmp/sg in
// a temporary folder. Each line with a trailing comment must print what the
// comment says ("…" stands for any one word), and the --ldb session must
// print the transcript the README shows, given the commands typed there.
// The server's start and shutdown are left out: the test has its own.
func TestReadme(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "redis-cli"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("README.md's examples need %s: %v", tool, err)
		}
	}
	r := testsvc.NewRedis(t)
	_, port, err := net.SplitHostPort(r.Addr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sg := filepath.Join(dir, "sg")

	var script strings.Builder
	var expects [][]string
	var transcript []string
	var ldbSeen bool
	var grepWant []string
	for _, f := range fences(readFile(t, "README.md")) {
		if f.lang == "" && slices.ContainsFunc(f.lines, func(l string) bool { return strings.HasPrefix(l, "lua debugger> ") }) {
			transcript = f.lines
			continue
		}
		body := strings.Join(f.lines, "\n")
		if f.lang != "sh" || strings.Contains(body, "redis-server ") || strings.Contains(body, "SHUTDOWN") ||
			strings.Contains(body, "luacheck") {
			continue
		}
		for _, line := range f.lines {
			line = strings.ReplaceAll(line, "-p 6399", "-p "+port)
			line = strings.ReplaceAll(line, "/tmp/sg", sg)
			switch m := expectRE.FindStringSubmatch(line); {
			case strings.Contains(line, "--ldb"):
				ldbSeen = true
				fmt.Fprintf(&script, "printf '\\n@@begin ldb\\n'\n%s < %s/ldb.in\nprintf '\\n@@end ldb\\n'\n", line, dir)
			case m != nil:
				if strings.HasPrefix(m[1], "grep ") {
					grepWant = strings.Fields(m[2])
				}
				fmt.Fprintf(&script, "printf '\\n@@begin %d\\n'\n%s\nprintf '\\n@@end %d\\n'\n", len(expects), m[1], len(expects))
				expects = append(expects, []string{m[1], m[2]})
			default:
				script.WriteString(line + "\n")
			}
		}
	}
	if len(expects) < 10 || !ldbSeen || transcript == nil || grepWant == nil {
		t.Fatalf("README.md has %d checked lines, --ldb line %v, transcript %v, grep line %v: the page no longer has the shape this test reads",
			len(expects), ldbSeen, transcript != nil, grepWant != nil)
	}

	// The transcript is what was typed after "lua debugger> " and what
	// redis-cli answered; piped in, redis-cli prints no prompt.
	var typed, wantLDB []string
	for _, l := range transcript {
		if cmd, ok := strings.CutPrefix(l, "lua debugger> "); ok {
			typed = append(typed, cmd)
			if args, ok := strings.CutPrefix(cmd, "b "); ok && !slices.Equal(strings.Fields(args), grepWant) {
				t.Errorf("the transcript breaks at %s, the grep above it finds %v", args, grepWant)
			}
			continue
		}
		wantLDB = append(wantLDB, l)
	}
	if err := os.WriteFile(filepath.Join(dir, "ldb.in"), []byte(strings.Join(typed, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-u")
	cmd.Dir = ".." // the examples name lua/prelude.lua from the repository root
	cmd.Stdin = strings.NewReader(script.String())
	b, err := cmd.CombinedOutput()
	out := ansiRE.ReplaceAllString(string(b), "")
	if err != nil {
		t.Fatalf("bash running README.md's examples: %v\n%s", err, out)
	}

	for i, e := range expects {
		got := strings.Fields(section(t, out, fmt.Sprint(i)))
		want := strings.Fields(e[1])
		match := len(got) == len(want)
		for j := 0; match && j < len(want); j++ {
			match = want[j] == "…" || want[j] == got[j]
		}
		if !match {
			t.Errorf("README.md: %s\nprints %q, the comment says %q", e[0], strings.Join(got, " "), e[1])
		}
	}

	gotLDB := strings.Split(section(t, out, "ldb"), "\n")
	// Skip the banner redis-cli prints before the first stop.
	if i := slices.IndexFunc(gotLDB, func(l string) bool { return strings.HasPrefix(l, "* Stopped") }); i > 0 {
		gotLDB = gotLDB[i:]
	}
	if got, want := normalize(gotLDB), normalize(wantLDB); got != want {
		t.Errorf("README.md's --ldb transcript is not what redis-cli prints now.\nREADME:\n%s\nredis-cli, given %q:\n%s", want, typed, got)
	}
}

// section is what the script printed between the markers of name.
func section(t *testing.T, out, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "\n@@begin "+name+"\n")
	body, _, ok2 := strings.Cut(rest, "\n@@end "+name+"\n")
	if !ok || !ok2 {
		t.Fatalf("no output section %s in:\n%s", name, out)
	}
	return body
}

// normalize drops trailing blanks and lines, and the unix milliseconds of
// the hold deadline, which differ every run.
func normalize(lines []string) string {
	var out []string
	for _, l := range lines {
		out = append(out, millisRE.ReplaceAllString(strings.TrimRight(l, " "), "<ms>"))
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
