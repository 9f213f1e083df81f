package stock

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
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
//
// Under Redis Cluster it also SCANs every master for available counters:
// SKUsKey lives in one slot, and a failover of its master can lose a member
// whose counters live on, and sell, on another. That pass is for operator
// commands, not a hot path.
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
			break
		}
		cur = next
	}
	c, ok := g.rdb.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	// fn is not safe for concurrent use: ForEachMaster runs its callbacks
	// at once.
	var mu sync.Mutex
	err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		it := node.Scan(ctx, 0, keyPrefix+"{*}:avail", scanChunk).Iterator()
		chunk := make([]string, 0, scanChunk)
		flush := func() error {
			mu.Lock()
			defer mu.Unlock()
			err := fn(chunk)
			chunk = chunk[:0]
			return err
		}
		for it.Next(ctx) {
			// A hold key of an order id ending in ":avail" matches too; its
			// "SKU" holds a brace, which no SKU may.
			sku := strings.TrimSuffix(strings.TrimPrefix(it.Val(), keyPrefix+"{"), "}:avail")
			if CheckSKU(sku) != nil {
				continue
			}
			if chunk = append(chunk, sku); len(chunk) == scanChunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		if len(chunk) == 0 {
			return nil
		}
		return flush()
	})
	if err != nil {
		return fmt.Errorf("scan skus on every master: %w", err)
	}
	return nil
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
