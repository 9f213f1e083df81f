package stock

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
)

// Reading the set of stocked SKUs (SKUsKey) at any size: in chunks, with
// SSCAN, so that neither Redis nor the caller holds a million members at
// once (docs/benchmarks.md, "Big catalogues").

// scanChunk is how many members one SSCAN asks for.
const scanChunk = 1000

// CountSKUs returns how many SKUs Set, Add or Rebuild ever stocked.
func (g *Gate) CountSKUs(ctx context.Context) (int64, error) {
	n, err := g.rdb.SCard(ctx, SKUsKey).Result()
	if err != nil {
		return 0, fmt.Errorf("count skus: %w", err)
	}
	return n, nil
}

// ScanSKUs calls fn with every stocked SKU, a chunk at a time, in no
// particular order. A SKU stocked or removed while the scan runs may be
// seen or not, and a SKU may come twice (SSCAN's guarantee is only that a
// member present throughout is seen at least once).
func (g *Gate) ScanSKUs(ctx context.Context, fn func(skus []string) error) error {
	var cur uint64
	for {
		skus, next, err := g.rdb.SScan(ctx, SKUsKey, cur, "", scanChunk).Result()
		if err != nil {
			return fmt.Errorf("scan skus: %w", err)
		}
		if len(skus) > 0 {
			if err := fn(skus); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cur = next
	}
}

// FirstSKUs returns the first n stocked SKUs in byte order, holding no more
// than n of them at a time.
func (g *Gate) FirstSKUs(ctx context.Context, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	h := &lastOf{}
	err := g.ScanSKUs(ctx, func(skus []string) error {
		for _, s := range skus {
			// Most SKUs sort after the root once the heap is full; only one
			// that would go in is looked for among those kept (SSCAN may
			// return a member twice).
			switch {
			case h.Len() < n && !slices.Contains(*h, s):
				heap.Push(h, s)
			case h.Len() == n && s < (*h)[0] && !slices.Contains(*h, s):
				(*h)[0] = s
				heap.Fix(h, 0)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := []string(*h)
	slices.Sort(out)
	return out, nil
}

// lastOf is a max-heap of SKUs: its root is the last of the first n.
type lastOf []string

func (h lastOf) Len() int           { return len(h) }
func (h lastOf) Less(i, j int) bool { return strings.Compare(h[i], h[j]) > 0 }
func (h lastOf) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *lastOf) Push(x any)        { *h = append(*h, x.(string)) }
func (h *lastOf) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
