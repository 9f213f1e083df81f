// Package reconcile compares Redis's stock counters with Postgres: each SKU's
// stocked total with the catalogue, and sold with the confirmed quantities.
// It reads both sides and changes neither.
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
	SKU       string   `json:"sku"`
	Stocked   int64    `json:"stocked"`   // catalogue total in Postgres
	Total     int64    `json:"total"`     // available + held + sold in Redis
	Available int64    `json:"available"` // Redis
	Held      int64    `json:"held"`      // Redis
	Sold      int64    `json:"sold"`      // Redis
	Confirmed int64    `json:"confirmed"` // sum of confirmed quantities in Postgres
	Drift     []string `json:"drift,omitempty"`
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

// Sold is the Postgres order rows: *orderstore.Store.
type Sold interface {
	ConfirmedBySKU(ctx context.Context) (map[string]int64, error)
}

// Compare lines up every SKU known to either side.
func Compare(ctx context.Context, gate Stock, cat Catalogue, sold Sold) ([]Row, error) {
	products, err := cat.Products(ctx)
	if err != nil {
		return nil, err
	}
	confirmed, err := sold.ConfirmedBySKU(ctx)
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
	var rows []Row
	for _, s := range skus {
		if stock.CheckSKU(s) == nil {
			valid = append(valid, s)
		} else {
			rows = append(rows, Row{SKU: s, Drift: []string{"sku not valid for redis"}})
		}
	}
	levels, err := gate.Show(ctx, valid...)
	if err != nil {
		return nil, err
	}
	for _, l := range levels {
		r := Row{SKU: l.SKU, Stocked: products[l.SKU], Total: l.Total(), Available: l.Available,
			Held: l.Held, Sold: l.Sold, Confirmed: confirmed[l.SKU]}
		if !l.Stocked {
			r.Drift = append(r.Drift, "missing in redis")
		}
		if r.Available < 0 {
			r.Drift = append(r.Drift, "available below zero")
		}
		if r.Total != r.Stocked {
			r.Drift = append(r.Drift, fmt.Sprintf("stocked %+d", r.Total-r.Stocked))
		}
		if r.Held != 0 {
			// On a quiet system every hold is decided; units still held are
			// stock no buyer can get until the sweeper settles them.
			r.Drift = append(r.Drift, fmt.Sprintf("%d units held by undecided orders", r.Held))
		}
		if r.Sold != r.Confirmed {
			r.Drift = append(r.Drift, fmt.Sprintf("sold %+d vs confirmed", r.Sold-r.Confirmed))
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b Row) int { return strings.Compare(a.SKU, b.SKU) })
	return rows, nil
}
