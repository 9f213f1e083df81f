package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/config/configtest"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
)

var envKeys = []string{"REDIS_URL", "DATABASE_URL"}

// parsed is an enqueue command line read as run reads it, up to the point
// where run would connect or open a file.
type parsed struct {
	Conn   config.Conn
	Client stockgate.Config
	Cmd    string
	configtest.Outcome
	Order stockgate.Order
	Path  string
	Sale  saleFlags
	Move  moveFlags
}

var word = regexp.MustCompile(`^[a-z][a-z-]*$`)

// parseLine mirrors run's dispatch over the parse functions it calls.
func parseLine(args []string) parsed {
	var stderr bytes.Buffer
	var p parsed
	var env config.EnvValues
	fs := globalFlags(&stderr, &p.Conn, &p.Client, &env)
	pos, err := config.ParseLeading(fs, args)
	switch {
	case err != nil:
	case len(pos) == 0:
		fs.Usage()
		p.NoCmd = true
		err = fmt.Errorf("%w: no command", config.ErrUsage)
	case pos[0] != "help" && validate(p.Conn, p.Client) != nil:
		err = fmt.Errorf("%w: %v", config.ErrUsage, validate(p.Conn, p.Client))
	default:
		p.Cmd = pos[0]
		rest := pos[1:]
		switch p.Cmd {
		case "order":
			// placeOrder validates with a new id when --id is not given.
			p.Order, err = parseOrder(rest, &stderr)
			if err == nil {
				if p.Order.OrderID == "" {
					p.Order.OrderID = "o-fuzz"
				}
				err = checkOrder(p.Order, p.Client.MaxHold)
			}
		case "file":
			p.Path, err = parseFile(rest, &stderr)
		case "confirm", "cancel":
			p.Move, err = parseMove(p.Cmd, rest, &stderr)
		case "flash-sale":
			err = parseSale(rest, &stderr, &p.Sale)
		case "help":
			fs.Usage()
			p.Help = true
		default:
			p.Other = word.MatchString(p.Cmd) && strings.Contains(usage, "enqueue [flags] "+p.Cmd+" ")
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

// runRejected runs enqueue on a line parseLine refuses (or answers with
// help), which run must then refuse before it connects or opens a file;
// the context is cancelled all the same.
func runRejected(args []string) (code int, stdout, stderr string) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// FuzzEnqueueArgs checks enqueue's argument parsing on any argument vector
// and any REDIS_URL and DATABASE_URL: a refusal is a usage error, exit
// status 2 and one line on stderr, help exits 0, nothing reaches stdout, no
// password of a URL from the environment or the flags is ever printed (-h
// shows the defaults), an accepted order has 1..MaxQty units of valid SKUs
// per line, all from the arguments, an accepted flash sale stays within its
// documented bounds, and the same input always gives the same result.
//
// Lines that parse are not run: run would connect, or open the file. The
// first argument is the environment (REDIS_URL=… DATABASE_URL=…), the second
// the argument vector, both split with configtest.Args.
//
//	go test -run '^$' -fuzz '^FuzzEnqueueArgs$' -fuzztime 1m ./cmd/enqueue/
func FuzzEnqueueArgs(f *testing.F) {
	// run sets up telemetry before it parses a command's flags; keep that
	// cheap and off the network.
	f.Setenv("OTEL_SDK_DISABLED", "true")
	env := configtest.Line("REDIS_URL=redis://app:envs3cret@h:6379/1", "DATABASE_URL=postgres://app:dbs3cret@db/sg")
	for _, a := range configtest.Hostile {
		f.Add(env, configtest.Line("order", "--customer", "c-1", "SKU-1="+a))
		f.Add(env, configtest.Line("order", "--customer", a, a))
		f.Add(env, configtest.Line("flash-sale", "--sku", "SKU-1", "--buyers", a, "--qty", a))
		f.Add(env, configtest.Line("flash-sale", "--sku", a, "--buyers", "3", "--concurrency", a, "--run", a))
		f.Add(env, configtest.Line("--max-retry", a, "--retention", a, "file"))
		f.Add(env, configtest.Line("--redis-url", a, a))
		f.Add(env, configtest.Line("order", "--hold", a, "--customer", "c-1", "SKU-1=1"))
		f.Add(env, configtest.Line("cancel", a, "--reason", a))
		f.Add(env, configtest.Line("confirm", "o-1", "--timeout", a))
		f.Add(configtest.Line("REDIS_URL="+a, "DATABASE_URL="+a), configtest.Line("-h"))
	}
	for _, args := range [][]string{
		{}, {"help"}, {"--", "-h"}, {"order"}, {"order", "-h"}, {"order", "--customer", "c", "A=1", "B=2", "A=3"},
		{"order", "--customer", "c", "A=10000", "A=1"}, {"order", "--id", "o-1", "--customer", "c", "A=1"},
		{"order", "A=1", "--customer", "c", "--id", "bad id"}, {"file"}, {"file", "-"}, {"file", "a", "b"},
		{"file", "--", "-h"}, {"flash-sale", "--sku", "S", "--buyers", "10000000", "--concurrency", "1024", "--qty", "10000"},
		{"flash-sale", "--sku", "S", "--buyers", "10000001"}, {"flash-sale", "--sku", "S", "--buyers", "-1"},
		{"flash-sale", "--sku", "S", "--buyers", "1", "--wait-timeout", "-1s", "--wait", "--json"},
		{"flash-sale", "--sku", "S", "--buyers", "1", "--run", strings.Repeat("r", 41)}, {"flash-sale", "extra"},
		{"--redis-url=redis://u:s3cretpw@h/0", "nope"}, {"--database-url", "postgres://u:s3cretpw@h/db", "-h"}, {"ORDER"},
	} {
		f.Add(env, configtest.Line(args...))
	}
	f.Fuzz(func(t *testing.T, envIn, argv string) {
		vals := configtest.EnvValues(envIn, envKeys...)
		args := configtest.Args(argv)
		configtest.SetEnv(t, envKeys, vals)
		p := parseLine(args)
		if again := parseLine(args); !cmp.Equal(p, again, cmp.AllowUnexported(saleFlags{}, moveFlags{})) {
			t.Fatalf("parseLine(%q) differs the second time (-first +second):\n%s", args, cmp.Diff(p, again, cmp.AllowUnexported(saleFlags{}, moveFlags{})))
		}
		configtest.CheckCommandLine(t, configtest.Command{
			Name: "enqueue", EnvKeys: envKeys,
			Parse:    func(args []string) configtest.Outcome { return parseLine(args).Outcome },
			Run:      runRejected,
			Accepted: func() { checkAccepted(t, args, p) },
		}, vals, args, p.Outcome, p.Conn.RedisURL, p.Conn.DatabaseURL)
	})
}

func checkAccepted(t *testing.T, args []string, p parsed) {
	t.Helper()
	if p.Stderr != "" {
		t.Fatalf("enqueue %q printed %q while parsing", args, p.Stderr)
	}
	if p.Client.Retention < 0 || p.Client.MaxRetry < 0 {
		t.Fatalf("enqueue %q accepted retention %v and max retry %d", args, p.Client.Retention, p.Client.MaxRetry)
	}
	switch p.Cmd {
	case "order":
		o := p.Order
		in := orders.Order{OrderID: o.OrderID, CustomerID: o.CustomerID}
		for _, l := range o.Lines {
			in.Lines = append(in.Lines, orders.Line{SKU: l.SKU, Qty: l.Qty})
		}
		if err := stock.CheckLines(in.Normalize().StockLines()); err != nil {
			t.Fatalf("enqueue %q accepted %+v, which the stock gate refuses: %v", args, o, err)
		}
		if o.Hold < 0 || o.Hold > 0 && o.Hold < orders.MinHold || o.Hold > p.Client.MaxHold {
			t.Fatalf("enqueue %q accepted hold %v", args, o.Hold)
		}
		if !slices.Contains(args, o.CustomerID) && !slices.Contains(args, "--customer="+o.CustomerID) && !slices.Contains(args, "-customer="+o.CustomerID) {
			t.Fatalf("enqueue %q accepted customer %q, not from the arguments", args, o.CustomerID)
		}
		for _, l := range o.Lines {
			if !slices.ContainsFunc(args, func(a string) bool {
				sku, q, ok := strings.Cut(a, "=")
				return ok && sku == l.SKU && strings.TrimLeft(strings.TrimPrefix(q, "+"), "0") == fmt.Sprint(l.Qty)
			}) {
				t.Fatalf("enqueue %q accepted line %+v, not from the arguments", args, l)
			}
		}
	case "file":
		if !slices.Contains(args, p.Path) {
			t.Fatalf("enqueue %q accepted path %q, not from the arguments", args, p.Path)
		}
	case "confirm", "cancel":
		m := p.Move
		if !slices.Contains(args, m.id) || orders.CheckID(m.id) != nil || m.timeout <= 0 {
			t.Fatalf("enqueue %q accepted %+v", args, m)
		}
		if err := (orders.Action{OrderID: m.id, Reason: m.reason}).Validate(); err != nil {
			t.Fatalf("enqueue %q accepted %+v, which a worker refuses: %v", args, m, err)
		}
	case "flash-sale":
		s := p.Sale
		switch {
		case stock.CheckSKU(s.sku) != nil:
			t.Fatalf("enqueue %q accepted SKU %q", args, s.sku)
		case s.buyers < 1 || s.buyers > 10_000_000:
			t.Fatalf("enqueue %q accepted %d buyers", args, s.buyers)
		case s.concurrency < 1 || s.concurrency > 1024:
			t.Fatalf("enqueue %q accepted concurrency %d", args, s.concurrency)
		case s.qty < 1 || s.qty > stock.MaxQty:
			t.Fatalf("enqueue %q accepted qty %d", args, s.qty)
		case s.waitTimeout <= 0:
			t.Fatalf("enqueue %q accepted --wait-timeout %v", args, s.waitTimeout)
		case s.run != "" && (len(s.run) > 40 || orders.CheckID(fmt.Sprintf("%s-%d", s.run, s.buyers)) != nil):
			t.Fatalf("enqueue %q accepted --run %q, which makes order id %s-%d invalid", args, s.run, s.run, s.buyers)
		}
	default:
		t.Fatalf("enqueue %q accepted command %q", args, p.Cmd)
	}
}
