package stockbench_test

import (
	"context"
	"flag"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/stock/stockbench"
	"github.com/stockgate/stockgate/internal/testsvc"
)

var (
	workers = flag.Int("workers", 64, "concurrent buyers in every benchmark, the same for every approach")
	buyers  = flag.Int("buyers", 5000, "attempts in one flash sale")
	units   = flag.Int("units", 100, "units of the hot SKU in one flash sale")
)

const hotSKU = "hot"

// shared holds the clients every benchmark reuses: one private
// redis-server and one Postgres database per test binary, made on first use.
var shared struct {
	once sync.Once
	err  error
	rdb  *redis.Client
	pool *pgxpool.Pool
	runs int
}

func closeShared() {
	if shared.rdb != nil {
		_ = shared.rdb.Close()
	}
	if shared.pool != nil {
		shared.pool.Close()
	}
}

func clients(b *testing.B) (*redis.Client, *pgxpool.Pool) {
	b.Helper()
	r := testsvc.SharedRedis(b)
	shared.once.Do(func() {
		ctx := context.Background()
		// One connection per worker: WATCH holds its connection for the
		// whole transaction, and no approach should queue for the pool.
		shared.rdb = redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: *workers, MinIdleConns: *workers})
		dsn, _, err := testsvc.CreateDatabase(ctx)
		if err != nil {
			shared.err = err
			return
		}
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			shared.err = err
			return
		}
		cfg.MaxConns = int32(*workers)
		cfg.MinConns = int32(*workers)
		if shared.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			shared.err = err
			return
		}
		_, shared.err = shared.pool.Exec(ctx, stockbench.PostgresSchema)
	})
	if shared.err != nil {
		b.Fatalf("benchmark services: %v", shared.err)
	}
	return shared.rdb, shared.pool
}

// approach is one way of taking stock, with the setup that puts qty units
// of the hot SKU in place before a run.
type approach struct {
	name  string
	stock func(b *testing.B, qty int64) stockbench.Taker
}

func approaches() []approach {
	redisCounter := func(b *testing.B, qty int64) *redis.Client {
		b.Helper()
		rdb, _ := clients(b)
		ctx := context.Background()
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		if err := rdb.Set(ctx, hotSKU, qty, 0).Err(); err != nil {
			b.Fatal(err)
		}
		return rdb
	}
	return []approach{
		{"naive", func(b *testing.B, qty int64) stockbench.Taker {
			return stockbench.Naive{RDB: redisCounter(b, qty), Key: hotSKU}
		}},
		{"watch", func(b *testing.B, qty int64) stockbench.Taker {
			return stockbench.Watch{RDB: redisCounter(b, qty), Key: hotSKU}
		}},
		{"script", func(b *testing.B, qty int64) stockbench.Taker {
			rdb, _ := clients(b)
			ctx := context.Background()
			if err := rdb.FlushDB(ctx).Err(); err != nil {
				b.Fatal(err)
			}
			g := stock.New(rdb, stock.Config{})
			if _, err := g.Set(ctx, hotSKU, qty); err != nil {
				b.Fatal(err)
			}
			shared.runs++
			return stockbench.Script{Gate: g, SKU: hotSKU, Prefix: "r" + strconv.Itoa(shared.runs) + "-", Deadline: time.Now().Add(time.Hour)}
		}},
		{"postgres", func(b *testing.B, qty int64) stockbench.Taker {
			_, pool := clients(b)
			if err := stockbench.SetPostgresStock(context.Background(), pool, hotSKU, qty); err != nil {
				b.Fatal(err)
			}
			return stockbench.Postgres{Pool: pool, SKU: hotSKU}
		}},
	}
}

// BenchmarkHotSKU is the throughput side: every approach at the same
// concurrency on one SKU stocked with b.N units, so that every attempt can
// succeed and the figure is decrements per second under contention.
func BenchmarkHotSKU(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark needs redis-server and Postgres")
	}
	for _, a := range approaches() {
		b.Run(a.name, func(b *testing.B) {
			b.ReportAllocs()
			taker := a.stock(b, int64(b.N))
			b.ResetTimer()
			res, err := stockbench.Run(context.Background(), taker, *workers, b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.SuccessesPerSec(), "successes/s")
			b.ReportMetric(float64(res.P50.Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(res.P99.Nanoseconds())/1e3, "p99-µs")
			b.ReportMetric(float64(max(0, res.Successes-int64(b.N))), "oversold")
			b.ReportMetric(float64(res.Retries)/float64(b.N), "retries/op")
		})
	}
}

// BenchmarkFlashSale is the correctness side: each iteration is one sale of
// -units units to -buyers buyers at -workers at a time. Oversold, retries
// and sold are per sale; latencies are the mean of each sale's percentiles.
func BenchmarkFlashSale(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark needs redis-server and Postgres")
	}
	for _, a := range approaches() {
		b.Run(a.name, func(b *testing.B) {
			b.ReportAllocs()
			var sold, oversold, retries int64
			var p50, p99, elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				taker := a.stock(b, int64(*units))
				b.StartTimer()
				res, err := stockbench.Run(context.Background(), taker, *workers, *buyers)
				if err != nil {
					b.Fatal(err)
				}
				sold += res.Successes
				oversold += max(0, res.Successes-int64(*units))
				retries += res.Retries
				p50 += res.P50
				p99 += res.P99
				elapsed += res.Elapsed
			}
			n := float64(b.N)
			b.ReportMetric(float64(sold)/n, "sold/sale")
			b.ReportMetric(float64(oversold)/n, "oversold/sale")
			b.ReportMetric(float64(retries)/n, "retries/sale")
			b.ReportMetric(float64(b.N**buyers)/elapsed.Seconds(), "attempts/s")
			b.ReportMetric(float64(p50.Nanoseconds())/n/1e3, "p50-µs")
			b.ReportMetric(float64(p99.Nanoseconds())/n/1e3, "p99-µs")
		})
	}
}
