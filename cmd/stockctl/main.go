// Command stockctl is the operator's tool: apply migrations, set and restock
// SKUs, show stock levels and reconcile Redis with Postgres.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/conn"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/reconcile"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/migrations"
)

const usage = `stockctl manages stockgate's stock and schema.

Usage:
  stockctl [flags] migrate             apply pending database migrations
  stockctl [flags] set SKU QTY         make exactly QTY units of SKU available now
  stockctl [flags] add SKU QTY         restock SKU by QTY units
  stockctl [flags] import [--format csv|ndjson] [--add] FILE|-
                                       set (or with --add restock) every SKU of a
                                       file of sku,qty lines; exit 1 if any is refused
  stockctl [flags] show [--json] [SKU…] show available, held (checkouts included) and sold per SKU
  stockctl [flags] reconcile           compare Redis with Postgres; exit 1 on drift
  stockctl [flags] rebuild [--fence D] [--dry-run]
                                       restore counters Redis lost from Postgres,
                                       after waiting out in-flight orders (fence)

Flags (before the command):
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitDrift is reconcile's exit status when Redis and Postgres disagree.
const exitDrift = 1

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg config.Conn
	fs := globalFlags(stderr, &cfg)
	pos, err := config.ParseLeading(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "stockctl: %v\n", err)
		return 2
	}
	if len(pos) == 0 {
		fs.Usage()
		return 2
	}
	cmd, rest := pos[0], pos[1:]
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		fs.Usage()
		return 0
	}
	// Every setting is checked before any command connects: a bad one is
	// refused before anything changed, whether the command uses it or not.
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "stockctl: %v: %v\n", config.ErrUsage, err)
		return 2
	}
	switch cmd {
	case "migrate":
		err = migrate(ctx, cfg, rest, stdout, stderr)
	case "set", "add":
		err = adjust(ctx, cfg, cmd, rest, stdout, stderr)
	case "import":
		err = importCmd(ctx, cfg, rest, stdout, stderr)
	case "show":
		err = show(ctx, cfg, rest, stdout, stderr)
	case "reconcile":
		var drift bool
		drift, err = reconcileCmd(ctx, cfg, rest, stdout, stderr)
		if err == nil && drift {
			return exitDrift
		}
	case "rebuild":
		err = rebuild(ctx, cfg, rest, stdout, stderr)
	default:
		err = fmt.Errorf("%w: unknown command %q (want migrate, set, add, import, show, reconcile or rebuild)", config.ErrUsage, cmd)
		cmd = "" // quoted in err; as typed it could span lines
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", strings.TrimSpace("stockctl "+cmd), err)
	if errors.Is(err, config.ErrUsage) {
		return 2
	}
	return 1
}

// globalFlags are the flags before the command; -h prints usage and them.
func globalFlags(stderr io.Writer, cfg *config.Conn) *flag.FlagSet {
	fs := flag.NewFlagSet("stockctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.Register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

// The parse* functions check a command's arguments before it connects to
// anything, so that they can be fuzzed on their own.

func parseMigrate(args []string, stderr io.Writer) error {
	pos, err := config.Subcommand("stockctl", "migrate", "migrate", stderr, args, nil)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: migrate takes no arguments", config.ErrUsage)
	}
	return nil
}

func migrate(ctx context.Context, cfg config.Conn, args []string, stdout, stderr io.Writer) error {
	if err := parseMigrate(args, stderr); err != nil {
		return err
	}
	pool, err := conn.Postgres(ctx, cfg.DatabaseURL, nil)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := migrations.Up(ctx, pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrations applied: %d, schema version %d\n", len(res.Applied), res.Version)
	return nil
}

func parseQty(s string, min int64) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < min {
		return 0, fmt.Errorf("%w: QTY %q must be an integer >= %d", config.ErrUsage, s, min)
	}
	return n, nil
}

// parseAdjust reads set's and add's SKU QTY; op is "set" or "add".
func parseAdjust(op string, args []string, stderr io.Writer) (sku string, qty int64, err error) {
	pos, err := config.Subcommand("stockctl", op, op+" SKU QTY", stderr, args, nil)
	if err != nil {
		return "", 0, err
	}
	if len(pos) != 2 {
		return "", 0, fmt.Errorf("%w: want %s SKU QTY", config.ErrUsage, op)
	}
	sku = pos[0]
	if err := stock.CheckSKU(sku); err != nil {
		return "", 0, fmt.Errorf("%w: %v", config.ErrUsage, err)
	}
	qty, err = parseQty(pos[1], map[string]int64{"set": 0, "add": 1}[op])
	if err != nil {
		return "", 0, err
	}
	return sku, qty, nil
}

func adjust(ctx context.Context, cfg config.Conn, op string, args []string, stdout, stderr io.Writer) error {
	sku, qty, err := parseAdjust(op, args, stderr)
	if err != nil {
		return err
	}
	st, err := openStock(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.close()
	var lv stock.Levels
	if op == "set" {
		lv, err = st.ledger.Set(ctx, sku, qty)
	} else {
		lv, err = st.ledger.Add(ctx, sku, qty)
	}
	if errors.Is(err, catalog.ErrCountersLost) {
		return fmt.Errorf("%s is in the Postgres catalogue but has no counters in Redis (Redis lost its data?): run stockctl rebuild first, then %s", sku, op)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: available %d, held %d, sold %d\n", lv.SKU, lv.Available, lv.Held, lv.Sold)
	return nil
}

func parseShow(args []string, stderr io.Writer) (skus []string, asJSON bool, err error) {
	pos, err := config.Subcommand("stockctl", "show", "show [--json] [SKU…]", stderr, args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print a JSON array of {sku, available, held, sold, stocked}")
	})
	if err != nil {
		return nil, false, err
	}
	for _, s := range pos {
		if err := stock.CheckSKU(s); err != nil {
			return nil, false, fmt.Errorf("%w: %v", config.ErrUsage, err)
		}
	}
	return pos, asJSON, nil
}

func show(ctx context.Context, cfg config.Conn, args []string, stdout, stderr io.Writer) error {
	pos, asJSON, err := parseShow(args, stderr)
	if err != nil {
		return err
	}
	rdb, err := conn.Redis(ctx, cfg.RedisURL, cfg.RedisCluster)
	if err != nil {
		return err
	}
	defer rdb.Close()
	gate := stock.New(rdb, stock.Config{})
	each := func(fn func([]stock.Levels) error) error { return eachLevels(ctx, gate, fn) }
	if len(pos) > 0 {
		each = func(fn func([]stock.Levels) error) error {
			levels, err := gate.Show(ctx, pos...)
			if err != nil {
				return err
			}
			return fn(levels)
		}
	}
	if asJSON {
		arr := newJSONArray(stdout)
		if err := each(func(levels []stock.Levels) error {
			for _, l := range levels {
				if err := arr.add(l); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		return arr.close()
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SKU\tAVAILABLE\tHELD\tSOLD\t")
	// Columns align within each chunk: the table is flushed a chunk at a
	// time, never held whole.
	if err := each(func(levels []stock.Levels) error {
		for _, l := range levels {
			if !l.Stocked {
				fmt.Fprintf(tw, "%s\t-\t-\t-\t not stocked\n", l.SKU)
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", l.SKU, l.Available, l.Held, l.Sold)
		}
		return tw.Flush()
	}); err != nil {
		return err
	}
	return tw.Flush()
}

// reconcile compares, per SKU, Redis's counters with Postgres: the stocked
// total with the catalogue, held with the checkouts in progress (held
// orders), and sold with the confirmed quantities (an order cancelled after
// its sale is not confirmed any more). It is meant for a quiet system:
// orders in flight show up as held units and, between their row and their
// commit (or give-back), as sold drift.
func parseReconcile(args []string, stderr io.Writer) (asJSON bool, err error) {
	pos, err := config.Subcommand("stockctl", "reconcile", "reconcile [--json]", stderr, args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the comparison as a JSON array")
	})
	if err != nil {
		return false, err
	}
	if len(pos) > 0 {
		return false, fmt.Errorf("%w: reconcile takes no arguments", config.ErrUsage)
	}
	return asJSON, nil
}

func reconcileCmd(ctx context.Context, cfg config.Conn, args []string, stdout, stderr io.Writer) (bool, error) {
	asJSON, err := parseReconcile(args, stderr)
	if err != nil {
		return false, err
	}
	st, err := openStock(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer st.close()
	var agree, drifted int
	count := func(r reconcile.Row) {
		if len(r.Drift) > 0 {
			drifted++
		} else {
			agree++
		}
	}
	if asJSON {
		arr := newJSONArray(stdout)
		if err := reconcile.Stream(ctx, st.gate, st.catalog, st.store, func(r reconcile.Row) error {
			count(r)
			return arr.add(r)
		}); err != nil {
			return false, err
		}
		return drifted > 0, arr.close()
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SKU\tSTOCKED(pg)\tTOTAL(redis)\tAVAILABLE\tHELD\tSOLD\tCONFIRMED(pg)\tCHECKOUT(pg)\tRETURNED(pg)\tSTATUS")
	err = reconcile.Stream(ctx, st.gate, st.catalog, st.store, func(r reconcile.Row) error {
		count(r)
		status := "ok"
		if len(r.Drift) > 0 {
			status = "DRIFT: " + strings.Join(r.Drift, "; ")
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.SKU, r.Stocked, r.Total, r.Available, r.Held, r.Sold, r.Confirmed,
			r.Checkout, r.Returned, status)
		// Columns align within each chunk of rows: never the whole table.
		if (agree+drifted)%showChunk == 0 {
			return tw.Flush()
		}
		return nil
	})
	if err != nil {
		return drifted > 0, err
	}
	if err := tw.Flush(); err != nil {
		return drifted > 0, err
	}
	if drifted > 0 {
		fmt.Fprintf(stderr, "stockctl reconcile: redis and postgres disagree on %d of %d SKUs (see DRIFT rows above)\n", drifted, agree+drifted)
	} else {
		fmt.Fprintf(stdout, "reconcile: %d SKUs agree\n", agree)
	}
	return drifted > 0, nil
}

// backends are what the commands that need both Redis and Postgres work with.
type backends struct {
	gate    *stock.Gate
	store   *orderstore.Store
	catalog *catalog.Catalog
	ledger  *catalog.Ledger
	close   func()
}

// openStock connects to both Redis and Postgres, for the commands that
// need the stock gate and the catalogue together.
func openStock(ctx context.Context, cfg config.Conn) (backends, error) {
	rdb, err := conn.Redis(ctx, cfg.RedisURL, cfg.RedisCluster)
	if err != nil {
		return backends{}, err
	}
	pool, err := conn.Postgres(ctx, cfg.DatabaseURL, nil)
	if err != nil {
		rdb.Close()
		return backends{}, err
	}
	b := backends{gate: stock.New(rdb, stock.Config{}), store: orderstore.New(pool), catalog: catalog.New(pool),
		close: func() { pool.Close(); rdb.Close() }}
	b.ledger = catalog.NewLedger(b.gate, b.catalog, b.store)
	return b, nil
}
