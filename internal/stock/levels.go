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

// MaxStock is the most units Set and Add take a SKU's available to: the
// scripts' MAX_STOCK (lua/prelude.lua), far below where a counter stops
// being exact.
const MaxStock = 1_000_000_000_000

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
	return adjustReply(op, Line{SKU: sku, Qty: qty}, res)
}

// Adjusted is what a batch Set or Add did to one SKU.
type Adjusted struct {
	Levels Levels // the new levels, when Err is nil
	Err    error  // ErrInvalid for a refused line; nothing changed for it
}

// SetMany is Set for many SKUs at once, and AddMany is Add: one SADD, then
// one pipeline of script calls, so that stocking a catalogue costs two
// round trips per batch rather than per SKU. Each SKU's outcome is its own
// (a refused one changed nothing), in the order of lines; a SKU given twice
// is set or added twice, in that order. The error is for a failure that
// may have left any of the lines done or not (Redis unreachable).
func (g *Gate) SetMany(ctx context.Context, lines []Line) ([]Adjusted, error) {
	return g.adjustMany(ctx, setScript, "set", 0, lines)
}

// AddMany is Add for many SKUs at once; see SetMany.
func (g *Gate) AddMany(ctx context.Context, lines []Line) ([]Adjusted, error) {
	return g.adjustMany(ctx, addScript, "add", 1, lines)
}

func (g *Gate) adjustMany(ctx context.Context, s *redis.Script, op string, minQty int64, lines []Line) ([]Adjusted, error) {
	out := make([]Adjusted, len(lines))
	var run []int
	var members []any
	seen := map[string]bool{}
	for i, l := range lines {
		switch err := CheckSKU(l.SKU); {
		case err != nil:
			out[i].Err = err
		case l.Qty < minQty:
			out[i].Err = fmt.Errorf("%w: quantity %d must be >= %d", ErrInvalid, l.Qty, minQty)
		default:
			run = append(run, i)
			if !seen[l.SKU] {
				seen[l.SKU] = true
				members = append(members, l.SKU)
			}
		}
	}
	if len(run) == 0 {
		return out, nil
	}
	// Register first, and apart: under Redis Cluster a pipeline's commands
	// to different nodes run in no set order, and a SKU with stock but
	// missing from the set would be invisible to show and reconcile.
	if err := g.rdb.SAdd(ctx, SKUsKey, members...).Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	for attempt := 0; len(run) > 0; attempt++ {
		cmds := make([]*redis.Cmd, len(run))
		_, _ = g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, i := range run {
				l := lines[i]
				cmds[j] = s.EvalSha(ctx, p, []string{AvailKey(l.SKU), HeldKey(l.SKU), SoldKey(l.SKU)}, strconv.FormatInt(l.Qty, 10))
			}
			return nil
		})
		var again []int
		for j, i := range run {
			vals, err := cmds[j].Int64Slice()
			if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
				again = append(again, i)
				continue
			}
			switch {
			case redis.HasErrorPrefix(err, "WRONGTYPE") || redis.HasErrorPrefix(err, "ERR"):
				// The script raised on this SKU's keys (a hand edit of the
				// wrong type): this line alone failed. OOM, READONLY,
				// LOADING and a lost connection stop the batch.
				out[i].Err = fmt.Errorf("%s %s: %w", op, lines[i].SKU, err)
			case err != nil:
				return nil, fmt.Errorf("%s %s: %w", op, lines[i].SKU, err)
			default:
				out[i].Levels, out[i].Err = adjustReply(op, lines[i], vals)
			}
		}
		if len(again) > 0 {
			// A SCRIPT FLUSH or a restarted Redis: load the script (on every
			// master of a cluster) and send those calls again.
			if err := s.Load(ctx, g.rdb).Err(); err != nil {
				return nil, fmt.Errorf("%s: load script: %w", op, err)
			}
		}
		run = again
	}
	return out, nil
}

// adjustReply reads set's and add's {available, held, sold}.
func adjustReply(op string, l Line, res []int64) (Levels, error) {
	if len(res) != 3 {
		return Levels{}, fmt.Errorf("%s %s: script returned %d values, want 3", op, l.SKU, len(res))
	}
	if res[0] < 0 {
		return Levels{}, fmt.Errorf("%w: %s %s %d refused (out of range or corrupt counters)", ErrInvalid, op, l.SKU, l.Qty)
	}
	return Levels{SKU: l.SKU, Available: res[0], Held: res[1], Sold: res[2], Stocked: true}, nil
}

// Show returns the levels of skus, or of every SKU when none are given
// (ScanSKUs: the registered ones and, under a cluster, any with counters),
// sorted by SKU. For a catalogue of millions, read it a chunk at a time
// instead (stockctl show does).
// Each SKU's three counters are read in one MGET, so they are consistent
// with each other.
func (g *Gate) Show(ctx context.Context, skus ...string) ([]Levels, error) {
	if len(skus) == 0 {
		if err := g.ScanSKUs(ctx, func(found []string) error {
			skus = append(skus, found...)
			return nil
		}); err != nil {
			return nil, err
		}
		skus = slices.Compact(slices.Sorted(slices.Values(skus)))
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
