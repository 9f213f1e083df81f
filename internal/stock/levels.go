package stock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Levels are one SKU's counters. Stocked is false when the SKU was never
// stocked (its available key is missing); the counters are then zero.
type Levels struct {
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Held      int64  `json:"held"`
	Sold      int64  `json:"sold"`
	Stocked   bool   `json:"stocked"`
}

// Total is every unit the SKU has been stocked with and not taken back:
// available + held + sold (invariant I1).
func (l Levels) Total() int64 { return l.Available + l.Held + l.Sold }

// Set makes exactly qty units of sku available now, leaving held and sold
// alone, and returns the new levels.
func (g *Gate) Set(ctx context.Context, sku string, qty int64) (Levels, error) {
	if qty < 0 {
		return Levels{}, fmt.Errorf("%w: quantity %d must be >= 0", ErrInvalid, qty)
	}
	return g.adjust(ctx, setScript, "set", sku, qty)
}

// Add restocks sku by qty (>= 1) units and returns the new levels.
func (g *Gate) Add(ctx context.Context, sku string, qty int64) (Levels, error) {
	if qty < 1 {
		return Levels{}, fmt.Errorf("%w: quantity %d must be >= 1", ErrInvalid, qty)
	}
	return g.adjust(ctx, addScript, "add", sku, qty)
}

func (g *Gate) adjust(ctx context.Context, s *redis.Script, op, sku string, qty int64) (Levels, error) {
	if err := CheckSKU(sku); err != nil {
		return Levels{}, err
	}
	// Register first: a SKU with stock but missing from the set would be
	// invisible to the sweeper and to reconcile.
	if err := g.rdb.SAdd(ctx, SKUsKey, sku).Err(); err != nil {
		return Levels{}, fmt.Errorf("%s %s: %w", op, sku, err)
	}
	keys := []string{AvailKey(sku), HeldKey(sku), SoldKey(sku)}
	res, err := runInts(ctx, s, g.rdb, keys, []any{strconv.FormatInt(qty, 10)}, 3)
	if err != nil {
		return Levels{}, fmt.Errorf("%s %s: %w", op, sku, err)
	}
	if res[0] < 0 {
		return Levels{}, fmt.Errorf("%w: %s %s %d refused (out of range or corrupt counters)", ErrInvalid, op, sku, qty)
	}
	return Levels{SKU: sku, Available: res[0], Held: res[1], Sold: res[2], Stocked: true}, nil
}

// Show returns the levels of skus, or of every registered SKU when none are
// given, sorted by SKU. Each SKU's three counters are read in one MGET, so
// they are consistent with each other.
func (g *Gate) Show(ctx context.Context, skus ...string) ([]Levels, error) {
	if len(skus) == 0 {
		var err error
		if skus, err = g.SKUs(ctx); err != nil {
			return nil, err
		}
	}
	for _, s := range skus {
		if err := CheckSKU(s); err != nil {
			return nil, err
		}
	}
	cmds := make([]*redis.SliceCmd, len(skus))
	_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range skus {
			cmds[i] = p.MGet(ctx, AvailKey(s), HeldKey(s), SoldKey(s))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("show: %w", err)
	}
	out := make([]Levels, len(skus))
	for i, s := range skus {
		vals := cmds[i].Val()
		l := Levels{SKU: s, Stocked: vals[0] != nil}
		for j, dst := range []*int64{&l.Available, &l.Held, &l.Sold} {
			if vals[j] == nil {
				continue
			}
			n, err := strconv.ParseInt(fmt.Sprint(vals[j]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("show %s: corrupt counter: %w", s, err)
			}
			*dst = n
		}
		out[i] = l
	}
	slices.SortFunc(out, func(a, b Levels) int { return cmp.Compare(a.SKU, b.SKU) })
	return out, nil
}

// SKUs lists every SKU that Set or Add ever stocked, sorted.
func (g *Gate) SKUs(ctx context.Context) ([]string, error) {
	skus, err := g.rdb.SMembers(ctx, SKUsKey).Result()
	if err != nil {
		return nil, fmt.Errorf("list skus: %w", err)
	}
	slices.Sort(skus)
	return skus, nil
}

// Hold is one order's hold on one SKU.
type Hold struct {
	SKU      string
	OrderID  string
	Deadline time.Time
}

// ErrLive is returned by Rebuild for a SKU whose available counter exists.
var ErrLive = errors.New("sku has counters in redis")

// Rebuild recreates sku's available counter after Redis lost it. When all
// three counters are gone, available = stocked - sold and held = 0, with
// sold from Postgres. When held and sold survived (only available was
// lost), available = stocked - held - sold from the surviving counters. It
// refuses (ErrLive) when available exists, so it never overwrites a
// running sale. The caller must fence first: no order that reserved before
// the loss may still be able to confirm, or its units would be sold twice
// (see stockctl rebuild).
func (g *Gate) Rebuild(ctx context.Context, sku string, stocked, sold int64) (Levels, error) {
	if err := CheckSKU(sku); err != nil {
		return Levels{}, err
	}
	if stocked < 0 || sold < 0 {
		return Levels{}, fmt.Errorf("%w: rebuild %s: stocked %d and sold %d must be >= 0", ErrInvalid, sku, stocked, sold)
	}
	if err := g.rdb.SAdd(ctx, SKUsKey, sku).Err(); err != nil {
		return Levels{}, fmt.Errorf("rebuild %s: %w", sku, err)
	}
	keys := []string{AvailKey(sku), HeldKey(sku), SoldKey(sku)}
	res, err := runInts(ctx, rebuildScript, g.rdb, keys,
		[]any{strconv.FormatInt(stocked, 10), strconv.FormatInt(sold, 10)}, 3)
	if err != nil {
		return Levels{}, fmt.Errorf("rebuild %s: %w", sku, err)
	}
	switch res[0] {
	case -1:
		return Levels{}, fmt.Errorf("rebuild %s: %w", sku, ErrLive)
	case -2:
		return Levels{}, fmt.Errorf("%w: rebuild %s refused (out of range, or a surviving counter is corrupt)", ErrInvalid, sku)
	}
	return Levels{SKU: sku, Available: res[0], Held: res[1], Sold: res[2], Stocked: true}, nil
}
