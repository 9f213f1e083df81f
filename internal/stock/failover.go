package stock

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/lua"
)

var absorbScript = redis.NewScript(lua.Absorb)

// Fence deletes the available counters of skus, so that every new reserve
// on them fails closed (NotStockedError for a catalogued SKU, which the
// worker retries) until Rebuild derives available again from the
// catalogue's total and the held and sold counters. Holds, held and sold
// stay; a release while fenced lowers held and leaves available missing
// (lua/prelude.lua, move_held). docs/design.md, "Failover".
func (g *Gate) Fence(ctx context.Context, skus []string) error {
	if err := checkSKUs(skus); err != nil {
		return err
	}
	cmds, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range skus {
			p.Del(ctx, AvailKey(s))
		}
		return nil
	})
	for _, c := range cmds {
		if c.Err() != nil {
			return fmt.Errorf("fence: %w", c.Err())
		}
	}
	if err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	return nil
}

// Sale is one confirmed row's line: what Absorb sells when the row's hold
// is gone.
type Sale struct {
	OrderID string
	Qty     int64
	Token   string
}

// Absorb sells, on a fenced sku, the units of the confirmed sales whose
// hold is not there at all (a failover lost the reserve they relied on), and
// leaves each the committed tombstone its commit would have: running it
// again, a late commit or a retried reserve of those orders changes
// nothing. It returns the units and orders sold now; ErrLive when sku is
// not fenced (its available counter exists), with nothing changed.
func (g *Gate) Absorb(ctx context.Context, sku string, sales []Sale) (units int64, orders int, err error) {
	if err := CheckSKU(sku); err != nil {
		return 0, 0, err
	}
	for chunk := range slices.Chunk(sales, 200) {
		keys := []string{AvailKey(sku), HeldKey(sku), SoldKey(sku)}
		args := []any{strconv.FormatInt(max(g.retention.Milliseconds(), 1), 10)}
		for _, s := range chunk {
			if err := checkOrderID(s.OrderID); err != nil {
				return units, orders, err
			}
			keys = append(keys, HoldKey(sku, s.OrderID))
			args = append(args, s.OrderID, strconv.FormatInt(s.Qty, 10), s.Token)
		}
		res, err := runInts(ctx, absorbScript, g.rdb, keys, args, 2)
		if err != nil {
			return units, orders, fmt.Errorf("absorb %s: %w", sku, err)
		}
		switch res[0] {
		case -1:
			return units, orders, fmt.Errorf("absorb %s: %w", sku, ErrLive)
		case -2:
			return units, orders, fmt.Errorf("%w: absorb %s refused its arguments or found a corrupt counter", ErrInvalid, sku)
		}
		units, orders = units+res[0], orders+int(res[1])
	}
	return units, orders, nil
}
