// Package reconcile compares Redis's stock counters with Postgres: each SKU's
// stocked total with the catalogue, held with the checkouts in progress
// (held orders), and sold with the confirmed quantities, which no longer
// count an order cancelled after its sale (I1, docs/design.md). It reads
// both sides and changes neither.
package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"

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
	SKUs(ctx context.Context) ([]string, error)
	Show(ctx context.Context, skus ...string) ([]stock.Levels, error)
}

// Catalogue is the Postgres catalogue: *catalog.Catalog.
type Catalogue interface {
	Products(ctx context.Context) (map[string]int64, error)
}

// Orders is the Postgres order rows: *orderstore.Store.
type Orders interface {
	ConfirmedBySKU(ctx context.Context) (map[string]int64, error)
	HeldBySKU(ctx context.Context) (map[string]int64, error)
	CancelledAfterSaleBySKU(ctx context.Context) (map[string]int64, error)
}

// Compare lines up every SKU known to either side.
func Compare(ctx context.Context, gate Stock, cat Catalogue, rows Orders) ([]Row, error) {
	products, err := cat.Products(ctx)
	if err != nil {
		return nil, err
	}
	confirmed, err := rows.ConfirmedBySKU(ctx)
	if err != nil {
		return nil, err
	}
	checkout, err := rows.HeldBySKU(ctx)
	if err != nil {
		return nil, err
	}
	returned, err := rows.CancelledAfterSaleBySKU(ctx)
	if err != nil {
		return nil, err
	}
	skus, err := gate.SKUs(ctx)
	if err != nil {
		return nil, err
	}
	for s := range products {
		skus = append(skus, s)
	}
	for s := range confirmed {
		skus = append(skus, s)
	}
	skus = slices.Compact(slices.Sorted(slices.Values(skus)))
	var valid []string
	var out []Row
	for _, s := range skus {
		if stock.CheckSKU(s) == nil {
			valid = append(valid, s)
		} else {
			out = append(out, Row{SKU: s, Drift: []string{"sku not valid for redis"}})
		}
	}
	levels, err := gate.Show(ctx, valid...)
	if err != nil {
		return nil, err
	}
	for _, l := range levels {
		r := Row{SKU: l.SKU, Stocked: products[l.SKU], Total: l.Total(), Available: l.Available,
			Held: l.Held, Sold: l.Sold, Confirmed: confirmed[l.SKU], Checkout: checkout[l.SKU], Returned: returned[l.SKU]}
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
			// On a quiet system every hold is decided or a checkout's;
			// units held beyond those are stock no buyer can get until the
			// sweeper settles them.
			r.Drift = append(r.Drift, fmt.Sprintf("%d units held by undecided orders", d))
		case d < 0:
			r.Drift = append(r.Drift, fmt.Sprintf("%d units of held checkouts not held in redis", -d))
		}
		if r.Sold != r.Confirmed {
			r.Drift = append(r.Drift, fmt.Sprintf("sold %+d vs confirmed", r.Sold-r.Confirmed))
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Row) int { return strings.Compare(a.SKU, b.SKU) })
	return out, nil
}
