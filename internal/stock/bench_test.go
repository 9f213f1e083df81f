package stock_test

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// benchWorkers is the concurrency of every benchmark here, the same as
// stockbench's default so the figures compare.
const benchWorkers = 64

// benchGate is a Gate on a redis-server of the benchmark's own, with one
// connection per goroutine that RunParallel will start.
func benchGate(b *testing.B) (*stock.Gate, *redis.Client) {
	b.Helper()
	if testing.Short() {
		b.Skip("benchmark needs redis-server")
	}
	r := testsvc.NewRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: benchWorkers, MinIdleConns: benchWorkers})
	b.Cleanup(func() { _ = rdb.Close() })
	return stock.New(rdb, stock.Config{}), rdb
}

// parallelism makes RunParallel start benchWorkers goroutines.
func parallelism() int { return max(1, benchWorkers/runtime.GOMAXPROCS(0)) }

// The stock gate's own benchmarks: benchWorkers goroutines on hot SKUs with
// enough stock for every call. The cross-approach comparison lives in
// stockbench.

func BenchmarkReserve(b *testing.B) {
	for _, lines := range []int{1, 5} {
		b.Run(strconv.Itoa(lines)+"Lines", func(b *testing.B) {
			ctx := context.Background()
			g, _ := benchGate(b)
			ls := make([]stock.Line, lines)
			for i := range ls {
				ls[i] = stock.Line{SKU: "hot" + strconv.Itoa(i), Qty: 1}
				stockSKU(b, g, ls[i].SKU, int64(b.N)+1)
			}
			deadline := time.Now().Add(time.Hour)
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(parallelism())
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					order := "o" + strconv.FormatInt(next.Add(1), 10)
					if _, err := g.Reserve(ctx, order, ls, deadline); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkReserveRepeat is a redelivered order: the AlreadyHeld path.
func BenchmarkReserveRepeat(b *testing.B) {
	ctx := context.Background()
	g, _ := benchGate(b)
	stockSKU(b, g, "hot", 1)
	ls := []stock.Line{{SKU: "hot", Qty: 1}}
	deadline := time.Now().Add(time.Hour)
	if _, err := g.Reserve(ctx, "o1", ls, deadline); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(parallelism())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if o, err := g.Reserve(ctx, "o1", ls, deadline); err != nil || o != stock.AlreadyHeld {
				b.Errorf("Reserve(o1) = %v, %v, want %v, nil", o, err, stock.AlreadyHeld)
				return
			}
		}
	})
}

// BenchmarkEvalShaMinimal is the floor a Reserve is compared with: go-redis
// sending EVALSHA of a one-call decrement script at the same concurrency.
func BenchmarkEvalShaMinimal(b *testing.B) {
	ctx := context.Background()
	_, rdb := benchGate(b)
	s := redis.NewScript("return redis.call('DECRBY', KEYS[1], 1)")
	keys := []string{stock.AvailKey("hot")}
	if err := s.Load(ctx, rdb).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(parallelism())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.EvalSha(ctx, rdb, keys).Err(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
