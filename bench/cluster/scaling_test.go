// Package cluster is the scaling measurement of docs/benchmarks.md, "Past
// one Redis": the pipeline on one Redis against a 3-master, 3-replica Redis
// Cluster, with 1, 2 and 4 worker processes, and the cost of
// --redis-wait-replicas 1, from one run on servers it starts itself. It is a
// test only so that it can use internal/testsvc; it skips unless
// STOCKGATE_BENCH=cluster:
//
//	STOCKGATE_BENCH=cluster nice go test -count=1 -v -timeout 30m ./bench/cluster/
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/testsvc"
)

var binDir string

func TestMain(m *testing.M) { os.Exit(testsvc.MainWithCommands(m, &binDir)) }

// buyers per run: enough for a few seconds at this machine's rate.
var buyers = envInt("BENCH_BUYERS", 6000)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

type world struct {
	name  string
	env   []string
	nodes []*redis.Client // the masters, for INFO
}

func TestScaling(t *testing.T) {
	if os.Getenv("STOCKGATE_BENCH") != "cluster" {
		t.Skip("a benchmark: STOCKGATE_BENCH=cluster")
	}
	pg := testsvc.StartPostgres(t, testsvc.PostgresOptions{})
	base := append(os.Environ(), "OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SDK_DISABLED=")

	one := testsvc.NewRedis(t, "--appendonly", "yes", "--appendfsync", "everysec")
	single := world{name: "one redis", env: slices.Concat(base, []string{"REDIS_URL=" + one.URL(0)}), nodes: []*redis.Client{one.Client(0)}}

	cl := testsvc.StartCluster(t, 3, 1, "--appendonly", "yes", "--appendfsync", "everysec")
	cw := world{name: "3+3 cluster", env: slices.Concat(base, []string{"REDIS_URL=" + cl.URL(), "REDIS_CLUSTER=true"})}
	for _, sh := range cl.Shards(t) {
		for _, n := range cl.Nodes {
			if n.Addr == sh.Master {
				cw.nodes = append(cw.nodes, n.Client(0))
			}
		}
	}

	fmt.Println("bench: world        workers  wait  orders  seconds  orders/s  p50ms  p99ms  redis_cpu_us/order(per master)  calls/order(per master)")
	run := 0
	for _, w := range []world{single, cw} {
		for _, n := range []int{1, 2, 4} {
			run++
			measure(t, pg, w, n, 0, run)
		}
	}
	run++
	measure(t, pg, cw, 1, 1, run)
	run++
	measure(t, pg, cw, 2, 1, run)
}

func measure(t *testing.T, pg *testsvc.Postgres, w world, workers, wait, run int) {
	ctx := context.Background()
	db := fmt.Sprintf("bench%d", run)
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	env := append(slices.Clone(w.env), "DATABASE_URL="+pg.URL(db), "QUEUE_SHARDS=3")
	must := func(cmd string, args ...string) string {
		return testsvc.MustRunCommand(t, 10*time.Minute, filepath.Join(binDir, cmd), env, args...)
	}
	must("stockctl", "migrate")
	sku := fmt.Sprintf("BENCH-%d", run)
	must("stockctl", "set", sku, strconv.Itoa(buyers))
	var procs []*testsvc.Process
	for range workers {
		port, err := testsvc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		p := testsvc.StartProcess(t, filepath.Join(binDir, "worker"), env, "--admin-addr", addr, "--concurrency", "64",
			"--redis-wait-replicas", strconv.Itoa(wait), "--log-level", "warn")
		testsvc.WaitReady(t, time.Minute, addr, p)
		procs = append(procs, p)
	}
	before := sample(ctx, t, w.nodes)
	out := must("enqueue", "flash-sale", "--sku", sku, "--buyers", strconv.Itoa(buyers), "--run", fmt.Sprintf("b%d", run),
		"--concurrency", "32", "--wait", "--json")
	after := sample(ctx, t, w.nodes)
	var r struct {
		Confirmed int     `json:"confirmed"`
		Seconds   float64 `json:"seconds"`
		PerSec    float64 `json:"orders_per_sec"`
		Latency   struct {
			P50 float64 `json:"p50"`
			P99 float64 `json:"p99"`
		} `json:"latency_ms"`
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &r); err != nil {
		t.Fatalf("enqueue output %q: %v", out, err)
	}
	if r.Confirmed != buyers {
		t.Errorf("%s, %d workers: %d confirmed of %d", w.name, workers, r.Confirmed, buyers)
	}
	var cpu, calls []string
	for i := range w.nodes {
		cpu = append(cpu, fmt.Sprintf("%.0f", float64(after[i].cpu-before[i].cpu)/float64(buyers)))
		calls = append(calls, fmt.Sprintf("%.1f", float64(after[i].calls-before[i].calls)/float64(buyers)))
	}
	fmt.Printf("bench: %-12s %7d  %4d  %6d  %7.1f  %8.0f  %5.0f  %5.0f  %-31s  %s\n", w.name, workers, wait, r.Confirmed, r.Seconds, r.PerSec,
		r.Latency.P50, r.Latency.P99, strings.Join(cpu, "/"), strings.Join(calls, "/"))
	for _, p := range procs {
		p.Kill()
	}
}

type nodeStat struct{ cpu, calls int64 } // microseconds of CPU (user+sys), commands processed

func sample(ctx context.Context, t *testing.T, nodes []*redis.Client) []nodeStat {
	out := make([]nodeStat, len(nodes))
	for i, c := range nodes {
		info, err := c.Info(ctx, "cpu", "stats").Result()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = nodeStat{cpu: int64(1e6 * (field(info, "used_cpu_sys") + field(info, "used_cpu_user"))),
			calls: int64(field(info, "total_commands_processed"))}
	}
	return out
}

func field(info, name string) float64 {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
