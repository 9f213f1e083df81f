// Command reserveratio measures issue 2's performance target: a single-line
// Gate.Reserve must run at 70% or more of what redis-benchmark gets for
// EVALSHA of a minimal decrement script, at the same concurrency.
//
// It starts a private redis-server (never the shared one), then alternates
// rounds of
//
//	redis-benchmark -c C -n N EVALSHA <sha of "return redis.call('DECRBY', KEYS[1], 1)"> 1 sg:{hot}:avail
//
// with N single-line Gate.Reserve calls from C goroutines (one connection
// each), and prints each round, the medians and their ratio. A third figure,
// go-redis sending the same minimal EVALSHA from C goroutines, separates
// what the Go client costs from what the reserve script costs.
//
//	go run ./internal/stock/stockbench/cmd/reserveratio -c 64 -n 200000 -rounds 3
package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// minimalScript is the baseline: the least a script that decrements can do.
const minimalScript = "return redis.call('DECRBY', KEYS[1], 1)"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "reserveratio:", err)
		os.Exit(1)
	}
}

func run() error {
	clients := flag.Int("c", 64, "concurrent connections, for redis-benchmark and for Gate.Reserve")
	n := flag.Int("n", 200000, "calls per round")
	rounds := flag.Int("rounds", 3, "rounds of each measurement, alternated")
	flag.Parse()

	bin, err := exec.LookPath("redis-benchmark")
	if err != nil {
		return fmt.Errorf("redis-benchmark not on PATH: %w", err)
	}
	r, err := testsvc.StartRedis("")
	if err != nil {
		return err
	}
	defer func() {
		r.Stop()
		_ = os.RemoveAll(r.Dir)
	}()
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: *clients, MinIdleConns: *clients})
	defer rdb.Close()
	sha, err := rdb.ScriptLoad(ctx, minimalScript).Result()
	if err != nil {
		return fmt.Errorf("script load: %w", err)
	}
	host, port, _ := strings.Cut(r.Addr, ":")
	g := stock.New(rdb, stock.Config{})

	fmt.Printf("private redis-server %s, %d clients, %d calls per round, %d rounds\n", r.Addr, *clients, *n, *rounds)
	var bench, gate, goEvalsha, usBench, usGate []float64
	for round := range *rounds {
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			return err
		}
		rps, err := redisBenchmark(bin, host, port, *clients, *n, sha)
		if err != nil {
			return err
		}
		bench = append(bench, rps)
		us, err := evalshaUsec(ctx, rdb)
		if err != nil {
			return err
		}
		usBench = append(usBench, us)

		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return err
		}
		if _, err := g.Set(ctx, "hot", int64(*n)); err != nil {
			return err
		}
		deadline := time.Now().Add(time.Hour)
		prefix := "r" + strconv.Itoa(round) + "-"
		if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
			return err
		}
		rps, err = parallel(*clients, *n, func(i int) error {
			_, err := g.Reserve(ctx, prefix+strconv.Itoa(i), []stock.Line{{SKU: "hot", Qty: 1}}, deadline)
			return err
		})
		if err != nil {
			return fmt.Errorf("reserve: %w", err)
		}
		if l, err := g.Show(ctx, "hot"); err != nil || l[0].Available != 0 || l[0].Held != int64(*n) {
			return fmt.Errorf("after the reserve round: %+v, %v, want 0 available and %d held", l, err, *n)
		}
		gate = append(gate, rps)
		if us, err = evalshaUsec(ctx, rdb); err != nil {
			return err
		}
		usGate = append(usGate, us)

		keys := []string{stock.AvailKey("hot")}
		rps, err = parallel(*clients, *n, func(int) error { return rdb.EvalSha(ctx, sha, keys).Err() })
		if err != nil {
			return fmt.Errorf("go-redis evalsha: %w", err)
		}
		goEvalsha = append(goEvalsha, rps)
		fmt.Printf("round %d: redis-benchmark EVALSHA %8.0f/s   Gate.Reserve %8.0f/s   go-redis EVALSHA %8.0f/s\n",
			round+1, bench[round], gate[round], goEvalsha[round])
	}
	mb, mg, mgo := median(bench), median(gate), median(goEvalsha)
	fmt.Printf("median:  redis-benchmark EVALSHA %8.0f/s   Gate.Reserve %8.0f/s   go-redis EVALSHA %8.0f/s\n", mb, mg, mgo)
	verdict := "met"
	if mg < 0.7*mb {
		verdict = "MISSED"
	}
	fmt.Printf("ratio Gate.Reserve / redis-benchmark EVALSHA = %.2f (target >= 0.70: %s)\n", mg/mb, verdict)
	fmt.Printf("ratio Gate.Reserve / go-redis EVALSHA        = %.2f (the script's own cost)\n", mg/mgo)
	fmt.Printf("server time per EVALSHA (INFO commandstats): minimal script %.2fµs, reserve script %.2fµs\n",
		median(usBench), median(usGate))
	return nil
}

// redisBenchmark runs redis-benchmark for EVALSHA of the minimal script on
// the stock gate's key layout and returns its requests per second.
func redisBenchmark(bin, host, port string, clients, n int, sha string) (float64, error) {
	cmd := exec.Command(bin, "-h", host, "-p", port, "-c", strconv.Itoa(clients), "-n", strconv.Itoa(n),
		"--csv", "EVALSHA", sha, "1", stock.AvailKey("hot"))
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w: %s", err, stderr.String())
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil || len(rows) < 2 || len(rows[1]) < 2 {
		return 0, fmt.Errorf("redis-benchmark output %q: %v", out.String(), err)
	}
	return strconv.ParseFloat(rows[1][1], 64)
}

// parallel makes n calls of f from workers goroutines and returns calls
// per second.
func parallel(workers, n int, f func(i int) error) (float64, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(n) / elapsed.Seconds(), nil
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

// evalshaUsec reads the server's mean microseconds per EVALSHA since the
// last CONFIG RESETSTAT: the script's cost inside Redis, without the client.
func evalshaUsec(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "usec_per_call="); ok {
				return strconv.ParseFloat(v, 64)
			}
		}
	}
	return 0, fmt.Errorf("no evalsha in INFO commandstats")
}
