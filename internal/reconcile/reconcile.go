// Package reconcile compares Redis's stock counters with Postgres: each SKU's
// stocked total with the catalogue, held with the checkouts in progress
// (held orders), and sold with the confirmed quantities, which no longer
// count an order cancelled after its sale (I1, docs/design.md). It reads
// both sides and changes neither. It streams: the SKUs of both sides are
// merged in order, a chunk at a time, so that a catalogue of millions is
// never held in memory (docs/benchmarks.md, "Big catalogues").
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/stockgate/stockgate/internal/extsort"
	"github.com/stockgate/stockgate/internal/stock"
)

// Row is one SKU's comparison between Redis and Postgres.
type Row struct {
	SKU       string `json:"sku"`
	Stocked   int64  `json:"stocked"`   // catalogue total in Postgres
	Total     int64  `json:"total"`     // available + held + sold in Redis
	Available int64  `json:"available"` // Redis
	Held      int64  `json:"held"`      // Redis
	Sold      int64  `json:"sold"`      // Redis
	Confirmed int64  `json:"confirmed"` // sum of confirmed quantities in Postgres
	// Checkout is the sum of held orders' quantities in Postgres: the units
	// held for checkouts in progress, which Redis holds on a quiet system.
	Checkout int64 `json:"checkout"`
	// Returned is the sum of the quantities of orders cancelled after their
	// sale: sold once, available again, and in neither Sold nor Confirmed.
	Returned int64    `json:"returned"`
	Drift    []string `json:"drift,omitempty"`
}

// Stock is the Redis side: *stock.Gate.
type Stock interface {
	ScanSKUs(ctx context.Context, fn func(skus []string) error) error
	Show(ctx context.Context, skus ...string) ([]stock.Levels, error)
}

// Catalogue is the Postgres catalogue: *catalog.Catalog. EachProduct goes
// in byte order of SKU.
type Catalogue interface {
	EachProduct(ctx context.Context, fn func(sku string, stocked int64) error) error
}

// Orders is the Postgres order rows: *orderstore.Store. Each stream goes
// in byte order of SKU: the confirmed quantities, the held (checkouts in
// progress), and the cancelled after their sale.
type Orders interface {
	EachConfirmed(ctx context.Context, fn func(sku string, qty int64) error) error
	EachHeld(ctx context.Context, fn func(sku string, qty int64) error) error
	EachReturned(ctx context.Context, fn func(sku string, qty int64) error) error
}

// chunk is how many SKUs are compared per read of Redis's counters.
const chunk = 1000

// Compare lines up every SKU known to either side, sorted by SKU.
func Compare(ctx context.Context, gate Stock, cat Catalogue, rows Orders) ([]Row, error) {
	var out []Row
	err := Stream(ctx, gate, cat, rows, func(r Row) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// Stream calls emit with the comparison of every SKU known to either side,
// in byte order of SKU, holding at most a chunk of rows and a sort run of
// Redis's SKUs (internal/extsort) in memory. An error from emit stops it.
func Stream(ctx context.Context, gate Stock, cat Catalogue, rows Orders, emit func(Row) error) error {
	// Redis's set of SKUs comes in no order: sort it, spilling to disk past
	// one run, before the merge.
	redisSKUs := extsort.New(0)
	defer redisSKUs.Close()
	if err := gate.ScanSKUs(ctx, func(skus []string) error {
		for _, s := range skus {
			if err := redisSKUs.Add(s); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}

	nextRedis, stopRedis := iter.Pull2(redisSKUs.Sorted())
	defer stopRedis()
	products := pull(ctx, "products", cat.EachProduct)
	defer products.stop()
	confirmed := pull(ctx, "confirmed quantities", rows.EachConfirmed)
	defer confirmed.stop()
	checkout := pull(ctx, "held checkouts", rows.EachHeld)
	defer checkout.stop()
	returned := pull(ctx, "cancelled after sale", rows.EachReturned)
	defer returned.stop()
	pg := []*head{products, confirmed, checkout, returned}

	var redisHead string
	redisOK := false
	advanceRedis := func() error {
		v, err, ok := nextRedis()
		if ok && err != nil {
			return err
		}
		redisHead, redisOK = v, ok
		return nil
	}
	if err := errors.Join(advanceRedis(), products.advance(), confirmed.advance(), checkout.advance(), returned.advance()); err != nil {
		return err
	}

	// pending is one SKU's Postgres figures, in pg's order: stocked,
	// confirmed, checkout, returned.
	type pending struct {
		sku string
		n   [4]int64
	}
	batch := make([]pending, 0, chunk)
	flush := func() error {
		var valid []string
		for _, p := range batch {
			if stock.CheckSKU(p.sku) == nil {
				valid = append(valid, p.sku)
			}
		}
		levels := map[string]stock.Levels{}
		if len(valid) > 0 {
			ls, err := gate.Show(ctx, valid...)
			if err != nil {
				return err
			}
			for _, l := range ls {
				levels[l.SKU] = l
			}
		}
		for _, p := range batch {
			l, ok := levels[p.sku]
			if !ok {
				if err := emit(Row{SKU: p.sku, Drift: []string{"sku not valid for redis"}}); err != nil {
					return err
				}
				continue
			}
			if err := emit(compare(l, p.n[0], p.n[1], p.n[2], p.n[3])); err != nil {
				return err
			}
		}
		batch = batch[:0]
		return nil
	}
	anyPG := func() bool { return slices.ContainsFunc(pg, func(h *head) bool { return h.ok }) }
	for redisOK || anyPG() {
		// The smallest SKU at the head of any stream is the next row.
		sku, first := redisHead, !redisOK
		for _, h := range pg {
			if h.ok && (first || h.sku < sku) {
				sku, first = h.sku, false
			}
		}
		p := pending{sku: sku}
		if redisOK && redisHead == sku {
			if err := advanceRedis(); err != nil {
				return err
			}
		}
		for i, h := range pg {
			if h.ok && h.sku == sku {
				p.n[i] = h.n
				if err := h.advance(); err != nil {
					return err
				}
			}
		}
		batch = append(batch, p)
		if len(batch) == chunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// compare is one SKU's row: its drift, if any.
func compare(l stock.Levels, stocked, confirmed, checkout, returned int64) Row {
	r := Row{SKU: l.SKU, Stocked: stocked, Total: l.Total(), Available: l.Available,
		Held: l.Held, Sold: l.Sold, Confirmed: confirmed, Checkout: checkout, Returned: returned}
	if !l.Stocked {
		r.Drift = append(r.Drift, "missing in redis")
	}
	if r.Available < 0 {
		r.Drift = append(r.Drift, "available below zero")
	}
	if r.Total != r.Stocked {
		r.Drift = append(r.Drift, fmt.Sprintf("stocked %+d", r.Total-r.Stocked))
	}
	switch d := r.Held - r.Checkout; {
	case d > 0:
		// On a quiet system every hold is decided or a checkout's; units
		// held beyond those are stock no buyer can get until the sweeper
		// settles them.
		r.Drift = append(r.Drift, fmt.Sprintf("%d units held by undecided orders", d))
	case d < 0:
		r.Drift = append(r.Drift, fmt.Sprintf("%d units of held checkouts not held in redis", -d))
	}
	if r.Sold != r.Confirmed {
		r.Drift = append(r.Drift, fmt.Sprintf("sold %+d vs confirmed", r.Sold-r.Confirmed))
	}
	return r
}

// head is a Postgres stream being merged: its current SKU and number, and
// once it has ended, the error that ended it.
type head struct {
	what string
	next func() (string, int64, bool)
	stop func()
	sku  string
	n    int64
	ok   bool
	err  func() error
}

// advance moves to the next SKU. It fails when the stream failed, or came
// out of order (a merge would then pair the wrong SKUs).
func (h *head) advance() error {
	prev, had := h.sku, h.ok
	h.sku, h.n, h.ok = h.next()
	switch {
	case !h.ok:
		return h.err()
	case had && h.sku <= prev:
		return fmt.Errorf("reconcile: %s came out of byte order (%q after %q)", h.what, h.sku, prev)
	}
	return nil
}

// errStop ends a stream whose reader stopped early.
var errStop = errors.New("stopped")

// pull turns a callback stream (EachProduct, EachConfirmed) into a head
// read one at a time.
func pull(ctx context.Context, what string, each func(ctx context.Context, fn func(string, int64) error) error) *head {
	var streamErr error
	seq := func(yield func(string, int64) bool) {
		err := each(ctx, func(sku string, n int64) error {
			if !yield(sku, n) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			streamErr = err
		}
	}
	next, stop := iter.Pull2(seq)
	return &head{what: what, next: next, stop: stop, err: func() error { return streamErr }}
}
