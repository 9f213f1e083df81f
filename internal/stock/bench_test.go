package stock_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
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

// byLines runs bench as one sub-benchmark per order size (1 and 5 lines),
// each on a Gate of its own whose hot SKUs hold a unit for every call the
// benchmark can make, with ls an order of one unit on each.
func byLines(b *testing.B, bench func(b *testing.B, g *stock.Gate, rdb *redis.Client, ls []stock.Line)) {
	for _, lines := range []int{1, 5} {
		b.Run(strconv.Itoa(lines)+"Lines", func(b *testing.B) {
			g, rdb := benchGate(b)
			ls := make([]stock.Line, lines)
			for i := range ls {
				ls[i] = stock.Line{SKU: "hot" + strconv.Itoa(i), Qty: 1}
				stockSKU(b, g, ls[i].SKU, int64(b.N)+1)
			}
			bench(b, g, rdb, ls)
		})
	}
}

// The stock gate's own benchmarks: benchWorkers goroutines on hot SKUs with
// enough stock for every call (ReserveServerTime: one). The cross-approach
// comparison lives in stockbench.

func BenchmarkReserve(b *testing.B) {
	byLines(b, func(b *testing.B, g *stock.Gate, _ *redis.Client, ls []stock.Line) {
		ctx := context.Background()
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
			if r, err := g.Reserve(ctx, "o1", ls, deadline); err != nil || r.Outcome != stock.AlreadyHeld {
				b.Errorf("Reserve(o1) = %+v, %v, want %v, nil", r, err, stock.AlreadyHeld)
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

// BenchmarkReserveServerTime is the reserve script's own cost inside Redis,
// without the network or the client: one client making sequential reserves
// of fresh orders. It reports the server's usec_per_call for EVALSHA from
// INFO commandstats (server-µs/op, wall time, so a busy machine inflates
// it) and the main thread's CPU time per call from INFO cpu (cpu-µs/op,
// which also counts reading each request and writing its reply, but not
// time the server spent preempted). Run it with -benchtime 20000x.
func BenchmarkReserveServerTime(b *testing.B) {
	byLines(b, func(b *testing.B, g *stock.Gate, rdb *redis.Client, ls []stock.Line) {
		ctx := context.Background()
		deadline := time.Now().Add(time.Hour)
		// The first call loads the script (EVALSHA, NOSCRIPT, EVAL): leave
		// it out of the statistics.
		if _, err := g.Reserve(ctx, "warm", ls, deadline); err != nil {
			b.Fatal(err)
		}
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		cpu := mainThreadCPU(b, rdb)
		b.ResetTimer()
		for i := range b.N {
			if _, err := g.Reserve(ctx, "o"+strconv.Itoa(i), ls, deadline); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric((mainThreadCPU(b, rdb)-cpu)*1e6/float64(b.N), "cpu-µs/op")
		b.ReportMetric(infoFloat(b, rdb, "commandstats", "cmdstat_evalsha", "usec_per_call"), "server-µs/op")
	})
}

// mainThreadCPU is the CPU time, user and system, that the server's main
// thread (the one that runs scripts) has used, in seconds.
func mainThreadCPU(b *testing.B, rdb *redis.Client) float64 {
	return infoFloat(b, rdb, "cpu", "used_cpu_user_main_thread", "") + infoFloat(b, rdb, "cpu", "used_cpu_sys_main_thread", "")
}

// infoFloat reads one number from INFO section: the value of key, or of
// field in key's comma-separated value when field is not empty.
func infoFloat(b *testing.B, rdb *redis.Client, section, key, field string) float64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":")
		if !ok {
			continue
		}
		if field != "" {
			for kv := range strings.SplitSeq(v, ",") {
				if fv, ok := strings.CutPrefix(kv, field+"="); ok {
					v = fv
				}
			}
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			b.Fatalf("INFO %s %s %s: %v", section, key, field, err)
		}
		return f
	}
	b.Fatalf("no %s in INFO %s:\n%s", key, section, info)
	return 0
}
