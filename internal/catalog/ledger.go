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
	SetMany(ctx context.Context, lines []stock.Line) ([]stock.Adjusted, error)
	AddMany(ctx context.Context, lines []stock.Line) ([]stock.Adjusted, error)
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
	return l.one(ctx, "set", sku, qty)
}

// Add restocks sku by qty units and records it.
func (l *Ledger) Add(ctx context.Context, sku string, qty int64) (stock.Levels, error) {
	return l.one(ctx, "add", sku, qty)
}

func (l *Ledger) one(ctx context.Context, op, sku string, qty int64) (stock.Levels, error) {
	res, err := l.apply(ctx, op, []Change{{SKU: sku, Qty: qty}})
	if err != nil && !errors.Is(err, ErrNotRecorded) {
		return stock.Levels{}, err
	}
	if res[0].Err != nil {
		return res[0].Levels, res[0].Err
	}
	return res[0].Levels, err
}

// Change is one line of a batch set or add: a SKU and a quantity.
type Change struct {
	SKU string
	Qty int64
}

// Changed is what a batch did with one line.
type Changed struct {
	Levels stock.Levels // the new levels, when Redis changed
	// Err says why the line was refused (stock.ErrInvalid, ErrCountersLost;
	// nothing changed for it), or, with ErrNotRecorded, that Redis changed
	// but the catalogue was not updated.
	Err error
}

// SetAll is Set for a batch of lines, and AddAll is Add: the same rules line
// by line (a SKU with open holds keeps them; a catalogued SKU without
// counters is refused with ErrCountersLost), with a handful of round trips
// for the whole batch instead of a handful per line. No SKU may come twice
// in one batch. Each line's outcome is in its Changed; the error is for a
// failure that stopped the batch: Redis or Postgres unreachable, or, with
// ErrNotRecorded, Redis changed and the catalogue not (re-run to mend).
func (l *Ledger) SetAll(ctx context.Context, changes []Change) ([]Changed, error) {
	return l.apply(ctx, "set", changes)
}

// AddAll is Add for a batch of lines; see SetAll.
func (l *Ledger) AddAll(ctx context.Context, changes []Change) ([]Changed, error) {
	return l.apply(ctx, "add", changes)
}

func (l *Ledger) apply(ctx context.Context, op string, changes []Change) ([]Changed, error) {
	out := make([]Changed, len(changes))
	var valid []string
	seen := make(map[string]bool, len(changes))
	for i, c := range changes {
		if seen[c.SKU] {
			return nil, fmt.Errorf("%s: %s twice in one batch", op, c.SKU)
		}
		seen[c.SKU] = true
		if err := stock.CheckSKU(c.SKU); err != nil {
			out[i].Err = err
			continue
		}
		valid = append(valid, c.SKU)
	}
	if len(valid) == 0 {
		return out, nil
	}
	cur, err := l.gate.Show(ctx, valid...)
	if err != nil {
		return nil, err
	}
	var unstocked []string
	for _, lv := range cur {
		if !lv.Stocked {
			unstocked = append(unstocked, lv.SKU)
		}
	}
	lost, err := l.cat.CataloguedAmong(ctx, unstocked)
	if err != nil {
		return nil, err
	}
	var lines []stock.Line
	var idx []int
	for i, c := range changes {
		switch {
		case out[i].Err != nil:
		case lost[c.SKU]:
			out[i].Err = fmt.Errorf("%s: %w", c.SKU, ErrCountersLost)
		default:
			lines = append(lines, stock.Line{SKU: c.SKU, Qty: c.Qty})
			idx = append(idx, i)
		}
	}
	if len(lines) == 0 {
		return out, nil
	}
	var adj []stock.Adjusted
	if op == "set" {
		adj, err = l.gate.SetMany(ctx, lines)
	} else {
		adj, err = l.gate.AddMany(ctx, lines)
	}
	if err != nil {
		return nil, err
	}
	var ms []Movement
	var moved []int
	for j, a := range adj {
		i := idx[j]
		if a.Err != nil {
			out[i].Err = a.Err
			continue
		}
		out[i].Levels = a.Levels
		ms = append(ms, Movement{SKU: lines[j].SKU, Op: op, Qty: lines[j].Qty, Stocked: a.Levels.Total()})
		moved = append(moved, i)
	}
	// Redis changed first: the catalogue keeps the stocked total so that
	// reconcile can tell a lost Redis counter from a sale.
	if err := l.cat.RecordAll(ctx, ms); err != nil {
		err = fmt.Errorf("%w: %w", ErrNotRecorded, err)
		for _, i := range moved {
			out[i].Err = err
		}
		return out, err
	}
	return out, nil
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
