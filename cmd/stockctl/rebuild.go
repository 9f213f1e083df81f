package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/worker"
)

// defaultFence is how long rebuild waits, from the moment it sees counters
// missing, before reading sold from Postgres: the store's write fence for
// an attempt of HANDLER_TIMEOUT, the worker's own setting.
func defaultFence() (time.Duration, error) {
	d, err := config.EnvDuration("HANDLER_TIMEOUT", worker.DefaultHandlerTimeout)
	if err != nil {
		return 0, fmt.Errorf("%w: %v (the fence is HANDLER_TIMEOUT + %v)", config.ErrUsage, err, fenceExtra)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%w: HANDLER_TIMEOUT=%v must be positive (the fence is HANDLER_TIMEOUT + %v)", config.ErrUsage, d, fenceExtra)
	}
	return orderstore.WriteFence(d), nil
}

// fenceExtra is what the fence adds to HANDLER_TIMEOUT, for the messages.
var fenceExtra = orderstore.WriteFence(0)

// rebuild restores the counters of every catalogued SKU that Redis has
// none for: available = stocked - sold, with sold from the confirmed rows.
//
// The fence and why it is enough: catalog.Ledger.Rebuild and
// docs/design.md, "The fence".
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
	st, err := openStock(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.close()

	missing, err := st.ledger.Missing(ctx)
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
	}
	results, err := st.ledger.Rebuild(ctx, missing, fence)
	var rebuilt, live, drifted int
	for _, r := range results {
		if r.Live {
			live++
			fmt.Fprintf(stdout, "%s: has an available counter again (stocked meanwhile), left alone\n", r.SKU)
			continue
		}
		rebuilt++
		lv, note := r.Levels, ""
		if r.Oversold() {
			drifted++
			note = fmt.Sprintf(" (held + sold = %d exceeds stocked %d: oversold before the rebuild; reconcile will show it)", lv.Held+lv.Sold, r.Stocked)
		}
		fmt.Fprintf(stdout, "%s: available %d, held %d, sold %d%s\n", r.SKU, lv.Available, lv.Held, lv.Sold, note)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rebuild: %d SKU(s) rebuilt, %d left alone; orders waiting on them now proceed on their next retry\n", rebuilt, live)
	if drifted > 0 {
		return fmt.Errorf("%d SKU(s) were oversold before the rebuild; see stockctl reconcile and docs/reliability.md", drifted)
	}
	return nil
}

func preview(skus []string) string {
	if len(skus) <= 10 {
		return strings.Join(skus, ", ")
	}
	return strings.Join(skus[:10], ", ") + fmt.Sprintf(", … (%d more)", len(skus)-10)
}
