package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/stockgate/stockgate/internal/stock"
)

// Gate is what the ledger needs from the stock gate (*stock.Gate).
type Gate interface {
	Show(ctx context.Context, skus ...string) ([]stock.Levels, error)
	Set(ctx context.Context, sku string, qty int64) (stock.Levels, error)
	Add(ctx context.Context, sku string, qty int64) (stock.Levels, error)
	Rebuild(ctx context.Context, sku string, stocked, sold int64) (stock.Levels, error)
}

// Sold is where the ledger reads the units sold: the confirmed quantities
// in Postgres (*orderstore.Store).
type Sold interface {
	ConfirmedBySKU(ctx context.Context) (map[string]int64, error)
}

// Ledger moves stock in Redis and records each movement in the catalogue.
type Ledger struct {
	gate Gate
	cat  *Catalog
	sold Sold
}

// NewLedger returns a Ledger over the stock gate, the catalogue and the
// order rows' confirmed quantities.
func NewLedger(gate Gate, cat *Catalog, sold Sold) *Ledger {
	return &Ledger{gate: gate, cat: cat, sold: sold}
}

// ErrCountersLost is returned by Set and Add for a SKU the catalogue knows
// but Redis has no counters for: Redis lost its data. Starting the SKU from
// zero would overwrite the catalogue's total and forget what was sold;
// Rebuild restores it from Postgres instead.
var ErrCountersLost = errors.New("catalogued sku has no counters in redis")

// ErrNotRecorded wraps a failure to record a movement that Redis already
// made: reconcile reports the drift, and running the same command again
// mends it.
var ErrNotRecorded = errors.New("stock changed in redis but the catalogue was not updated (re-run to mend)")

// Set makes exactly qty units of sku available now and records it.
func (l *Ledger) Set(ctx context.Context, sku string, qty int64) (stock.Levels, error) {
	return l.adjust(ctx, "set", sku, qty)
}

// Add restocks sku by qty units and records it.
func (l *Ledger) Add(ctx context.Context, sku string, qty int64) (stock.Levels, error) {
	return l.adjust(ctx, "add", sku, qty)
}

func (l *Ledger) adjust(ctx context.Context, op, sku string, qty int64) (stock.Levels, error) {
	cur, err := l.gate.Show(ctx, sku)
	if err != nil {
		return stock.Levels{}, err
	}
	if !cur[0].Stocked {
		known, err := l.cat.Catalogued(ctx, sku)
		if err != nil {
			return stock.Levels{}, err
		}
		if known {
			return stock.Levels{}, fmt.Errorf("%s: %w", sku, ErrCountersLost)
		}
	}
	var lv stock.Levels
	if op == "set" {
		lv, err = l.gate.Set(ctx, sku, qty)
	} else {
		lv, err = l.gate.Add(ctx, sku, qty)
	}
	if err != nil {
		return stock.Levels{}, err
	}
	// Redis changed first: the catalogue keeps the stocked total so that
	// reconcile can tell a lost Redis counter from a sale.
	if err := l.cat.Record(ctx, Movement{SKU: sku, Op: op, Qty: qty, Stocked: lv.Total()}); err != nil {
		return lv, fmt.Errorf("%w: %w", ErrNotRecorded, err)
	}
	return lv, nil
}

// Missing lists, sorted, the catalogued SKUs that have no counters in Redis.
func (l *Ledger) Missing(ctx context.Context) ([]string, error) {
	products, err := l.cat.Products(ctx)
	if err != nil {
		return nil, err
	}
	skus := slices.Sorted(maps.Keys(products))
	var missing []string
	for chunk := range slices.Chunk(skus, 500) {
		levels, err := l.gate.Show(ctx, chunk...)
		if err != nil {
			return nil, err
		}
		for _, lv := range levels {
			if !lv.Stocked {
				missing = append(missing, lv.SKU)
			}
		}
	}
	return missing, nil
}

// Rebuilt is what Rebuild did to one SKU.
type Rebuilt struct {
	SKU    string
	Levels stock.Levels // the counters written; zero when Live
	// Live means the SKU had an available counter again by the time its
	// turn came (someone stocked it while the fence ran): it was left alone.
	Live bool
	// Stocked is the catalogue's total, which Rebuild keeps: when held +
	// sold exceed it, the SKU was oversold before the rebuild and
	// reconcile goes on showing it.
	Stocked int64
}

// Oversold reports whether the SKU's held and sold units exceed its
// stocked total.
func (r Rebuilt) Oversold() bool { return !r.Live && r.Levels.Total() != r.Stocked }

// Rebuild restores the counters of skus (Missing's answer) after Redis lost
// them: available = stocked - sold, with sold read from the confirmed rows
// in Postgres only once fence has passed.
//
// The fence (docs/design.md, "The fence"): an order that reserved before
// Redis lost its data can still write its confirmed row until its attempt's
// write deadline (orderstore.WriteFence), and its units are in no counter
// any more. Reading sold before then would sell those units twice. Reserves
// fail while the counters are missing (the worker retries, fail closed), so
// once every attempt that started before the loss has passed that deadline,
// sold in Postgres is final for the old counters. The loss happened before
// the caller saw it, so waiting the fence from now is always enough.
func (l *Ledger) Rebuild(ctx context.Context, skus []string, fence time.Duration) ([]Rebuilt, error) {
	if fence > 0 {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("interrupted while fencing; nothing rebuilt: %w", ctx.Err())
		case <-time.After(fence):
		}
	}
	products, err := l.cat.Products(ctx)
	if err != nil {
		return nil, err
	}
	confirmed, err := l.sold.ConfirmedBySKU(ctx)
	if err != nil {
		return nil, err
	}
	var out []Rebuilt
	for _, sku := range skus {
		stocked, sold := products[sku], confirmed[sku]
		lv, err := l.gate.Rebuild(ctx, sku, stocked, sold)
		if errors.Is(err, stock.ErrLive) {
			out = append(out, Rebuilt{SKU: sku, Live: true, Stocked: stocked})
			continue
		}
		if err != nil {
			return out, fmt.Errorf("after %d rebuilt: %w", rebuiltCount(out), err)
		}
		// The catalogue keeps its stocked total: writing lv.Total() there
		// would make an oversell (sold above stocked) look reconciled.
		if err := l.cat.Record(ctx, Movement{SKU: sku, Op: "rebuild", Qty: lv.Available, Stocked: stocked}); err != nil {
			return out, fmt.Errorf("%s rebuilt in redis but not recorded in stock_movements: %w", sku, err)
		}
		out = append(out, Rebuilt{SKU: sku, Levels: lv, Stocked: stocked})
	}
	return out, nil
}

func rebuiltCount(rs []Rebuilt) int {
	n := 0
	for _, r := range rs {
		if !r.Live {
			n++
		}
	}
	return n
}
