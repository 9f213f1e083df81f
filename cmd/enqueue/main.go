// Command enqueue is the storefront side of stockgate: it places one order,
// a file of orders, or a whole flash sale on the orders queue.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/telemetry"
)

const usage = `enqueue places orders on stockgate's order queue: "orders", or with
--queue-shards N one of "orders-0" … "orders-N-1" chosen by a hash of the
order id.

Usage:
  enqueue [flags] order [--id ID] [--hold D] --customer C SKU=QTY [SKU=QTY…]
  enqueue [flags] confirm ID          confirm a checkout (an order placed with --hold) once paid
  enqueue [flags] cancel ID [--reason R]
                                      cancel a checkout, or an order after its sale
  enqueue [flags] file PATH|-        one JSON order per line (NDJSON); - reads stdin
  enqueue [flags] flash-sale --sku SKU --buyers N [--qty Q] [--concurrency C] [--wait] [--json]

Run "enqueue COMMAND -h" for a command's flags.

Flags (before the command):
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type env struct {
	conn   config.Conn
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	client *stockgate.Client

	clientConfig stockgate.Config
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	var ccfg stockgate.Config
	var envErrs config.EnvValues
	fs := globalFlags(stderr, &e.conn, &ccfg, &envErrs)
	pos, err := config.ParseLeading(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "enqueue: %v\n", err)
		return 2
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	cmd, rest := pos[0], pos[1:]
	if cmd == "help" {
		fs.Usage()
		return 0
	}
	if err := errors.Join(envErrs.Err(), validate(e.conn, ccfg)); err != nil {
		fmt.Fprintf(stderr, "enqueue: %v: %v\n", config.ErrUsage, err)
		return 2
	}
	var cmdFn func(context.Context, *env, []string) error
	switch cmd {
	case "order":
		cmdFn = placeOrder
	case "file":
		cmdFn = placeFile
	case "flash-sale":
		cmdFn = flashSale
	case "confirm", "cancel":
		cmdFn = func(ctx context.Context, e *env, args []string) error { return moveOrder(ctx, e, cmd, args) }
	default:
		fmt.Fprintf(stderr, "enqueue: unknown command %q (want order, confirm, cancel, file or flash-sale; see enqueue -h)\n", cmd)
		return 2
	}
	e.clientConfig = ccfg
	// OTEL_* configure tracing; with none set nothing is exported.
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "stockgate-enqueue",
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintf(stderr, "enqueue: %v\n", err)
		return 1
	}
	err = cmdFn(ctx, e, rest)
	if e.client != nil {
		_ = e.client.Close()
	}
	// Flush before exiting, or the spans of a short run are lost.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	_ = tel.Shutdown(sctx)
	cancel()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, config.ErrUsage):
		fmt.Fprintf(stderr, "enqueue %s: %v\n", cmd, err)
		return 2
	}
	fmt.Fprintf(stderr, "enqueue %s: %v\n", cmd, err)
	return 1
}

// globalFlags are the flags before the command; -h prints usage and them.
func globalFlags(stderr io.Writer, conn *config.Conn, ccfg *stockgate.Config, env *config.EnvValues) *flag.FlagSet {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conn.Register(fs)
	fs.DurationVar(&ccfg.Retention, "retention", stockgate.DefaultRetention,
		"how long a finished task is kept; a re-enqueue of the same order id is refused meanwhile")
	fs.IntVar(&ccfg.MaxRetry, "max-retry", stockgate.DefaultMaxRetry, "retries for infrastructure errors before an order is recorded failed")
	config.RegisterQueueShards(fs, env, &ccfg.QueueShards)
	fs.DurationVar(&ccfg.MaxHold, "max-hold", env.Duration("MAX_HOLD", stockgate.DefaultMaxHold),
		"the longest --hold an order may ask for, the workers' --max-hold [MAX_HOLD]")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// validate checks every setting before a command runs, so that a bad one
// is refused before anything is enqueued, whether the command uses it or
// not (only flash-sale --wait reads Postgres).
func validate(c config.Conn, ccfg stockgate.Config) error {
	switch {
	case ccfg.MaxHold < orders.MinHold || ccfg.MaxHold > orders.MaxHoldLimit:
		return fmt.Errorf("--max-hold %v must be from %v to %v", ccfg.MaxHold, orders.MinHold, orders.MaxHoldLimit)
	case ccfg.Retention < 0:
		return fmt.Errorf("--retention %v must be >= 0", ccfg.Retention)
	case ccfg.MaxRetry < 0:
		return fmt.Errorf("--max-retry %d must be >= 0", ccfg.MaxRetry)
	case orders.CheckQueueShards(ccfg.QueueShards) != nil:
		return fmt.Errorf("--queue-shards %d must be 1..%d", ccfg.QueueShards, orders.MaxQueueShards)
	}
	return c.Validate()
}

// connect opens the client lazily, after argument checks, so a usage error
// never waits on a network timeout. NewClient pings Redis, so an
// unreachable one is one line naming the (redacted) URL rather than an
// error per order.
func (e *env) connect(ctx context.Context) error {
	cfg := e.clientConfig
	cfg.RedisURL, cfg.RedisCluster = e.conn.RedisURL, e.conn.RedisCluster
	c, err := stockgate.NewClient(ctx, cfg)
	if err != nil {
		return err
	}
	e.client = c
	return nil
}

func newID(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + strconv.FormatInt(time.Now().Unix(), 36) + "-" + hex.EncodeToString(b)
}

// ParseLines turns SKU=QTY arguments into order lines.
func ParseLines(args []string) ([]stockgate.Line, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("%w: at least one SKU=QTY is required", config.ErrUsage)
	}
	lines := make([]stockgate.Line, 0, len(args))
	for _, a := range args {
		sku, q, ok := strings.Cut(a, "=")
		if !ok || sku == "" {
			return nil, fmt.Errorf("%w: %q is not SKU=QTY", config.ErrUsage, a)
		}
		qty, err := strconv.ParseInt(q, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: quantity in %q is not an integer", config.ErrUsage, a)
		}
		lines = append(lines, stockgate.Line{SKU: sku, Qty: qty})
	}
	return lines, nil
}

// parseOrder reads order's flags and lines, before anything connects; the
// order is validated once it has its id.
func parseOrder(args []string, stderr io.Writer) (o stockgate.Order, err error) {
	pos, err := config.Subcommand("enqueue", "order", "order [--id ID] [--hold D] --customer C SKU=QTY [SKU=QTY…]", stderr, args, func(fs *flag.FlagSet) {
		fs.StringVar(&o.OrderID, "id", "", "order id (default: a new unique id)")
		fs.StringVar(&o.CustomerID, "customer", "", "customer id (required)")
		fs.DurationVar(&o.Hold, "hold", 0, "a checkout: hold the units this long (such as 10m) until enqueue confirm or cancel; "+
			"0 confirms at once")
	})
	if err != nil {
		return stockgate.Order{}, err
	}
	if o.CustomerID == "" {
		return stockgate.Order{}, fmt.Errorf("%w: --customer is required", config.ErrUsage)
	}
	if o.Lines, err = ParseLines(pos); err != nil {
		return stockgate.Order{}, err
	}
	return o, nil
}

func placeOrder(ctx context.Context, e *env, args []string) error {
	o, err := parseOrder(args, e.stderr)
	if err != nil {
		return err
	}
	if o.OrderID == "" {
		o.OrderID = newID("o-")
	}
	id := o.OrderID
	now := time.Now().UTC()
	o.PlacedAt = &now
	if err := checkOrder(o, e.clientConfig.MaxHold); err != nil {
		return err
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	if err := e.client.Submit(ctx, o); err != nil {
		return err
	}
	if o.Hold > 0 {
		fmt.Fprintf(e.stdout, "enqueued order %s, held for %v once reserved: enqueue confirm %s, or cancel %s\n", id, o.Hold, id, id)
		return nil
	}
	fmt.Fprintf(e.stdout, "enqueued order %s\n", id)
	return nil
}

// checkOrder is what Submit would refuse, as a usage error before anything
// connects: the payload's rules, and a hold over --max-hold.
func checkOrder(o stockgate.Order, maxHold time.Duration) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("%w: %v", config.ErrUsage, err)
	}
	if o.Hold > maxHold {
		return fmt.Errorf("%w: --hold %v is over --max-hold %v", config.ErrUsage, o.Hold, maxHold)
	}
	return nil
}

// maxLine bounds one NDJSON line: a payload over the limit is reported,
// not buffered without end.
const maxLine = orders.MaxPayloadBytes + 1

func parseFile(args []string, stderr io.Writer) (path string, err error) {
	pos, err := config.Subcommand("enqueue", "file", "file PATH|-", stderr, args, func(*flag.FlagSet) {})
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("%w: want one PATH, or - for stdin", config.ErrUsage)
	}
	return pos[0], nil
}

func placeFile(ctx context.Context, e *env, args []string) error {
	path, err := parseFile(args, e.stderr)
	if err != nil {
		return err
	}
	in := e.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	r := bufio.NewReaderSize(in, 64<<10)
	var enqueued, invalid, duplicate, lineNo int
	for {
		line, tooLong, err := readLine(r, maxLine)
		if errors.Is(err, io.EOF) && len(line) == 0 && !tooLong {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read line %d: %w", lineNo+1, err)
		}
		lineNo++
		if len(strings.TrimSpace(string(line))) == 0 && !tooLong {
			continue
		}
		if tooLong {
			invalid++
			fmt.Fprintf(e.stderr, "line %d: invalid: payload is larger than %d bytes\n", lineNo, orders.MaxPayloadBytes)
			continue
		}
		o, derr := stockgate.DecodeOrder(line)
		if derr != nil {
			invalid++
			fmt.Fprintf(e.stderr, "line %d: %v\n", lineNo, derr)
			continue
		}
		if serr := e.client.Submit(ctx, o); errors.Is(serr, stockgate.ErrDuplicate) {
			duplicate++
			fmt.Fprintf(e.stderr, "line %d: %v\n", lineNo, serr)
		} else if serr != nil {
			return fmt.Errorf("line %d: %w (%d enqueued before it)", lineNo, serr, enqueued)
		} else {
			enqueued++
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	fmt.Fprintf(e.stdout, "enqueued %d, invalid %d, duplicate %d\n", enqueued, invalid, duplicate)
	if invalid+duplicate > 0 {
		return fmt.Errorf("%d of %d lines were not enqueued", invalid+duplicate, enqueued+invalid+duplicate)
	}
	return nil
}

// readLine reads one line without its newline. A line longer than max is
// consumed and reported as tooLong, never held in memory whole.
func readLine(r *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, isPrefix, err := r.ReadLine()
		if !tooLong {
			line = append(line, chunk...)
			if len(line) > max {
				tooLong, line = true, nil
			}
		}
		if err != nil || !isPrefix {
			return line, tooLong, err
		}
	}
}
