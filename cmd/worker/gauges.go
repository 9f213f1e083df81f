package main

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/telemetry"
)

// stockGaugeSKUs bounds the per-SKU stock gauges: three series per SKU, for
// the first SKUs in sort order. Larger catalogues use stockctl show.
const stockGaugeSKUs = 100

// The gauges that need Redis beyond one key (the holds outstanding, the
// stock levels) are sampled in the background every gaugeInterval and
// served from memory, so /metrics answers in bounded time at any catalogue
// size (docs/benchmarks.md, "Big catalogues"). Finding the first SKUs in
// sort order reads the whole set of SKUs (a thousand SSCANs at a million),
// so beyond smallCatalogue SKUs it is redone only when the number of SKUs
// changed, at most every reselectAfter, and otherwise every reselectEvery
// (SKUs are never taken out of the set, so a count that stands means the
// same SKUs).
const (
	gaugeInterval  = 10 * time.Second
	reselectAfter  = time.Minute
	reselectEvery  = 30 * time.Minute
	smallCatalogue = 10_000
)

// registerGauges registers every gauge and starts the samplers; the
// returned function stops them.
func registerGauges(ctx context.Context, rdb redis.UniversalClient, pool *pgxpool.Pool, in *asynq.Inspector, gate *stock.Gate, queues []string) (func(), error) {
	holds := telemetry.NewSampler(gaugeInterval, gate.OpenHolds)
	sg := &stockGauges{gate: gate}
	levels := telemetry.NewSampler(gaugeInterval, sg.sample)
	err := errors.Join(
		telemetry.RegisterRedisPool("stock", rdb),
		telemetry.RegisterPgxPool(pool),
		telemetry.RegisterQueues(in, withSettled(queues)...),
		telemetry.RegisterHolds(holds.Get),
		telemetry.RegisterStock(levels.Get, stockGaugeSKUs),
	)
	if err != nil {
		return nil, err
	}
	holds.Start(ctx)
	levels.Start(ctx)
	return func() { holds.Stop(); levels.Stop() }, nil
}

// stockGauges samples the per-SKU stock gauges: the levels of the first
// stockGaugeSKUs SKUs, and how many there are. Only its sampler calls it.
type stockGauges struct {
	gate   *stock.Gate
	skus   []string
	chosen time.Time // when skus were found
	count  int64     // how many SKUs there were then
}

func (g *stockGauges) sample(ctx context.Context) (telemetry.StockSample, error) {
	n, err := g.gate.CountSKUs(ctx)
	if err != nil {
		return telemetry.StockSample{}, err
	}
	age := time.Since(g.chosen)
	if g.chosen.IsZero() || n <= smallCatalogue || age > reselectEvery || (n != g.count && age > reselectAfter) {
		skus, err := g.gate.FirstSKUs(ctx, stockGaugeSKUs)
		if err != nil {
			return telemetry.StockSample{}, err
		}
		g.skus, g.chosen, g.count = skus, time.Now(), n
	}
	if len(g.skus) == 0 {
		return telemetry.StockSample{SKUs: n}, nil
	}
	levels, err := g.gate.Show(ctx, g.skus...)
	if err != nil {
		return telemetry.StockSample{}, err
	}
	out := telemetry.StockSample{SKUs: n, Levels: make([]telemetry.SKULevels, 0, len(levels))}
	for _, l := range levels {
		if l.Stocked {
			out.Levels = append(out.Levels, telemetry.SKULevels{SKU: l.SKU, Available: l.Available, Held: l.Held, Sold: l.Sold})
		}
	}
	return out, nil
}

// withSettled adds to queues the settled queue of each, where the sweeper
// keeps the archived tasks it has handled (orders.SettledQueue).
func withSettled(queues []string) []string {
	out := slices.Clone(queues)
	for _, q := range queues {
		out = append(out, orders.SettledQueue(q))
	}
	return out
}
