package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
)

// batchGrace covers a confirmed row already handed to the store's batcher
// when its handler's deadline passed: the batch statement may run for up
// to this long after (orders.Store's batch timeout, plus a margin).
const batchGrace = 15 * time.Second

// defaultFence is how long rebuild waits, from the moment it sees counters
// missing, before reading sold from Postgres: one handler attempt
// (HANDLER_TIMEOUT, the worker's own setting) plus batchGrace.
func defaultFence() (time.Duration, error) {
	d, err := config.EnvDuration("HANDLER_TIMEOUT", 30*time.Second)
	if err != nil {
		return 0, fmt.Errorf("%w: %v (the fence is HANDLER_TIMEOUT + %v)", config.ErrUsage, err, batchGrace)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%w: HANDLER_TIMEOUT=%v must be positive (the fence is HANDLER_TIMEOUT + %v)", config.ErrUsage, d, batchGrace)
	}
	return d + batchGrace, nil
}

// rebuild restores the counters of every catalogued SKU that Redis has
// none for: available = stocked - sold, with sold from the confirmed rows.
//
// The fence: an order that reserved before Redis lost its data can still
// write its confirmed row until its attempt's deadline, and its units are
// not in any counter any more. Reading sold before that deadline passes
// would sell those units twice. Reserves fail while the counters are
// missing (the handler retries, fail closed), so once every attempt that
// started before the loss has passed its deadline, sold in Postgres is
// final for the old counters. The loss happened before rebuild saw it, so
// waiting the fence from now is always enough.
func rebuild(ctx context.Context, cfg config.Conn, args []string, stdout, stderr io.Writer) error {
	fence, err := defaultFence()
	if err != nil {
		return err
	}
	var dryRun bool
	pos, err := config.Subcommand("stockctl", "rebuild", "rebuild [--fence DURATION] [--dry-run]", stderr, args, func(fs *flag.FlagSet) {
		fs.DurationVar(&fence, "fence", fence,
			"wait this long before reading sold from Postgres, so that orders that reserved before Redis lost its data have passed their deadline (HANDLER_TIMEOUT + 15s); 0 only once every worker that ran since the loss has exited")
		fs.BoolVar(&dryRun, "dry-run", false, "list the SKUs that would be rebuilt, change nothing")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: rebuild takes no arguments", config.ErrUsage)
	}
	if fence < 0 {
		return fmt.Errorf("%w: --fence %v must be >= 0", config.ErrUsage, fence)
	}
	gate, store, closeAll, err := openStock(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeAll()

	missing, err := missingSKUs(ctx, gate, store)
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		fmt.Fprintln(stdout, "rebuild: every catalogued SKU has counters in Redis; nothing to do")
		return nil
	}
	fmt.Fprintf(stdout, "rebuild: %d catalogued SKU(s) have no counters in Redis: %s\n", len(missing), preview(missing))
	if dryRun {
		return nil
	}
	if fence > 0 {
		fmt.Fprintf(stdout, "rebuild: fencing: waiting %v for orders that reserved before the loss to pass their deadline\n", fence)
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while fencing; nothing rebuilt: %w", ctx.Err())
		case <-time.After(fence):
		}
	}
	// Read the catalogue and sold only now, after the fence.
	products, err := store.Products(ctx)
	if err != nil {
		return err
	}
	confirmed, err := store.ConfirmedBySKU(ctx)
	if err != nil {
		return err
	}
	var rebuilt, live, drifted int
	for _, sku := range missing {
		stocked, sold := products[sku], confirmed[sku]
		lv, err := gate.Rebuild(ctx, sku, stocked, sold)
		if errors.Is(err, stock.ErrLive) {
			// Someone stocked it while we fenced: leave their counters.
			live++
			fmt.Fprintf(stdout, "%s: has an available counter again (stocked meanwhile), left alone\n", sku)
			continue
		}
		if err != nil {
			return fmt.Errorf("after %d rebuilt: %w", rebuilt, err)
		}
		// The catalogue keeps its stocked total: writing lv.Total() there
		// would make an oversell (sold above stocked) look reconciled.
		if err := store.RecordMovement(ctx, orders.Movement{SKU: sku, Op: "rebuild", Qty: lv.Available, Stocked: stocked}); err != nil {
			return fmt.Errorf("%s rebuilt in redis but not recorded in stock_movements: %w", sku, err)
		}
		rebuilt++
		note := ""
		if lv.Total() != stocked {
			drifted++
			note = fmt.Sprintf(" (held + sold = %d exceeds stocked %d: oversold before the rebuild; reconcile will show it)", lv.Held+lv.Sold, stocked)
		}
		fmt.Fprintf(stdout, "%s: available %d, held %d, sold %d%s\n", sku, lv.Available, lv.Held, lv.Sold, note)
	}
	fmt.Fprintf(stdout, "rebuild: %d SKU(s) rebuilt, %d left alone; orders waiting on them now proceed on their next retry\n", rebuilt, live)
	if drifted > 0 {
		return fmt.Errorf("%d SKU(s) were oversold before the rebuild; see stockctl reconcile and docs/reliability.md", drifted)
	}
	return nil
}

func missingSKUs(ctx context.Context, gate *stock.Gate, store *orders.Store) ([]string, error) {
	products, err := store.Products(ctx)
	if err != nil {
		return nil, err
	}
	skus := make([]string, 0, len(products))
	for sku := range products {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	var missing []string
	for chunk := range slices.Chunk(skus, 500) {
		levels, err := gate.Show(ctx, chunk...)
		if err != nil {
			return nil, err
		}
		for _, l := range levels {
			if !l.Stocked {
				missing = append(missing, l.SKU)
			}
		}
	}
	return missing, nil
}

func preview(skus []string) string {
	if len(skus) <= 10 {
		return strings.Join(skus, ", ")
	}
	return strings.Join(skus[:10], ", ") + fmt.Sprintf(", … (%d more)", len(skus)-10)
}
