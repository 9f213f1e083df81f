package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/config/configtest"
	"github.com/stockgate/stockgate/internal/stock"
)

var envKeys = []string{"REDIS_URL", "DATABASE_URL"}

// parsed is a stockctl command line read as run reads it, up to the point
// where run would connect.
type parsed struct {
	Conn config.Conn
	Cmd  string
	configtest.Outcome
	SKU    string
	Qty    int64
	SKUs   []string
	AsJSON bool
	Import importArgs
}

var word = regexp.MustCompile(`^[a-z][a-z-]*$`)

// parseLine mirrors run's dispatch over the parse functions it calls.
func parseLine(args []string) parsed {
	var stderr bytes.Buffer
	var p parsed
	fs := globalFlags(&stderr, &p.Conn)
	pos, err := config.ParseLeading(fs, args)
	switch {
	case err != nil:
	case len(pos) == 0:
		fs.Usage()
		p.NoCmd = true
		err = fmt.Errorf("%w: no command", config.ErrUsage)
	case pos[0] != "help" && pos[0] != "-h" && pos[0] != "--help" && p.Conn.Validate() != nil:
		err = fmt.Errorf("%w: %v", config.ErrUsage, p.Conn.Validate())
	default:
		p.Cmd = pos[0]
		rest := pos[1:]
		switch p.Cmd {
		case "migrate":
			err = parseMigrate(rest, &stderr)
		case "set", "add":
			p.SKU, p.Qty, err = parseAdjust(p.Cmd, rest, &stderr)
		case "import":
			p.Import, err = parseImport(rest, &stderr)
		case "show":
			p.SKUs, p.AsJSON, err = parseShow(rest, &stderr)
		case "reconcile":
			p.AsJSON, err = parseReconcile(rest, &stderr)
		case "help", "-h", "--help":
			fs.Usage()
			p.Help = true
		default:
			p.Other = word.MatchString(p.Cmd) && strings.Contains(usage, "stockctl [flags] "+p.Cmd+" ")
			if !p.Other {
				err = fmt.Errorf("%w: unknown command %q", config.ErrUsage, p.Cmd)
			}
		}
	}
	p.Help = p.Help || errors.Is(err, flag.ErrHelp)
	if err != nil && !p.Help {
		p.Err, p.Usage = err.Error(), errors.Is(err, config.ErrUsage)
	}
	p.Stderr = stderr.String()
	return p
}

// runRejected runs stockctl on a line parseLine refuses (or answers with
// help), which run must then refuse before it connects to anything; the
// context is cancelled all the same.
func runRejected(args []string) (code int, stdout, stderr string) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// FuzzStockctlArgs checks stockctl's argument parsing on any argument
// vector and any REDIS_URL and DATABASE_URL: a refusal is a usage error,
// exit status 2 and one line on stderr, help exits 0, nothing reaches
// stdout, no password of a URL from the environment or the flags is ever
// printed (-h shows the defaults), set and add accept only a valid SKU and
// a quantity from the arguments within bounds (set >= 0, add >= 1), show
// only valid SKUs, and the same input always gives the same result.
//
// Lines that parse are not run: run would connect. The first argument is
// the environment (REDIS_URL=… DATABASE_URL=…), the second the argument
// vector, both split with configtest.Args.
//
//	go test -run '^$' -fuzz '^FuzzStockctlArgs$' -fuzztime 1m ./cmd/stockctl/
func FuzzStockctlArgs(f *testing.F) {
	env := configtest.Line("REDIS_URL=redis://app:envs3cret@h:6379/1", "DATABASE_URL=postgres://app:dbs3cret@db/sg")
	for _, a := range configtest.Hostile {
		f.Add(env, configtest.Line("set", "SKU-1", a))
		f.Add(env, configtest.Line("add", a, "5"))
		f.Add(env, configtest.Line("show", "--json", a))
		f.Add(env, configtest.Line(a, "migrate"))
		f.Add(env, configtest.Line("--redis-url", a, "reconcile", "--json"))
		f.Add(configtest.Line("REDIS_URL="+a, "DATABASE_URL="+a), configtest.Line("-h"))
	}
	for _, args := range [][]string{
		{}, {"help"}, {"--", "-h"}, {"set"}, {"set", "SKU-1"}, {"set", "SKU-1", "5", "6"}, {"set", "SKU-1", "-5"},
		{"add", "SKU-1", "0"}, {"add", "--", "SKU-1", "1"}, {"set", "SKU-1", "5", "-h"}, {"set", "SKU-1", "--json", "5"},
		{"show"}, {"show", "A", "B", "--json"}, {"show", "-json=false", "--", "-x"}, {"reconcile", "extra"},
		{"migrate", "-h"}, {"rebuild", "--fence", "1s"}, {"set", "-redis-url=redis://u:s3cretpw@h/0", "SKU-1", "1"},
		{"--database-url", "postgres://u:s3cretpw@h/db", "nope"}, {"-database-url"}, {"SET", "SKU-1", "1"},
		{"import", "-"}, {"import", "--format", "tsv", "f.csv"}, {"import", "a", "b"}, {"import", "--add", "--format=ndjson", "-"},
	} {
		f.Add(env, configtest.Line(args...))
	}
	f.Fuzz(func(t *testing.T, envIn, argv string) {
		vals := configtest.EnvValues(envIn, envKeys...)
		args := configtest.Args(argv)
		configtest.SetEnv(t, envKeys, vals)
		p := parseLine(args)
		if again := parseLine(args); !cmp.Equal(p, again) {
			t.Fatalf("parseLine(%q) differs the second time (-first +second):\n%s", args, cmp.Diff(p, again))
		}
		configtest.CheckCommandLine(t, configtest.Command{
			Name: "stockctl", EnvKeys: envKeys,
			Parse:    func(args []string) configtest.Outcome { return parseLine(args).Outcome },
			Run:      runRejected,
			Accepted: func() { checkAccepted(t, args, p) },
		}, vals, args, p.Outcome, p.Conn.RedisURL, p.Conn.DatabaseURL)
	})
}

func checkAccepted(t *testing.T, args []string, p parsed) {
	t.Helper()
	switch p.Cmd {
	case "set", "add":
		min := map[string]int64{"set": 0, "add": 1}[p.Cmd]
		fromArgs := slices.ContainsFunc(args, func(a string) bool {
			n, err := strconv.ParseInt(a, 10, 64)
			return err == nil && n == p.Qty
		})
		if stock.CheckSKU(p.SKU) != nil || !slices.Contains(args, p.SKU) || p.Qty < min || !fromArgs {
			t.Fatalf("stockctl %q accepted SKU %q, quantity %d; want a valid SKU and a quantity >= %d, both from the arguments",
				args, p.SKU, p.Qty, min)
		}
	case "show":
		for _, s := range p.SKUs {
			if stock.CheckSKU(s) != nil || !slices.Contains(args, s) {
				t.Fatalf("stockctl %q accepted SKU %q", args, s)
			}
		}
	case "import":
		if f := p.Import.Format; (f != "csv" && f != "ndjson") || !slices.Contains(args, p.Import.Path) {
			t.Fatalf("stockctl %q accepted import %+v; want csv or ndjson and a path from the arguments", args, p.Import)
		}
	case "migrate", "reconcile":
	default:
		t.Fatalf("stockctl %q accepted command %q", args, p.Cmd)
	}
	if p.Stderr != "" {
		t.Fatalf("stockctl %q printed %q while parsing", args, p.Stderr)
	}
}
