package main

import (
	"context"
	"errors"
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
// sort order reads the whole set of SKUs, so at more than
// smallCatalogue SKUs it is redone only every reselectEvery.
const (
	gaugeInterval  = 10 * time.Second
	reselectEvery  = 5 * time.Minute
	smallCatalogue = 10_000
)

// registerGauges registers every gauge and starts the samplers; the
// returned function stops them.
func registerGauges(ctx context.Context, rdb *redis.Client, pool *pgxpool.Pool, in *asynq.Inspector, gate *stock.Gate) (func(), error) {
	holds := telemetry.NewSampler(gaugeInterval, gate.OpenHolds)
	sg := &stockGauges{gate: gate}
	levels := telemetry.NewSampler(gaugeInterval, sg.sample)
	err := errors.Join(
		telemetry.RegisterRedisPool("stock", rdb),
		telemetry.RegisterPgxPool(pool),
		telemetry.RegisterQueues(in, orders.Queue),
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
	chosen time.Time
}

func (g *stockGauges) sample(ctx context.Context) (telemetry.StockSample, error) {
	n, err := g.gate.CountSKUs(ctx)
	if err != nil {
		return telemetry.StockSample{}, err
	}
	if n <= smallCatalogue || time.Since(g.chosen) > reselectEvery || int64(len(g.skus)) < min(n, stockGaugeSKUs) {
		skus, err := g.gate.FirstSKUs(ctx, stockGaugeSKUs)
		if err != nil {
			return telemetry.StockSample{}, err
		}
		g.skus, g.chosen = skus, time.Now()
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
